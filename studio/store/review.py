"""A reviewer's actions on one record: load it, accept, reject, edit, change its technique.

The review app (`studio.tui`) calls these from its store thread; like the rest of the store they
never import textual. Each action returns the record as the reviewer now sees it (`load_item`).
The queue is in `studio.store.queue`, undo in `studio.store.undo`, drafts in
`studio.store.drafts`; per-reviewer decision rows in `studio.store.decisions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.cbt.checks import Judgement, judge_answer
from studio.errors import EditConflict
from studio.errors import InvalidStage as InvalidStage  # re-exported: its old home
from studio.errors import UndoConflict as UndoConflict  # re-exported: its old home
from studio.model import STAGES, Stage, StageStatus
from studio.store import decisions
from studio.store.drafts import Draft, delete_draft, drafts, save_draft
from studio.store.events import EventAction
from studio.store.judging import StoredJudgement, latest_judgement, ratings
from studio.store.records import RecordView
from studio.store.stages import StageView
from studio.store.store import Store
from studio.store.synthesis import mark_downstream_stale


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A record as the review screen shows it: with the reviewer's drafts for its stages."""

    record: RecordView
    drafts: dict[Stage, Draft] = field(default_factory=dict)
    judgement: StoredJudgement | None = None
    """The judge's newest judgement of the dialogue (`current` says whether it read this text)."""
    ratings: dict[str, int] = field(default_factory=dict)
    """This reviewer's own 0-6 ratings of the judged items."""


def load_item(store: Store, record_id: int, *, reviewer: str) -> ReviewItem:
    """The record as `reviewer` may see it: on a record assigned to two or more reviewers, each
    stage shows only their own decision until every assigned reviewer decided it (blind review,
    `decisions.reviewer_record`)."""
    return ReviewItem(
        decisions.reviewer_record(store, store.record(record_id), reviewer),
        {d.stage: d for d in drafts(store, reviewer, record_id)},
        latest_judgement(store, record_id),
        ratings(store, record_id, reviewer),
    )


def accept_stage(
    store: Store, record_id: int, stage: Stage, *, reviewer: str, guideline: str = ""
) -> ReviewItem:
    """Accept one stage; an `invalid` stage is refused (`InvalidStage` says why): it is edited
    into shape or regenerated first, so it never reaches an accepted record or the training set.
    `guideline`: the version of the review guidelines in force (stored with the decision)."""
    with store.transaction():
        view = _own_stage(store, record_id, stage, reviewer)
        if view.status is StageStatus.INVALID:
            raise InvalidStage(
                f"the {stage.label} of record {record_id} is invalid and cannot be accepted"
                f" ({view.error or 'it breaks its stage rule'}); edit or regenerate it first"
            )
        store.decide_stage(
            record_id, stage, StageStatus.ACCEPTED, reviewer=reviewer, guideline=guideline
        )
    return load_item(store, record_id, reviewer=reviewer)


def _own_stage(store: Store, record_id: int, stage: Stage, reviewer: str) -> StageView:
    """The stage as `reviewer` sees it (their own decision, on a double-reviewed record)."""
    view = store.stage(record_id, stage)
    if not decisions.is_double_reviewed(store, record_id):
        return view
    return decisions.own_stage(view, decisions.decision(store, record_id, stage, reviewer))


def reject_stage(
    store: Store,
    record_id: int,
    stage: Stage,
    *,
    reviewer: str,
    reason: str = "",
    guideline: str = "",
) -> ReviewItem:
    store.decide_stage(
        record_id,
        stage,
        StageStatus.REJECTED,
        reviewer=reviewer,
        note=reason,
        guideline=guideline,
    )
    return load_item(store, record_id, reviewer=reviewer)


