"""The stage rows have one owner (`studio.store.stages`): one field list, one writer, one
snapshot. Adding a column is a migration plus one `StageView` field."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage, StageStatus
from studio.store import Store, stages
from studio.store.stages import STAGE_FIELDS, StageView, snapshot, write_stage
from tests.conftest import INTAKE_FORM

_KEYS = {"id", "record_id", "name", "position"}


def _record(store: Store) -> int:
    seed = Seed("persona", "thought", ("Labeling",), ("reframe",))
    row = CactusRow(seed, {Stage.INTAKE_FORM: INTAKE_FORM}, "positive")
    return add_rows(store, [row]).record_ids[0]


def test_the_field_list_is_the_table(store: Store) -> None:
    columns = [row[1] for row in store.conn.execute("PRAGMA table_info(stages)")]
    # A migration that adds a column without its StageView field fails here.
    assert [c for c in columns if c not in _KEYS] == list(STAGE_FIELDS)


def test_a_new_column_is_one_field(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    record_id = _record(store)
    store.conn.execute("ALTER TABLE stages ADD COLUMN flag TEXT NOT NULL DEFAULT ''")

    @dataclass(frozen=True, slots=True)
    class Flagged(StageView):
        flag: str = ""

    # What a real new column changes: the StageView fields; the lists below follow from them.
    fields = stages.columns_of(Flagged)
    assert fields == (*STAGE_FIELDS, "flag")
    monkeypatch.setattr(stages, "StageView", Flagged)
    monkeypatch.setattr(stages, "STAGE_FIELDS", fields)
    monkeypatch.setattr(stages, "STAGE_COLUMNS", ", ".join(("record_id", "name", *fields)))

    assert write_stage(store, record_id, Stage.DIALOGUE, flag="seen", note="n")
    view = store.stage(record_id, Stage.DIALOGUE)
    assert isinstance(view, Flagged)
    assert (view.flag, view.note) == ("seen", "n")
    again = store.record(record_id).stages[Stage.DIALOGUE]
    assert isinstance(again, Flagged)
    assert again.flag == "seen"
    assert snapshot(view, ("status", "flag")) == {"status": "pending", "flag": "seen"}


def test_write_stage_refuses_an_unknown_column(store: Store) -> None:
    record_id = _record(store)
    with pytest.raises(ValueError, match="stages has no column nope"):
        write_stage(store, record_id, Stage.DIALOGUE, nope=1)


def test_write_stage_only_if_unchanged(store: Store) -> None:
    record_id = _record(store)
    stamp = store.stage(record_id, Stage.DIALOGUE).updated_at
    assert not write_stage(store, record_id, Stage.DIALOGUE, if_updated_at="older", error="x")
    assert write_stage(
        store, record_id, Stage.DIALOGUE, touch=False, if_updated_at=stamp, error="late"
    )
    view = store.stage(record_id, Stage.DIALOGUE)
    assert (view.error, view.updated_at, view.status) == ("late", stamp, StageStatus.PENDING)
