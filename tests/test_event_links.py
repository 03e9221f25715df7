"""Event kinds and links (migration 0006): accept-all groups and undo links have columns of their
own, the old `detail` prefixes are moved into them, and the audit log is append-only."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from studio.ingest.load import add_rows
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store import migrations as migrations_module
from studio.store.events import EventAction
from studio.store.review import accept_remaining, accept_stage, reject_record
from studio.store.undo import undo_last
from tests.conftest import older_schema
from tests.test_store import _row  # a record with all four stages

ME = "alice"
_SNAP = {"edited_text": None, "note": ""}


def _old_event(store: Store, action: str, record_id: int, stage: Stage, detail: str) -> int:
    cur = store.conn.execute(
        "INSERT INTO events (ts, reviewer, action, record_id, stage, before, after, detail)"
        " VALUES ('2026-01-01', ?, ?, ?, ?, ?, ?, ?)",
        (
            ME,
            action,
            record_id,
            stage.value,
            orjson.dumps({"status": "generated", **_SNAP}).decode(),
            orjson.dumps({"status": "accepted", **_SNAP}).decode(),
            detail,
        ),
    )
    return int(cur.lastrowid or 0)


def test_migration_moves_the_old_prefixes_into_columns(tmp_path: Path) -> None:
    # A database written before 0006: the links live in `detail` as 'undoes:<id>' and
    # 'accept_all:<id>'.
    db = tmp_path / "old.db"
    with older_schema(tmp_path, 5), Store(db) as old:
        assert old.schema_version == 5
        add_rows(old, [_row(1), _row(2)])
        # Record 2: an accept, and its undo.
        accepted = _old_event(old, "accept", 2, Stage.INTAKE_FORM, "")
        undo = _old_event(old, "undo", 2, Stage.INTAKE_FORM, f"undoes:{accepted}")
        # Record 1: an accept-all over its four stages.
        first = accepted + 2
        for stage in STAGES:
            _old_event(old, "accept", 1, stage, f"accept_all:{first}")
        old.conn.execute("UPDATE stages SET status = 'accepted' WHERE record_id = 1")
        old.conn.execute("UPDATE records SET status = 'accepted' WHERE id = 1")

    with Store(db) as store:
        assert store.schema_version == len(migrations_module.available_migrations())
        rows = store.conn.execute(
            "SELECT id, detail, accept_group, undoes FROM events WHERE id >= ? ORDER BY id",
            (accepted,),
        ).fetchall()
        assert rows == [
            (accepted, "", None, None),
            (undo, "", None, accepted),
            *[(first + i, "", first, None) for i in range(4)],
        ]
        # Undo reads the moved links: the group goes back in one step, the undone accept stays.
        undone = undo_last(store, reviewer=ME)
        assert undone is not None and undone.action == "accept_all" and undone.events == 4
        assert {v.status for v in store.record(1).stages.values()} == {StageStatus.GENERATED}
        assert undo_last(store, reviewer=ME) is None


def test_the_audit_log_is_append_only(store: Store) -> None:
    add_rows(store, [_row(1), _row(2)])
    accept_stage(store, 2, Stage.DIALOGUE, reviewer=ME)
    accept_remaining(store, 1, reviewer=ME)
    reject_record(store, 2, reviewer=ME, reason="duplicate")

    def log() -> list[tuple[object, ...]]:
        return store.conn.execute("SELECT * FROM events ORDER BY id").fetchall()

    written = log()
    while undo_last(store, reviewer=ME) is not None:
        now = log()
        assert now[: len(written)] == written  # nothing written before was changed
        written = now
    undos = store.conn.execute(
        "SELECT undoes FROM events WHERE action = ? ORDER BY id", (EventAction.UNDO,)
    ).fetchall()
    assert len(undos) == 1 + 4 + 1
    groups = store.conn.execute(
        "SELECT DISTINCT accept_group FROM events WHERE record_id = 1 AND action = 'accept'"
    ).fetchall()
    first = store.conn.execute(
        "SELECT MIN(id) FROM events WHERE record_id = 1 AND action = 'accept'"
    ).fetchone()
    assert groups == [first]  # the group is named by its first event, written with each
    assert store.record(1).status is RecordStatus.IN_REVIEW


def test_an_unknown_action_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="'approve' is not a valid EventAction"):
        store.log_event("approve")  # type: ignore[arg-type]
