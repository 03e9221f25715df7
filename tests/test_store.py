from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from studio.errors import DatabaseError
from studio.ingest.load import add_rows
from studio.model import CactusRow, RecordStatus, Seed, Stage, StageStatus, record_status
from studio.store import Store
from studio.store.migrations import available_migrations, schema_version
from tests.conftest import DIALOGUE, INTAKE_FORM, PLAN


def _row(n: int = 0) -> CactusRow:
    return CactusRow(
        Seed("persona", f"thought {n}", ("Labeling",), ("reframe",)),
        {
            Stage.INTAKE_FORM: INTAKE_FORM,
            Stage.CBT_TECHNIQUE: "Reality Testing",
            Stage.CBT_PLAN: PLAN,
            Stage.DIALOGUE: DIALOGUE,
        },
        "positive",
    )


def test_new_database_is_private_wal_and_migrated(db_path: Path) -> None:
    with Store(db_path) as store:
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert store.schema_version == len(available_migrations())
        assert {"seeds", "records", "stages", "events", "llm_cache", "runs", "run_metrics"} <= set(
            store.db.table_names()
        )


def test_reopening_does_not_reapply_migrations(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as store:
        rows = store.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
        assert rows == len(available_migrations())


def test_two_processes_opening_a_new_database_migrate_once(db_path: Path) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store(db_path).close()
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(db_path) as store:
        assert schema_version(store.conn) == len(available_migrations())
        assert store.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(
            available_migrations()
        )


def test_newer_schema_is_refused(db_path: Path) -> None:
    with Store(db_path) as store:
        store.conn.execute("INSERT INTO schema_version VALUES (999, 'later')")
    with pytest.raises(DatabaseError, match="newer than this CBT Studio"):
        Store(db_path)


def test_edit_keeps_the_original_text_and_logs_before_after(store: Store) -> None:
    record_id = add_rows(store, [_row()]).record_ids[0]
    store.edit_stage(record_id, Stage.CBT_PLAN, "1. a better step", reviewer="dr_lee")
    stage = store.stage(record_id, Stage.CBT_PLAN)
    assert stage.original_text == PLAN
    assert stage.text == "1. a better step"
    assert stage.status is StageStatus.EDITED
    event = store.conn.execute(
        "SELECT reviewer, action, stage, before, after FROM events WHERE action = 'edit'"
    ).fetchone()
    assert event[:3] == ("dr_lee", "edit", "cbt_plan")
    assert '"generated"' in event[3] and "a better step" in event[4]


def test_editing_the_technique_normalizes_and_mirrors_it(store: Store) -> None:
    record_id = add_rows(store, [_row()]).record_ids[0]
    store.edit_stage(record_id, Stage.CBT_TECHNIQUE, "**pie chart technique**", reviewer="r")
    assert store.record(record_id).technique == "Pie Chart Technique"
    with pytest.raises(ValueError, match="not one of the 12"):
        store.edit_stage(record_id, Stage.CBT_TECHNIQUE, "hypnosis", reviewer="r")


def test_record_status_follows_stage_decisions(store: Store) -> None:
    record_id = add_rows(store, [_row()]).record_ids[0]
    assert store.record(record_id).status is RecordStatus.IN_REVIEW
    for stage in (Stage.INTAKE_FORM, Stage.CBT_TECHNIQUE, Stage.CBT_PLAN):
        assert store.decide_stage(record_id, stage, StageStatus.ACCEPTED, reviewer="r") is (
            RecordStatus.IN_REVIEW
        )
    status = store.decide_stage(record_id, Stage.DIALOGUE, StageStatus.ACCEPTED, reviewer="r")
    assert status is RecordStatus.ACCEPTED
    assert (
        store.reject_record(record_id, reviewer="r2", reason="off-topic") is RecordStatus.REJECTED
    )
    record = store.record(record_id)
    assert (record.status, record.note, record.last_reviewer) == (
        RecordStatus.REJECTED,
        "off-topic",
        "r2",
    )


def test_record_status_rule() -> None:
    g, a, p = StageStatus.GENERATED, StageStatus.ACCEPTED, StageStatus.PENDING
    assert record_status([p, p, p, p], rejected=False) is RecordStatus.PENDING
    assert record_status([g, p, p, p], rejected=False) is RecordStatus.PENDING
    assert record_status([a, p, p, p], rejected=False) is RecordStatus.IN_REVIEW
    assert record_status([g, g, g, g], rejected=False) is RecordStatus.IN_REVIEW
    assert record_status([a, StageStatus.EDITED, a, a], rejected=False) is RecordStatus.ACCEPTED
    assert record_status([a, a, a, a], rejected=True) is RecordStatus.REJECTED


def test_cannot_accept_a_stage_without_text(store: Store) -> None:
    record_id = add_rows(
        store, [CactusRow(Seed("p", "t"), {Stage.INTAKE_FORM: "only the intake"})]
    ).record_ids[0]
    with pytest.raises(ValueError, match="no text"):
        store.decide_stage(record_id, Stage.DIALOGUE, StageStatus.ACCEPTED, reviewer="r")


def test_add_rows_dedupes_by_content(store: Store) -> None:
    first = add_rows(store, [_row(1), _row(2), Seed("p", "t")])
    again = add_rows(store, [_row(1), _row(2), Seed("p", "t"), _row(3)])
    assert (first.seeds_added, first.records_added, first.duplicates) == (3, 2, 0)
    assert (again.seeds_added, again.records_added, again.duplicates) == (1, 1, 3)


def test_unknown_imported_technique_is_invalid_not_guessed(store: Store) -> None:
    row = _row()
    bad = CactusRow(row.seed, {**row.stages, Stage.CBT_TECHNIQUE: "Mindfulness"}, "neutral")
    record_id = add_rows(store, [bad]).record_ids[0]
    stage = store.stage(record_id, Stage.CBT_TECHNIQUE)
    assert stage.status is StageStatus.INVALID
    assert stage.original_text == "Mindfulness"
    assert "none of the 12" in stage.error
    assert store.record(record_id).technique == ""


def test_a_failed_transaction_keeps_earlier_work(store: Store) -> None:
    add_rows(store, [_row(1)])
    with pytest.raises(RuntimeError), store.transaction():
        add_rows(store, [_row(2)])
        raise RuntimeError("boom")
    assert store.stats()["records"]["in_review"] == 1
