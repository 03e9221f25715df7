"""`--db` means the database you named, on every command (issue 8, item 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

from studio.cli import cli
from studio.ingest.load import add_rows
from studio.store import Store
from tests.conftest import cactus_row, write_jsonl


class FakeApp:
    """Stands in for the review app: records what it was opened on instead of taking the screen."""

    opened: ClassVar[list[tuple[Path, str]]] = []
    failure: Exception | None = None  # the real app's "could not open the database" slot

    def __init__(self, db: Path, *, reviewer: str, **_: Any) -> None:
        self.db, self.reviewer = Path(db), reviewer

    def run(self) -> None:
        FakeApp.opened.append((self.db, self.reviewer))


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIO_DB", raising=False)
    monkeypatch.delenv("STUDIO_REVIEWER", raising=False)
    monkeypatch.setattr("studio.tui.make_app", FakeApp)
    FakeApp.opened = []
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def snapshot(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def changed(before: dict[str, float], folder: Path) -> set[str]:
    after = snapshot(folder)
    return {name for name in after if before.get(name) != after[name]}


def test_every_command_works_on_the_group_db(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`studio --db mine.db COMMAND`: only mine.db (and files beside it) change, never studio.db."""
    rows = write_jsonl(folder / "rows.jsonl", [cactus_row(1), cactus_row(2)])
    decoy = folder / "studio.db"
    Store(decoy).close()  # the default database exists, so a command that ignores --db succeeds

    before = snapshot(folder)
    result = invoke("--db", "mine.db", "import", str(rows), "--status", "accepted")
    assert result.exit_code == 0, result.output
    assert changed(before, folder) >= {"mine.db"} and "studio.db" not in changed(before, folder)
    with Store(folder / "mine.db") as store:
        assert store.stats()["records"]["accepted"] == 2

    result = invoke("--db", "mine.db", "stats", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["records"]["accepted"] == 2

    result = invoke("--db", "mine.db", "export", "out.jsonl")
    assert result.exit_code == 0 and "exported 2 accepted records" in result.stdout

    before = snapshot(folder)
    result = invoke("--db", "demo-here.db", "demo", "--no-open")
    assert result.exit_code == 0, result.output
    assert "demo-here.db" in changed(before, folder) and "studio.db" not in changed(before, folder)

    result = invoke("--db", "mine.db", "--reviewer", "dr-lee", "review")
    assert result.exit_code == 0, result.output
    assert FakeApp.opened[-1] == (Path("mine.db"), "dr-lee")

    monkeypatch.setattr("studio.commands.review.is_interactive", lambda: True)
    monkeypatch.setattr("studio.cli.is_interactive", lambda: True)
    result = invoke("--db", "mine.db", "--reviewer", "dr-kim")
    assert result.exit_code == 0, result.output
    assert FakeApp.opened[-1] == (Path("mine.db"), "dr-kim")

    empty = folder / "empty.db"
    Store(empty).close()
    before = snapshot(folder)
    result = invoke(
        "--db", "empty.db", "synth", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
        "--model", "m",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "empty.db.synth.lock" in changed(before, folder)
    assert not (folder / "studio.db.synth.lock").exists()

    # train stops at its first check; which database it read shows in the message
    result = invoke("--db", "empty.db", "train", "--base-model", "x")
    assert result.exit_code != 0
    assert "empty.db" in result.output and "studio.db" not in result.output
    with Store(decoy) as store:
        assert store.stats()["seeds"] == 0  # nothing ever landed in the file nobody named


def test_precedence_own_option_group_env_default(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.model import Seed

    for name, count in (("own.db", 1), ("group.db", 2), ("env.db", 3), ("studio.db", 4)):
        with Store(folder / name) as store:
            add_rows(store, [Seed("p", f"t{n}") for n in range(count)])

    def seeds(*args: str) -> int:
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["seeds"])

    monkeypatch.setenv("STUDIO_DB", "env.db")
    assert seeds("--db", "group.db", "stats", "--json", "--db", "own.db") == 1
    assert seeds("--db", "group.db", "stats", "--json") == 2
    assert seeds("stats", "--json") == 3
    monkeypatch.delenv("STUDIO_DB")
    assert seeds("stats", "--json") == 4


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["review"],
        ["synth", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
        ["--reviewer", "x"],
    ],
)
def test_no_database_in_the_folder_says_how_to_start(
    folder: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setattr("studio.cli.is_interactive", lambda: True)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "studio.db: no such database" in result.stderr
    assert "studio demo" in result.stderr and "studio import" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(folder.iterdir()) == []  # no empty studio.db, no lock file
    assert FakeApp.opened == []


def test_import_of_a_missing_file_creates_no_database(folder: Path) -> None:
    result = invoke("--db", "mine.db", "import", "missing.json")
    assert result.exit_code == 2 and "missing.json: no such file" in result.stderr
    assert list(folder.iterdir()) == []
    result = invoke("import", "missing.json")
    assert result.exit_code == 2
    assert list(folder.iterdir()) == []


def test_the_group_reviewer_reaches_import(folder: Path) -> None:
    rows = write_jsonl(folder / "rows.jsonl", [cactus_row(1)])
    result = invoke(
        "--reviewer", "dr-lee", "--db", "m.db", "import", str(rows), "--status", "accepted"
    )
    assert result.exit_code == 0, result.output
    with Store(folder / "m.db") as store:
        assert store.record(1).last_reviewer == "dr-lee"
