"""Per-reviewer decisions (issue 14): a single reviewer's decisions are also their own rows, and a
record assigned to two reviewers is settled from both decisions, blind until both decided."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.errors import NotAssigned, UndoConflict
from studio.ingest.load import add_rows
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store.decisions import Decision, decisions_of, settle
from studio.store.queue import QueueFilter, neighbor, queue_page, queue_rows
from studio.store.review import (
    accept_remaining,
    accept_stage,
    change_technique,
    load_item,
    reject_record,
    reject_stage,
    save_edit,
)
from studio.store.synthesis import mark_downstream_stale
from studio.store.undo import undo_last
from tests.conftest import PLAN, older_schema
from tests.test_store import _row

ANA, BEN = "ana", "ben"
GUIDE = "0123456789ab"


def _record(store: Store, n: int = 0) -> int:
    return add_rows(store, [_row(n)]).record_ids[0]


def _assign(store: Store, record_id: int, *names: str) -> None:
    for name in names:
        store.conn.execute(
            "INSERT INTO assignments (record_id, reviewer, assigned_at) VALUES (?, ?, 'now')",
            (record_id, name),
        )


def _mine(store: Store, record_id: int) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (d.stage.value if d.stage else "record", d.reviewer): (d.status.value, d.edited_text)
        for d in decisions_of(store, record_id)
    }


# -- one reviewer: as before, plus their own rows -------------------------------------------------


def test_a_single_reviewers_decisions_are_their_rows_too(store: Store) -> None:
    rid = _record(store)
    accept_stage(store, rid, Stage.INTAKE_FORM, reviewer=ANA, guideline=GUIDE)
    save_edit(store, rid, Stage.CBT_PLAN, PLAN + "\n4. Review.", reviewer=ANA, guideline=GUIDE)
    reject_stage(store, rid, Stage.DIALOGUE, reviewer=ANA, reason="too short")
    record = store.record(rid)
    assert record.stages[Stage.INTAKE_FORM].status is StageStatus.ACCEPTED
    assert record.stages[Stage.CBT_PLAN].status is StageStatus.EDITED
    assert _mine(store, rid) == {
        ("intake_form", ANA): ("accepted", None),
        ("cbt_plan", ANA): ("edited", PLAN + "\n4. Review."),
        ("dialogue", ANA): ("rejected", None),
    }
    found = {d.stage: d for d in decisions_of(store, rid)}
    assert found[Stage.INTAKE_FORM].guideline == GUIDE
    assert found[Stage.DIALOGUE].note == "too short"
    guidelines = store.conn.execute(
        "SELECT action, guideline FROM events WHERE record_id = ? AND reviewer = ? ORDER BY id",
        (rid, ANA),
    ).fetchall()
    assert guidelines == [("accept", GUIDE), ("edit", GUIDE), ("reject", "")]
    reject_record(store, rid, reviewer=ANA, reason="off topic", guideline=GUIDE)
    assert store.record(rid).status is RecordStatus.REJECTED
    assert ("record", ANA) in _mine(store, rid)


def test_undo_takes_back_a_single_reviewers_row(store: Store) -> None:
    rid = _record(store)
    accept_stage(store, rid, Stage.CBT_PLAN, reviewer=ANA)
    save_edit(store, rid, Stage.CBT_PLAN, PLAN + "\n4. Review.", reviewer=ANA)
    undo_last(store, reviewer=ANA)  # the edit: back to her accept
    assert _mine(store, rid) == {("cbt_plan", ANA): ("accepted", None)}
    assert store.stage(rid, Stage.CBT_PLAN).status is StageStatus.ACCEPTED
    undo_last(store, reviewer=ANA)  # the accept: no decision left
    assert _mine(store, rid) == {}
    reject_record(store, rid, reviewer=ANA, reason="no")
    undo_last(store, reviewer=ANA)
    assert _mine(store, rid) == {}
    assert store.record(rid).status is RecordStatus.IN_REVIEW


def test_one_reviewer_undoing_leaves_anothers_decision(store: Store) -> None:
    rid = _record(store)
    accept_stage(store, rid, Stage.CBT_PLAN, reviewer=BEN)
    save_edit(store, rid, Stage.CBT_PLAN, PLAN + "\n4. Review.", reviewer=ANA)
    undo_last(store, reviewer=ANA)
    assert _mine(store, rid) == {("cbt_plan", BEN): ("accepted", None)}
    assert store.stage(rid, Stage.CBT_PLAN).status is StageStatus.ACCEPTED


# -- two reviewers ------------------------------------------------------------------------------


@pytest.fixture
def double(store: Store) -> int:
    rid = _record(store)
    _assign(store, rid, ANA, BEN)
    return rid


def test_a_decision_stays_the_reviewers_own_until_both_decided(store: Store, double: int) -> None:
    item = accept_stage(store, double, Stage.INTAKE_FORM, reviewer=ANA)
    assert item.record.stages[Stage.INTAKE_FORM].status is StageStatus.ACCEPTED
    # The final state is unchanged, and Ben sees the stage as generated.
    assert store.stage(double, Stage.INTAKE_FORM).status is StageStatus.GENERATED
    ben = load_item(store, double, reviewer=BEN).record
    assert ben.stages[Stage.INTAKE_FORM].status is StageStatus.GENERATED
    assert store.record(double).status is RecordStatus.IN_REVIEW
    # Ben rejects it: they differ, the record is disputed, both decisions are kept.
    reject_stage(store, double, Stage.INTAKE_FORM, reviewer=BEN, reason="wrong age")
    assert store.record(double).status is RecordStatus.DISPUTED
    assert store.stage(double, Stage.INTAKE_FORM).status is StageStatus.GENERATED
    assert _mine(store, double) == {
        ("intake_form", ANA): ("accepted", None),
        ("intake_form", BEN): ("rejected", None),
    }


def test_agreeing_reviewers_make_the_final_state(store: Store, double: int) -> None:
    accept_remaining(store, double, reviewer=ANA)
    assert store.record(double).status is RecordStatus.IN_REVIEW
    assert load_item(store, double, reviewer=ANA).record.status is RecordStatus.ACCEPTED
    assert load_item(store, double, reviewer=BEN).record.status is RecordStatus.IN_REVIEW
    count, item = accept_remaining(store, double, reviewer=BEN)
    assert count == len(STAGES)
    assert item.record.status is RecordStatus.ACCEPTED
    record = store.record(double)
    assert record.status is RecordStatus.ACCEPTED
    assert {v.status for v in record.stages.values()} == {StageStatus.ACCEPTED}
    # Ana takes hers back: the stage is no longer final, nor the record.
    undo_last(store, reviewer=ANA)
    assert store.record(double).status is RecordStatus.IN_REVIEW
    assert {v.status for v in store.record(double).stages.values()} == {StageStatus.GENERATED}


def test_edits_agree_only_on_the_same_text(store: Store, double: int) -> None:
    new = PLAN + "\n4. Review."
    save_edit(store, double, Stage.CBT_PLAN, new, reviewer=ANA)
    assert store.stage(double, Stage.CBT_PLAN).edited_text is None
    assert load_item(store, double, reviewer=BEN).record.text(Stage.CBT_PLAN) == PLAN
    save_edit(store, double, Stage.CBT_PLAN, new, reviewer=BEN)
    plan = store.stage(double, Stage.CBT_PLAN)
    assert (plan.status, plan.edited_text) == (StageStatus.EDITED, new)
    other = _record(store, 1)
    _assign(store, other, ANA, BEN)
    save_edit(store, other, Stage.CBT_PLAN, new, reviewer=ANA)
    save_edit(store, other, Stage.CBT_PLAN, new + "\n5. More.", reviewer=BEN)
    assert store.record(other).status is RecordStatus.DISPUTED
    assert store.stage(other, Stage.CBT_PLAN).edited_text is None


def test_an_edited_technique_becomes_the_records_only_when_settled(
    store: Store, double: int
) -> None:
    before = store.record(double).technique
    save_edit(store, double, Stage.CBT_TECHNIQUE, "Decatastrophizing", reviewer=ANA)
    assert store.record(double).technique == before
    assert load_item(store, double, reviewer=ANA).record.technique == "Decatastrophizing"
    save_edit(store, double, Stage.CBT_TECHNIQUE, "Decatastrophizing", reviewer=BEN)
    assert store.record(double).technique == "Decatastrophizing"


def test_record_rejections_of_two_reviewers(store: Store, double: int) -> None:
    reject_record(store, double, reviewer=ANA, reason="off topic")
    # Ben has not finished: not settled, and he does not see her rejection.
    assert store.record(double).status is RecordStatus.IN_REVIEW
    assert load_item(store, double, reviewer=BEN).record.status is RecordStatus.IN_REVIEW
    assert load_item(store, double, reviewer=ANA).record.status is RecordStatus.REJECTED
    reject_record(store, double, reviewer=BEN, reason="unsafe")
    record = store.record(double)
    assert record.status is RecordStatus.REJECTED
    assert record.note == "off topic; unsafe"
    undo_last(store, reviewer=BEN)
    assert store.record(double).status is RecordStatus.IN_REVIEW
    assert store.record(double).note == ""
    accept_remaining(store, double, reviewer=BEN)  # he accepts what she rejected
    assert store.record(double).status is RecordStatus.DISPUTED


def test_undo_on_a_double_reviewed_record_checks_the_reviewers_own_row(
    store: Store, double: int
) -> None:
    accept_stage(store, double, Stage.DIALOGUE, reviewer=ANA)
    reject_stage(store, double, Stage.DIALOGUE, reviewer=BEN)
    assert store.record(double).status is RecordStatus.DISPUTED
    undone = undo_last(store, reviewer=BEN)
    assert undone is not None and undone.stage is Stage.DIALOGUE
    assert _mine(store, double) == {("dialogue", ANA): ("accepted", None)}
    assert store.record(double).status is RecordStatus.IN_REVIEW
    # Her row changed behind her undo (a merge, say): refused, nothing changed.
    store.conn.execute("UPDATE decisions SET note = 'x' WHERE reviewer = ?", (ANA,))
    with pytest.raises(UndoConflict):
        undo_last(store, reviewer=ANA)


def test_an_adjudication_settles_a_disputed_stage(store: Store, double: int) -> None:
    accept_stage(store, double, Stage.INTAKE_FORM, reviewer=ANA)
    reject_stage(store, double, Stage.INTAKE_FORM, reviewer=BEN)
    store.conn.execute(
        "INSERT INTO adjudications (record_id, stage, adjudicator, outcome, picked, status,"
        " decided_at) VALUES (?, 'intake_form', 'cleo', 'pick', ?, 'accepted', 'now')",
        (double, ANA),
    )
    assert settle(store, double) is RecordStatus.IN_REVIEW
    assert store.stage(double, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED
    assert len(decisions_of(store, double)) == 2


def test_settle_leaves_a_single_review_record_as_it_is(store: Store) -> None:
    rid = _record(store)
    accept_remaining(store, rid, reviewer=ANA)
    assert settle(store, rid) is RecordStatus.ACCEPTED
    assert decisions_of(store, rid)[0] == Decision(
        rid,
        Stage.INTAKE_FORM,
        ANA,
        StageStatus.ACCEPTED,
        decided_at=decisions_of(store, rid)[0].decided_at,
    )


# -- the migration carries today's decisions over -------------------------------------------------


def _old_decision(
    store: Store, reviewer: str, action: str, record_id: int, stage: Stage, status: str
) -> None:
    store.conn.execute(
        "INSERT INTO events (ts, reviewer, action, record_id, stage, before, after)"
        " VALUES ('2026-01-01', ?, ?, ?, ?, '{}', '{}')",
        (reviewer, action, record_id, stage.value),
    )
    store.conn.execute(
        "UPDATE stages SET status = ?, edited_text = ? WHERE record_id = ? AND name = ?",
        (status, "my plan" if status == "edited" else None, record_id, stage.value),
    )


def test_the_migration_carries_decisions_over(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with older_schema(tmp_path, 6), Store(db) as old:
        assert old.schema_version == 6
        one, two, three = add_rows(old, [_row(1), _row(2), _row(3)]).record_ids
        _old_decision(old, ANA, "accept", one, Stage.INTAKE_FORM, "accepted")
        _old_decision(old, BEN, "edit", one, Stage.CBT_PLAN, "edited")
        _old_decision(old, ANA, "reject", one, Stage.DIALOGUE, "rejected")
        # Accepted by Ana, then by Ben: the reviewer of the newest decision event has it.
        _old_decision(old, ANA, "accept", one, Stage.CBT_TECHNIQUE, "accepted")
        _old_decision(old, BEN, "accept", one, Stage.CBT_TECHNIQUE, "accepted")
        old.conn.execute("UPDATE records SET last_reviewer = ? WHERE id = ?", (ANA, one))
        old.conn.execute(
            "UPDATE records SET rejected = 1, status = 'rejected', note = 'off topic',"
            " last_reviewer = 'cleo' WHERE id = ?",
            (two,),
        )
        # Accepted without a decision event (an import marked reviewed): its last reviewer.
        old.conn.execute(
            "UPDATE stages SET status = 'accepted' WHERE record_id = ? AND name = 'intake_form'",
            (three,),
        )
        old.conn.execute("UPDATE records SET last_reviewer = 'dora' WHERE id = ?", (three,))

    with Store(db) as store:
        assert store.schema_version >= 7
        assert _mine(store, one) == {
            ("intake_form", ANA): ("accepted", None),
            ("cbt_technique", BEN): ("accepted", None),
            ("cbt_plan", BEN): ("edited", "my plan"),
            ("dialogue", ANA): ("rejected", None),
        }
        assert _mine(store, two) == {("record", "cleo"): ("rejected", None)}
        assert decisions_of(store, two)[0].note == "off topic"
        assert _mine(store, three) == {("intake_form", "dora"): ("accepted", None)}
        # Single review goes on as before on a migrated database.
        accept_stage(store, one, Stage.CBT_PLAN, reviewer=ANA)
        assert store.stage(one, Stage.CBT_PLAN).status is StageStatus.ACCEPTED
        assert undo_last(store, reviewer=ANA) is not None
        assert _mine(store, one)[("cbt_plan", BEN)] == ("edited", "my plan")
        assert ("cbt_plan", ANA) not in _mine(store, one)


def test_decisions_made_before_a_stage_went_stale_do_not_settle_it(
    store: Store, double: int
) -> None:
    accept_remaining(store, double, reviewer=ANA)
    accept_remaining(store, double, reviewer=BEN)
    assert store.record(double).status is RecordStatus.ACCEPTED
    mark_downstream_stale(store, double, Stage.CBT_TECHNIQUE, reviewer=ANA)
    assert settle(store, double) is RecordStatus.IN_REVIEW
    assert store.stage(double, Stage.DIALOGUE).status is StageStatus.STALE
    assert store.stage(double, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED
    assert store.stage(double, Stage.CBT_TECHNIQUE).status is StageStatus.ACCEPTED
    # Nor does her out-of-date accept show over the stale dialogue.
    ana = load_item(store, double, reviewer=ANA).record
    assert ana.stages[Stage.DIALOGUE].status is StageStatus.STALE


# -- the queue ----------------------------------------------------------------------------------


def test_a_reviewers_assigned_records_come_first_in_the_queue(store: Store) -> None:
    ids = add_rows(store, [_row(n) for n in range(6)]).record_ids
    _assign(store, ids[4], ANA, BEN)
    _assign(store, ids[1], ANA)
    _assign(store, ids[2], BEN)
    everyone = QueueFilter()
    mine_first = [ids[1], ids[4], ids[0], ids[2], ids[3], ids[5]]
    assert [r.id for r in queue_page(store, everyone, reviewer=ANA)] == mine_first
    # Page by page, the keyset continues in whichever part the last row was.
    pages: list[int] = []
    after = 0
    while page := queue_page(store, everyone, after=after, limit=2, reviewer=ANA):
        pages += [r.id for r in page]
        after = page[-1].id
    assert pages == mine_first
    assert [r.id for r in queue_page(store, everyone, reviewer="cleo")] == list(ids)
    assert [r.id for r in queue_page(store, everyone)] == list(ids)
    ordered = [r.id for r in queue_page(store, QueueFilter(by_score=True), reviewer=BEN)]
    assert ordered[:2] == [ids[2], ids[4]]
    # n / p walk the same order.
    walked = [mine_first[0]]
    while (nxt := neighbor(store, everyone, walked[-1], forward=True, reviewer=ANA)) is not None:
        walked.append(nxt)
    assert walked == mine_first
    back = neighbor(store, everyone, ids[0], forward=False, reviewer=ANA)
    assert back == ids[4]


def test_the_queue_shows_no_other_reviewers_decision(store: Store, double: int) -> None:
    before = queue_rows(store, [double])[0]
    reject_record(store, double, reviewer=ANA, reason="off topic")
    accept_stage(store, double, Stage.INTAKE_FORM, reviewer=ANA)
    seen = queue_page(store, QueueFilter(), reviewer=BEN)[0]
    assert (seen.status, seen.last_reviewer, seen.updated_at) == (
        before.status,
        before.last_reviewer,
        before.updated_at,
    )


def test_only_the_assigned_reviewers_decide_a_double_reviewed_record(
    store: Store, double: int
) -> None:
    with pytest.raises(NotAssigned, match="reviewed by ana and ben"):
        accept_stage(store, double, Stage.INTAKE_FORM, reviewer="cleo")
    with pytest.raises(NotAssigned):
        reject_record(store, double, reviewer="cleo")
    assert decisions_of(store, double) == []
    # Cleo still reads it, blind like anyone: nothing decided shows.
    accept_stage(store, double, Stage.INTAKE_FORM, reviewer=ANA)
    cleo = load_item(store, double, reviewer="cleo").record
    assert cleo.stages[Stage.INTAKE_FORM].status is StageStatus.GENERATED


def test_a_reviewers_own_technique_leaves_the_shared_stages_alone(
    store: Store, double: int
) -> None:
    change_technique(store, double, "Decatastrophizing", reviewer=ANA, stale_downstream=True)
    assert store.stage(double, Stage.DIALOGUE).status is StageStatus.GENERATED
    ben = load_item(store, double, reviewer=BEN).record
    assert ben.stages[Stage.CBT_TECHNIQUE].text == "Reality Testing"
