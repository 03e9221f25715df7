"""Adjudication (issue 14): what two assigned reviewers decided differently is settled by a third,
audited and undoable, on a real SQLite file."""

from __future__ import annotations

import orjson
import pytest

from studio.errors import BadInputError, InvalidStage
from studio.ingest.load import add_rows
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store.adjudication import Outcome, adjudicate, dispute, disputes
from studio.store.assignments import assign
from studio.store.decisions import decisions_of
from studio.store.events import EventAction
from studio.store.synthesis import StageResult, save_stage_result
from studio.store.undo import undo_last
from tests.conftest import PLAN
from tests.test_store import _row

ANA, BEN, CLEO = "ana", "ben", "cleo"
NEW_PLAN = PLAN + "\n4. Review the week."


def _decide_all(store: Store, record_id: int, reviewer: str, *, skip: Stage | None = None) -> None:
    for stage in STAGES:
        if stage is not skip:
            store.decide_stage(record_id, stage, StageStatus.ACCEPTED, reviewer=reviewer)


@pytest.fixture
def disputed(store: Store) -> int:
    """Ana accepts every stage; Ben accepts all but edits the plan: the plan is disputed."""
    rid = add_rows(store, [_row(0)]).record_ids[0]
    assign(store, {rid: (ANA, BEN)}, plan={})
    _decide_all(store, rid, ANA)
    _decide_all(store, rid, BEN, skip=Stage.CBT_PLAN)
    store.edit_stage(rid, Stage.CBT_PLAN, NEW_PLAN, reviewer=BEN, note="adds a review")
    assert store.record(rid).status is RecordStatus.DISPUTED
    return rid


def _events(store: Store, record_id: int) -> list[tuple[str, str, str | None, dict[str, object]]]:
    return [
        (action, reviewer, stage, orjson.loads(after) if after else {})
        for action, reviewer, stage, after in store.conn.execute(
            "SELECT action, reviewer, stage, after FROM events WHERE record_id = ?"
            " AND action IN ('adjudicate', 'undo') AND reviewer = ? ORDER BY id",
            (record_id, CLEO),
        )
    ]


def test_disputes_show_each_reviewers_version_and_what_differs(store: Store, disputed: int) -> None:
    found = disputes(store)
    assert [d.record_id for d in found] == [disputed]
    dispute = found[0]
    assert dispute.reviewers == (ANA, BEN)
    assert [s.stage for s in dispute.stages] == list(STAGES)
    assert [s.stage for s in dispute.open_stages] == [Stage.CBT_PLAN]
    plan = dispute.open_stages[0]
    assert [(v.reviewer, v.kind, v.note) for v in plan.versions] == [
        (ANA, "accept", ""),
        (BEN, "edit", "adds a review"),
    ]
    assert [v.text for v in plan.versions] == [PLAN, NEW_PLAN]


def test_picking_a_version_settles_the_record_and_undo_brings_the_dispute_back(
    store: Store, disputed: int
) -> None:
    status = adjudicate(
        store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome="pick", picked=BEN
    )
    assert status is RecordStatus.ACCEPTED
    plan = store.stage(disputed, Stage.CBT_PLAN)
    assert (plan.status, plan.edited_text, plan.note) == (
        StageStatus.EDITED,
        NEW_PLAN,
        "adds a review",
    )
    assert store.record(disputed).status is RecordStatus.ACCEPTED
    assert disputes(store) == []
    assert len(decisions_of(store, disputed)) == 2 * len(STAGES)  # nobody's decision changed
    undone = undo_last(store, reviewer=CLEO)
    assert undone is not None and undone.describe() == (
        f"Undid adjudication of Counseling plan (record {disputed})"
    )
    assert store.record(disputed).status is RecordStatus.DISPUTED
    assert store.stage(disputed, Stage.CBT_PLAN).status is StageStatus.GENERATED
    assert [d.record_id for d in disputes(store)] == [disputed]
    assert store.conn.execute("SELECT COUNT(*) FROM adjudications").fetchone()[0] == 0
    events = _events(store, disputed)
    assert [(a, r, s) for a, r, s, _ in events] == [
        ("adjudicate", CLEO, "cbt_plan"),
        ("undo", CLEO, "cbt_plan"),
    ]
    assert events[0][3] == {
        "adjudicator": CLEO,
        "outcome": "pick",
        "picked": BEN,
        "status": "edited",
        "edited_text": NEW_PLAN,
        "note": "adds a review",
    }


