"""The review side of the store (`studio.store.queue`, `.review`, `.undo`, `.drafts`): queue pages,
counts, decisions, undo, drafts."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.errors import UndoConflict
from studio.ingest.load import add_rows
from studio.model import CactusRow, RecordStatus, Seed, Stage, StageStatus
from studio.store import Store
from studio.store.drafts import delete_draft, drafts, save_draft
from studio.store.queue import (
    QueueFilter,
    neighbor,
    queue_count,
    queue_page,
    queue_rows,
    review_stats,
    status_counts,
)
from studio.store.review import (
    accept_remaining,
    accept_stage,
    reject_record,
    reject_stage,
    save_edit,
)
from studio.store.undo import undo_last
from tests.conftest import DIALOGUE, INTAKE_FORM, PLAN

ME = "dr_lee"


def _row(n: int, technique: str = "Reality Testing", thought: str = "") -> CactusRow:
    return CactusRow(
        Seed(f"persona {n}", thought or f"thought number {n}", ("Labeling",), ("reframe",)),
        {
            Stage.INTAKE_FORM: f"{INTAKE_FORM} ({n})",
            Stage.CBT_TECHNIQUE: technique,
            Stage.CBT_PLAN: PLAN,
            Stage.DIALOGUE: DIALOGUE,
        },
        "neutral",
    )


@pytest.fixture
def filled(store: Store) -> Store:
    rows = [_row(n, "Reality Testing" if n % 2 else "Decatastrophizing") for n in range(1, 11)]
    rows.append(_row(11, thought="100% sure_I will fail"))
    rows.append(_row(12, technique="a made-up technique"))
    add_rows(store, rows)
    return store


def test_queue_pages_by_keyset_in_id_order(filled: Store) -> None:
    first = queue_page(filled, QueueFilter(), limit=5)
    second = queue_page(filled, QueueFilter(), after=first[-1].id, limit=5)
    third = queue_page(filled, QueueFilter(), after=second[-1].id, limit=5)
    ids = [r.id for r in first + second + third]
    assert ids == list(range(1, 13))
    assert first[0].thought == "thought number 1"
    assert first[0].status is RecordStatus.IN_REVIEW
    assert queue_count(filled, QueueFilter()) == 12


def test_filters_status_technique_and_search(filled: Store) -> None:
    accept_remaining(filled, 2, reviewer=ME)
    accepted = QueueFilter(status=RecordStatus.ACCEPTED)
    assert [r.id for r in queue_page(filled, accepted)] == [2]
    assert queue_count(filled, accepted) == 1
    decat = QueueFilter(technique="Decatastrophizing")
    assert [r.id for r in queue_page(filled, decat)] == [2, 4, 6, 8, 10]
    both = QueueFilter(status=RecordStatus.IN_REVIEW, technique="Decatastrophizing")
    assert queue_count(filled, both) == 4
    assert [r.id for r in queue_page(filled, QueueFilter(technique=""))] == [12]
    # LIKE wildcards in the search text are literal characters.
    assert [r.id for r in queue_page(filled, QueueFilter(search="100%"))] == [11]
    assert [r.id for r in queue_page(filled, QueueFilter(search="sure_i"))] == [11]
    assert queue_count(filled, QueueFilter(search="_")) == 1
    assert [r.id for r in queue_page(filled, QueueFilter(search="PERSONA 7"))] == [7]
    assert [r.id for r in queue_page(filled, QueueFilter(search="#5"))] == [5]


def test_neighbor_walks_the_filter(filled: Store) -> None:
    decat = QueueFilter(technique="Decatastrophizing")
    assert neighbor(filled, decat, 2, forward=True) == 4
    assert neighbor(filled, decat, 3, forward=True) == 4
    assert neighbor(filled, decat, 4, forward=False) == 2
    assert neighbor(filled, decat, 10, forward=True) is None
    assert neighbor(filled, decat, 2, forward=False) is None


def test_rows_refresh_and_counts(filled: Store) -> None:
    reject_record(filled, 3, reviewer=ME, reason="off topic")
    rows = queue_rows(filled, [3, 4])
    assert [(r.id, r.status, r.last_reviewer) for r in rows] == [
        (3, RecordStatus.REJECTED, ME),
        (4, RecordStatus.IN_REVIEW, ""),
    ]
    counts = status_counts(filled)
    assert counts[RecordStatus.REJECTED] == 1
    assert counts[RecordStatus.IN_REVIEW] == 10
    assert counts[RecordStatus.PENDING] == 1  # record 12: its technique is invalid


def test_accept_remaining_skips_invalid_and_undoes_in_one_step(filled: Store) -> None:
    count, item = accept_remaining(filled, 12, reviewer=ME)
    assert count == 3  # the invalid technique needs a decision of its own
    assert item.record.stages[Stage.CBT_TECHNIQUE].status is StageStatus.INVALID
    undone = undo_last(filled, reviewer=ME)
    assert undone is not None and undone.action == "accept_all" and undone.events == 3
    record = filled.record(12)
    assert [record.stages[s].status for s in Stage] == [
        StageStatus.GENERATED,
        StageStatus.INVALID,
        StageStatus.GENERATED,
        StageStatus.GENERATED,
    ]
    assert undo_last(filled, reviewer=ME) is None


def test_undo_is_unlimited_one_step_at_a_time_and_per_reviewer(filled: Store) -> None:
    accept_stage(filled, 1, Stage.INTAKE_FORM, reviewer=ME)
    reject_stage(filled, 1, Stage.CBT_PLAN, reviewer=ME, reason="too vague")
    save_edit(filled, 1, Stage.DIALOGUE, "Counselor: Hi.\nClient: Hello.", reviewer=ME)
    accept_stage(filled, 2, Stage.INTAKE_FORM, reviewer="someone_else")
    reject_record(filled, 1, reviewer=ME, reason="duplicate")

    steps = []
    while (undone := undo_last(filled, reviewer=ME)) is not None:
        steps.append((undone.action, undone.stage))
    assert steps == [
        ("reject_record", None),
        ("edit", Stage.DIALOGUE),
        ("reject", Stage.CBT_PLAN),
        ("accept", Stage.INTAKE_FORM),
    ]
    record = filled.record(1)
    assert record.status is RecordStatus.IN_REVIEW
    assert record.note == ""
    for stage in Stage:
        assert record.stages[stage].status is StageStatus.GENERATED
        assert record.stages[stage].edited_text is None
        assert record.stages[stage].note == ""
    # The other reviewer's decision stands; every undo is an event of its own.
    assert filled.stage(2, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED
    undo_events = filled.conn.execute(
        "SELECT reviewer, undoes FROM events WHERE action = 'undo' ORDER BY id"
    ).fetchall()
    assert len(undo_events) == 4
    assert all(reviewer == ME and undoes is not None for reviewer, undoes in undo_events)


def test_undoing_a_technique_edit_restores_the_queue_column_and_the_reason(filled: Store) -> None:
    save_edit(filled, 12, Stage.CBT_TECHNIQUE, "Behavior Experiment", reviewer=ME)
    assert filled.record(12).technique == "Behavior Experiment"
    undo_last(filled, reviewer=ME)
    record = filled.record(12)
    assert record.technique == ""
    assert record.stages[Stage.CBT_TECHNIQUE].status is StageStatus.INVALID
    assert "12 CBT techniques" in record.stages[Stage.CBT_TECHNIQUE].error


def test_undo_refuses_when_the_stage_changed_since(filled: Store) -> None:
    accept_stage(filled, 1, Stage.CBT_PLAN, reviewer=ME)
    # A regeneration (or another reviewer) changes the stage after the decision.
    filled.edit_stage(1, Stage.CBT_PLAN, "1. new plan", reviewer="other")
    with pytest.raises(UndoConflict, match="Counseling plan of record 1 changed"):
        undo_last(filled, reviewer=ME)
    assert filled.stage(1, Stage.CBT_PLAN).text == "1. new plan"


def test_drafts_upsert_list_and_delete(filled: Store) -> None:
    save_draft(filled, 1, Stage.CBT_PLAN, "first", reviewer=ME, base_text=PLAN)
    save_draft(filled, 1, Stage.CBT_PLAN, "second", reviewer=ME, base_text="ignored")
    save_draft(filled, 2, Stage.DIALOGUE, "theirs", reviewer="other")
    mine = drafts(filled, ME)
    assert [(d.record_id, d.stage, d.text, d.base_text) for d in mine] == [
        (1, Stage.CBT_PLAN, "second", PLAN)
    ]
    save_edit(filled, 1, Stage.CBT_PLAN, "second", reviewer=ME)
    assert drafts(filled, ME) == []
    delete_draft(filled, 2, Stage.DIALOGUE, reviewer="other")
    assert drafts(filled, "other") == []


def test_review_stats_count_decisions_per_reviewer(filled: Store) -> None:
    accept_remaining(filled, 1, reviewer=ME)
    save_edit(filled, 2, Stage.CBT_PLAN, f"{PLAN}\n4. Better.", reviewer="other")
    undo_last(filled, reviewer=ME)
    stats = review_stats(filled)
    assert stats.records["in_review"] == 11
    assert stats.techniques["Reality Testing"] == 6
    by_name = {a.reviewer: a for a in stats.reviewers}
    assert by_name[ME].accepted == 4 and by_name[ME].undone == 4
    assert by_name["other"].edited == 1


def test_an_edit_based_on_an_old_text_is_not_saved_over_a_newer_one(tmp_path: Path) -> None:
    from studio.store import EditConflict
    from studio.store.drafts import drafts
    from studio.store.review import save_edit

    with Store(tmp_path / "s.db") as store:
        row = CactusRow(Seed("p", "t"), {Stage.INTAKE_FORM: "original intake"})
        (record_id,) = add_rows(store, [row]).record_ids
        store.edit_stage(record_id, Stage.INTAKE_FORM, "a colleague's intake", reviewer="dr_kim")
        with pytest.raises(EditConflict, match="changed since you started editing"):
            save_edit(
                store,
                record_id,
                Stage.INTAKE_FORM,
                "my intake",
                reviewer="dr_lee",
                base_text="original intake",
            )
        assert store.stage(record_id, Stage.INTAKE_FORM).text == "a colleague's intake"
        (draft,) = drafts(store, "dr_lee")
        assert (draft.text, draft.base_text) == ("my intake", "original intake")
        save_edit(
            store,
            record_id,
            Stage.INTAKE_FORM,
            "my intake",
            reviewer="dr_lee",
            base_text="a colleague's intake",
        )
        assert store.stage(record_id, Stage.INTAKE_FORM).text == "my intake"
