"""A broken database gets a sentence, not a traceback; a read-only one can still be read
(issue 8, item 4)."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from studio.cli import cli
from studio.errors import ReadOnlyDatabaseError
from studio.ingest.load import add_rows
from studio.model import Seed
from studio.store import Store
from tests.conftest import cactus_row, write_jsonl

# Every command that opens an existing database, with arguments that get it that far.
COMMANDS = [
    ["stats"],
    ["stats", "--json"],
    ["export", "out.jsonl"],
    ["export", "out-hf", "--format", "hf"],
    ["import", "rows.jsonl"],
    ["review"],
    ["synth", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
    ["demo", "--no-open"],
    ["train", "--base-model", "x"],
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIO_DB", raising=False)
    write_jsonl(tmp_path / "rows.jsonl", [cactus_row(1)])

    class NoScreen:  # the review app must never take over the test's terminal
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def run(self) -> None:
            pass

    monkeypatch.setattr("studio.tui.make_app", NoScreen)
    return tmp_path


def invoke(args: list[str], db: str = "a.db") -> Result:
    if args[0] == "train":
        pytest.importorskip("torch", reason="studio train checks for the train extra first")
    return CliRunner().invoke(cli, ["--db", db, *args])


def one_line(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def filled(path: Path, n: int = 30) -> Path:
    with Store(path) as store:
        add_rows(store, [Seed(f"persona {i} " * 50, f"thought {i} " * 50) for i in range(n)])
    return path


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_newer_schema_is_one_line_on_every_command(folder: Path, args: list[str]) -> None:
    with Store(folder / "a.db") as store:
        store.conn.execute("INSERT INTO schema_version VALUES (99, 'later')")
    result = invoke(args)
    assert result.exit_code == 1
    line = one_line(result)
    assert "a.db" in line and "schema version 99" in line and "upgrade CBT Studio" in line


# Damaged pages show when they are read; the review app reports those itself (in its screen).
@pytest.mark.parametrize("args", [c for c in COMMANDS if c != ["review"]], ids=" ".join)
def test_damaged_pages_are_one_line_on_every_command(folder: Path, args: list[str]) -> None:
    db = filled(folder / "a.db", 200)
    data = bytearray(db.read_bytes())
    page = 16384
    assert len(data) > 6 * page
    data[2 * page : len(data)] = b"\xa5" * (len(data) - 2 * page)  # every page after the schema
    db.write_bytes(bytes(data))
    result = invoke(args)
    assert result.exit_code == 1
    line = one_line(result)
    assert "damaged" in line or "not a usable" in line, line


def test_a_full_disk_says_so_not_cannot_rollback(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite rolls back by itself on SQLITE_FULL; our ROLLBACK then failed with "cannot rollback -
    no transaction is active", hiding the cause."""
    from studio.store.connect import connect as real_connect

    def small_disk(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
        conn = real_connect(path, read_only=read_only)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        return conn

    Store(folder / "a.db").close()
    monkeypatch.setattr("studio.store.store.connect", small_disk)
    rows = [cactus_row(n, dialogue="Counselor: hi\nClient: hello\n" * 400) for n in range(40)]
    write_jsonl(folder / "big.jsonl", rows)
    result = invoke(["import", "big.jsonl"])
    assert result.exit_code == 1
    line = one_line(result)
    assert "disk is full" in line and "cannot rollback" not in line

    with Store(folder / "a.db") as store, pytest.raises(sqlite3.OperationalError, match="full"):
        add_rows(store, [Seed("p", f"t{n} " * 5000) for n in range(50)])


def test_a_transaction_failing_on_a_full_disk_keeps_the_real_error(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            add_rows(store, [Seed("p", f"t{n} " * 5000) for n in range(50)])
        assert not store.conn.in_transaction
        store.conn.execute(f"PRAGMA max_page_count = {pages + 1000}")
        add_rows(store, [Seed("p", "after")])  # the store is usable again
        assert store.stats()["seeds"] == 1


# -- read-only files, folders and filesystems ---------------------------------------------------


def test_a_write_protected_database_is_read_read_only(
    folder: Path, protect: Callable[[Path], None]
) -> None:
    db = filled(folder / "a.db", 3)
    protect(db)
    with Store.open(db) as store:
        assert store.read_only and store.read_only_reason == "the file is write-protected"
        assert store.stats()["seeds"] == 3
        with pytest.raises(ReadOnlyDatabaseError, match="read-only"):
            add_rows(store, [Seed("p", "new")])
    result = invoke(["stats"])
    assert result.exit_code == 0, result.output
    assert "3 seeds (read-only: the file is write-protected)" in result.stdout
    result = invoke(["export", "out.jsonl"])
    assert result.exit_code == 0, result.output
    result = invoke(["import", "rows.jsonl"])
    assert result.exit_code == 1
    line = one_line(result)
    assert "write-protected" in line and "stats, export and review can still read it" in line


def test_a_database_in_a_read_only_folder_is_read_without_writing_there(
    folder: Path, protect: Callable[[Path], None]
) -> None:
    shared = folder / "shared"
    shared.mkdir()
    filled(shared / "a.db", 4)
    assert sorted(p.name for p in shared.iterdir()) == ["a.db"]  # checkpointed on close
    protect(shared)
    with Store.open(shared / "a.db") as store:
        assert store.read_only and store.read_only_reason == "its folder is not writable"
        assert store.stats()["seeds"] == 4
    result = invoke(["stats", "--json"], db="shared/a.db")
    assert result.exit_code == 0, result.output
    result = invoke(["export", "out.jsonl"], db="shared/a.db")
    assert result.exit_code == 0 and "exported 0 accepted records" in result.stdout
    result = invoke(["import", "rows.jsonl"], db="shared/a.db")
    assert result.exit_code == 1 and "folder is not writable" in one_line(result)
    assert sorted(p.name for p in shared.iterdir()) == ["a.db"]


def test_read_only_refuses_a_database_that_needs_a_migration(tmp_path: Path) -> None:
    from studio.errors import DatabaseError
    from studio.store.migrations import available_migrations

    db = tmp_path / "old.db"
    with Store(db) as store:
        store.conn.execute("DELETE FROM schema_version WHERE version > 1")
    with pytest.raises(DatabaseError, match="needs an upgrade"):
        Store(db, read_only=True)
    with sqlite3.connect(db) as conn:  # as if a read-write open had migrated it
        for migration in available_migrations()[1:]:
            conn.execute("INSERT INTO schema_version VALUES (?, 'now')", (migration.version,))
    with Store(db, read_only=True) as store:
        assert store.read_only and store.stats()["seeds"] == 0
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(sqlite3.OperationalError):
        Store(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()  # read-only never creates a file


def test_a_database_on_a_read_only_filesystem_is_read(folder: Path) -> None:
    """A real read-only mount (a bind mount remounted `ro` in a private user namespace)."""
    import shutil
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only mount")
    mounted = folder / "ro"
    mounted.mkdir()
    filled(mounted / "a.db", 5)
    script = (
        f"mount --bind {mounted} {mounted} && mount -o remount,bind,ro {mounted} && "
        f"{sys.executable} -m studio stats --db {mounted}/a.db && "
        f"{sys.executable} -m studio export {folder}/out.jsonl --db {mounted}/a.db && "
        f"{{ {sys.executable} -m studio import {folder}/rows.jsonl --db {mounted}/a.db; "
        "echo import-exit=$?; }"
    )
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "5 seeds (read-only: it is on a read-only filesystem)" in " ".join(done.stdout.split())
    assert "exported 0 accepted records" in done.stdout
    assert "import-exit=1" in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"error: {mounted}/a.db: cannot be changed here: it is on a read-only filesystem; make it "
        "writable, or copy it somewhere writable (stats, export and review can still read it)"
    ]


def test_a_bad_path_is_one_line_and_exit_2(folder: Path) -> None:
    (folder / "notes.txt").write_text("a file, not a folder")
    result = invoke(["import", "rows.jsonl"], db="notes.txt/a.db")
    assert result.exit_code == 2
    assert "notes.txt/a.db: cannot create or open the database" in one_line(result)