def test_a_merge_is_saved_as_edited_and_an_invalid_one_is_refused(
    store: Store, disputed: int
) -> None:
    merged = NEW_PLAN + "\n5. Plan a reward."
    with pytest.raises(InvalidStage, match="breaks its stage rule"):
        adjudicate(store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome="merge", text=" ")
    assert store.conn.execute("SELECT COUNT(*) FROM adjudications").fetchone()[0] == 0
    assert _events(store, disputed) == []
    status = adjudicate(
        store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome=Outcome.MERGE, text=merged
    )
    assert status is RecordStatus.ACCEPTED
    plan = store.stage(disputed, Stage.CBT_PLAN)
    assert (plan.status, plan.edited_text) == (StageStatus.EDITED, merged)
    # Confirmed (the app asks first), an invalid merge is saved as invalid and stays listed.
    adjudicate(
        store,
        disputed,
        Stage.CBT_PLAN,
        adjudicator=CLEO,
        outcome="merge",
        text=" ",
        invalid_ok=True,
    )
    assert store.stage(disputed, Stage.CBT_PLAN).status is StageStatus.INVALID
    assert store.record(disputed).status is RecordStatus.IN_REVIEW
    assert [d.record_id for d in disputes(store)] == [disputed]
    undo_last(store, reviewer=CLEO)  # back to the valid merge
    assert store.stage(disputed, Stage.CBT_PLAN).edited_text == merged
    assert disputes(store) == []


def test_reject_and_a_record_rejected_by_one_reviewer(store: Store, disputed: int) -> None:
    status = adjudicate(
        store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome="reject", note="too vague"
    )
    assert status is RecordStatus.IN_REVIEW
    plan = store.stage(disputed, Stage.CBT_PLAN)
    assert (plan.status, plan.note) == (StageStatus.REJECTED, "too vague")

    other = add_rows(store, [_row(1)]).record_ids[0]
    assign(store, {other: (ANA, BEN)}, plan={})
    _decide_all(store, other, ANA)
    store.reject_record(other, reviewer=BEN, reason="off topic")
    assert store.record(other).status is RecordStatus.DISPUTED
    whole = next(d for d in disputes(store) if d.record_id == other).open_stages
    assert [(s.stage, [v.kind for v in s.versions]) for s in whole] == [(None, ["keep", "reject"])]
    with pytest.raises(BadInputError):
        adjudicate(store, other, None, adjudicator=CLEO, outcome="merge", text="x")
    # Picking Ana's version keeps the record as she decided it, stage by stage.
    assert adjudicate(store, other, None, adjudicator=CLEO, outcome="pick", picked=ANA) is (
        RecordStatus.ACCEPTED
    )
    assert {v.status for v in store.record(other).stages.values()} == {StageStatus.ACCEPTED}
    undone = undo_last(store, reviewer=CLEO)  # the whole pick at once
    assert undone is not None and undone.events == 1 + len(STAGES)
    assert store.record(other).status is RecordStatus.DISPUTED
    adjudicate(store, other, None, adjudicator=CLEO, outcome="pick", picked=BEN)
    record = store.record(other)
    assert (record.status, record.note) == (RecordStatus.REJECTED, "off topic")


def test_only_a_disputed_stage_and_an_assigned_reviewer_can_be_picked(
    store: Store, disputed: int
) -> None:
    with pytest.raises(BadInputError, match="dora is not a reviewer"):
        adjudicate(store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome="pick", picked="dora")
    with pytest.raises(BadInputError, match=r"intake form of record \d+ is not in dispute"):
        adjudicate(store, disputed, Stage.INTAKE_FORM, adjudicator=CLEO, outcome="reject")
    single = add_rows(store, [_row(2)]).record_ids[0]
    with pytest.raises(BadInputError, match="not double-reviewed"):
        adjudicate(store, single, Stage.CBT_PLAN, adjudicator=CLEO, outcome="reject")


def test_decisions_made_before_the_text_changed_are_no_dispute(store: Store, disputed: int) -> None:
    regenerated = StageResult(PLAN + "\n4. Keep a diary.")
    save_stage_result(store, disputed, Stage.CBT_PLAN, regenerated, action=EventAction.REGENERATE)
    assert store.record(disputed).status is RecordStatus.IN_REVIEW
    assert dispute(store, disputed).open_stages == []
    assert disputes(store) == []
    with pytest.raises(BadInputError, match="not in dispute"):
        adjudicate(store, disputed, Stage.CBT_PLAN, adjudicator=CLEO, outcome="pick", picked=BEN)