def accept_remaining(
    store: Store, record_id: int, *, reviewer: str, guideline: str = ""
) -> tuple[int, ReviewItem]:
    """Accept every stage still awaiting review (`generated`; on a double-reviewed record: not
    yet decided by this reviewer); one event each, undone together."""
    with store.transaction() as conn:
        record = decisions.reviewer_record(store, store.record(record_id), reviewer)
        todo = [s for s in STAGES if record.stages[s].status is StageStatus.GENERATED]
        group = None
        if len(todo) > 1:
            # The group is named by its first event's id: we hold the write lock, so the next
            # event written is ours and gets MAX(id) + 1. Each event is written with its group
            # (the log is append-only: nothing is tagged afterwards).
            group = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
        for stage in todo:
            store.decide_stage(
                record_id,
                stage,
                StageStatus.ACCEPTED,
                reviewer=reviewer,
                accept_group=group,
                guideline=guideline,
            )
    return len(todo), load_item(store, record_id, reviewer=reviewer)


def reject_record(
    store: Store, record_id: int, *, reviewer: str, reason: str = "", guideline: str = ""
) -> ReviewItem:
    store.reject_record(record_id, reviewer=reviewer, reason=reason, guideline=guideline)
    return load_item(store, record_id, reviewer=reviewer)


def save_edit(
    store: Store,
    record_id: int,
    stage: Stage,
    text: str,
    *,
    reviewer: str,
    note: str = "",
    base_text: str | None = None,
    guideline: str = "",
) -> ReviewItem:
    """Save a reviewer's text and drop the draft it came from, in one transaction.

    The text is held to the same rule as an LLM answer (`judge_edit`): it is saved as `edited`
    when it passes, else as `invalid` with the reason (the review app asks before saving such a
    text). With `base_text` (what the reviewer started from): if the stage changed meanwhile,
    nothing is overwritten, the reviewer's text is kept as a draft, and `EditConflict` says why.
    """
    judged = judge_edit(stage, text)
    status = StageStatus.EDITED if judged.ok else StageStatus.INVALID
    try:
        with store.transaction():
            store.edit_stage(
                record_id,
                stage,
                text,
                reviewer=reviewer,
                note=note,
                expected_text=base_text,
                status=status,
                error=judged.error,
                guideline=guideline,
            )
            delete_draft(store, record_id, stage, reviewer=reviewer)
    except EditConflict as exc:
        save_draft(store, record_id, stage, text, reviewer=reviewer, base_text=base_text or "")
        raise EditConflict(
            f"{exc}; your text was not saved over it and is kept as a draft"
        ) from exc
    return load_item(store, record_id, reviewer=reviewer)


def judge_edit(stage: Stage, text: str) -> Judgement:
    """The verdict of the one stage rule on a reviewer's text (the editor shows it as you type)."""
    return judge_answer(stage, text)


def change_technique(
    store: Store,
    record_id: int,
    technique: str,
    *,
    reviewer: str,
    stale_downstream: bool,
    base_text: str | None = None,
    guideline: str = "",
) -> ReviewItem:
    """Save a new technique; the plan and dialogue written for the old one either become `stale`
    (to be regenerated) or are kept as they are. Either answer is an audited event.

    On a double-reviewed record the technique is only this reviewer's decision, so the plan and
    dialogue, which every reviewer shares, are kept (marking them stale would also show the
    others that the technique was changed)."""
    with store.transaction():
        if decisions.is_double_reviewed(store, record_id):
            stale_downstream = False
        item = save_edit(
            store,
            record_id,
            Stage.CBT_TECHNIQUE,
            technique,
            reviewer=reviewer,
            base_text=base_text,
            guideline=guideline,
        )
        if stale_downstream:
            mark_downstream_stale(store, record_id, Stage.CBT_TECHNIQUE, reviewer=reviewer)
        else:
            kept = [
                s.value
                for s in Stage.CBT_TECHNIQUE.downstream()
                if item.record.stages[s].status
                not in (StageStatus.PENDING, StageStatus.STALE, StageStatus.FAILED)
            ]
            store.log_event(
                EventAction.KEEP_DOWNSTREAM,
                reviewer=reviewer,
                record_id=record_id,
                stage=Stage.CBT_TECHNIQUE,
                after={"kept": kept, "technique": item.record.text(Stage.CBT_TECHNIQUE)},
            )
    return load_item(store, record_id, reviewer=reviewer)
