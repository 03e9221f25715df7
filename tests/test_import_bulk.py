"""Issue 16, import row: a new database is bulk-loaded without the write-ahead log, safely, and the
faster write path stores exactly what it stored before (same dedupe keys, same stage checks)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio.cbt.checks import imported_stage_status
from studio.ingest import StrictImportError, import_sources
from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows, bulk_load, prepare_row, secondary_indexes_deferred
from studio.model import STAGES, CactusRow, Seed, Stage, StageStatus
from studio.store import Store
from tests.conftest import cactus_row, seed_row, write_jsonl

REPO = Path(__file__).resolve().parent.parent


def _journal_mode(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _indexes(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    ).fetchall()


def test_an_import_in_one_transaction_builds_the_secondary_indexes_again(
    store: Store, tmp_path: Path
) -> None:
    before = _indexes(store)
    assert ("records_status",) in [(name,) for name, _ in before]
    path = write_jsonl(tmp_path / "rows.jsonl", [cactus_row(n) for n in range(5)])
    assert import_sources(store, [str(path)]).imported == 5
    assert _indexes(store) == before
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM records WHERE status = 'in_review' ORDER BY id"
    ).fetchall()
    assert "records_status" in str(plan)


def test_a_strict_import_that_fails_keeps_the_secondary_indexes(
    store: Store, tmp_path: Path
) -> None:
    before = _indexes(store)
    path = write_jsonl(tmp_path / "rows.jsonl", [cactus_row(1), {"thought": 3}])
    with pytest.raises(StrictImportError):
        import_sources(store, [str(path)], strict=True)
    assert _indexes(store) == before
    assert store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_indexes_are_only_deferred_inside_a_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), secondary_indexes_deferred(store):
        pass


def test_a_new_database_is_loaded_without_the_log_and_left_in_wal_mode(
    store: Store, tmp_path: Path
) -> None:
    modes: list[str] = []
    with bulk_load(store) as bulk:
        modes.append(store.conn.execute("PRAGMA journal_mode").fetchone()[0])
    assert bulk is True
    assert modes == ["delete"]
    path = write_jsonl(tmp_path / "rows.jsonl", [cactus_row(n) for n in range(3)])
    report = import_sources(store, [str(path)])
    assert report.imported == 3
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, as opened
    assert _journal_mode(store.path) == "wal"


def test_a_database_with_seeds_keeps_the_log(store: Store) -> None:
    add_rows(store, [Seed(persona="p", thought="t")])
    with bulk_load(store) as bulk:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert bulk is False


def test_a_database_another_connection_has_open_keeps_the_log(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with Store(db_path) as reader:
        with bulk_load(store) as bulk:
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert bulk is False
        path = write_jsonl(tmp_path / "rows.jsonl", [cactus_row(n) for n in range(3)])
        assert import_sources(store, [str(path)]).imported == 3
        # The other connection reads the rows as soon as they are committed, as before.
        assert reader.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3


def test_an_import_killed_during_a_bulk_load_leaves_nothing_half_written(
    tmp_path: Path, db_path: Path
) -> None:
    rows = [cactus_row(n) for n in range(4500)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    # The process kills itself once the first batch of 2,000 rows is written inside the load's
    # transaction (progress is reported every 2,000 lines, after that batch went to the store).
    script = textwrap.dedent(
        f"""
        import os, signal
        from studio.ingest import StrictImportError, import_sources
        from studio.store import Store

        store = Store({str(db_path)!r})

        def progress(done, total):
            if store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]:
                assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
                os.kill(os.getpid(), signal.SIGKILL)

        import_sources(store, [{str(path)!r}], progress=lambda source: progress)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    with Store(db_path) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert "stages_status" in [name for name, _ in _indexes(store)]
        assert import_sources(store, [str(path)]).imported == len(rows)


def test_prepared_keys_are_the_rows_own_content_hashes() -> None:
    """Dedupe keys are stored: the faster preparation must give the very same hashes."""
    rows = [
        parse_cactus(cactus_row(1)),
        parse_cactus(cactus_row(2, attitude="", dialogue="", persona="I am a nurse.")),
        CactusRow(seed=Seed(persona="", thought="t\ud800"), stages={Stage.DIALOGUE: "x"}),
    ]
    for row in rows:
        prepared = prepare_row(row)
        assert prepared.record_key == row.content_hash
        assert prepared.seed_key == row.seed.content_hash
    seed = parse_cactus(cactus_row(3)).seed
    assert prepare_row(seed).seed_key == seed.content_hash


@pytest.mark.parametrize("text", ["", " ", "\n\t", "\u3000", "\u2028 ", " x ", "Reframing"])
def test_blank_stage_texts_are_told_the_same_way_as_before(text: str) -> None:
    for stage in STAGES:
        status = imported_stage_status(stage, text)[0]
        assert (status is StageStatus.PENDING) == (not text.strip())


def test_the_technique_check_is_the_same_on_a_repeated_text() -> None:
    first = imported_stage_status(Stage.CBT_TECHNIQUE, "Technique: decatastrophizing")
    again = imported_stage_status(Stage.CBT_TECHNIQUE, "Technique: decatastrophizing")
    assert first == again == (StageStatus.GENERATED, "", "Decatastrophizing")
    unknown = imported_stage_status(Stage.CBT_TECHNIQUE, "Interpretive dance")
    assert unknown[0] is StageStatus.INVALID
    # Other stages go through the one rule each time (a one-turn dialogue is not a session).
    assert imported_stage_status(Stage.DIALOGUE, "Counselor: hi")[0] is StageStatus.INVALID


def test_seeds_import_into_a_new_database_and_dedupe_as_before(
    store: Store, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "seeds.jsonl", [seed_row(n) for n in range(5)])
    assert import_sources(store, [str(path)]).imported == 5
    again = import_sources(store, [str(path)])
    assert (again.imported, again.duplicates) == (0, 5)
