"""The review side of the store: the queue, counts, decisions, undo and drafts.

The review app (`studio.tui`) calls these from its store thread; like the rest of the store they
never import textual. The queue is read a page at a time by keyset (`id > last`), so a 100k-record
database opens as fast as a small one. Undo is built on the `events` table: each undo restores the
`before` snapshot of the reviewer's newest decision that no `undo` event points at yet, and logs
an `undo` event of its own, so the audit log stays append-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from studio.cbt.checks import Judgement, imported_stage_status, judge_answer
from studio.cbt.techniques import normalize_technique
from studio.errors import EditConflict
from studio.errors import InvalidStage as InvalidStage  # re-exported: its old home
from studio.errors import UndoConflict as UndoConflict  # re-exported: its old home
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import decisions
from studio.store.adjudication import revert_adjudication
from studio.store.assignments import has_assignments
from studio.store.events import UNDOABLE_ACTIONS, EventAction
from studio.store.judging import (
    RatingChanged,
    StoredJudgement,
    current_scores,
    current_scores_sql,
    latest_judgement,
    ratings,
    register_hash,
    revert_rating,
)
from studio.store.records import RecordView
from studio.store.stages import StageView, snapshot, write_stage
from studio.store.store import Store
from studio.store.synthesis import mark_downstream_stale

_QUEUE_SELECT = (
    "SELECT r.id, r.status, r.technique, s.thought, r.attitude, r.last_reviewer, r.updated_at"
    " FROM records r JOIN seeds s ON s.id = r.seed_id"
)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which records the queue shows; `n` / `p` in the review screen walk the same filter."""

    status: RecordStatus | None = None
    """Only records with this status; None for all."""
    technique: str | None = None
    """Only records with this technique (one of the twelve, or "" for none); None for all."""
    search: str = ""
    """Text in the seed's thought or persona (case-insensitive), or `#id` / a number for a record."""
    flagged: bool = False
    """Only records whose current judgement has a safety flag."""
    by_score: bool = False
    """Lowest judge CTRS mean first (records without a current score last), instead of by id."""

    def describe(self) -> str:
        parts = [self.status.value.replace("_", " ") if self.status else "all statuses"]
        parts.append(
            "all techniques" if self.technique is None else (self.technique or "no technique")
        )
        if self.search.strip():
            parts.append(f"“{self.search.strip()}”")
        if self.flagged:
            parts.append("flagged by the judge")
        if self.by_score:
            parts.append("lowest score first")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queue: a record with the seed's thought."""

    id: int
    status: RecordStatus
    technique: str
    thought: str
    attitude: str
    last_reviewer: str
    updated_at: str
    ctrs_mean: float | None = None
    """The judge's current CTRS mean (None: not judged, or the dialogue changed since)."""
    flagged: bool = False
    """The current judgement has a safety flag."""


@dataclass(frozen=True, slots=True)
class Draft:
    """An unsaved edit of one stage by one reviewer."""

    record_id: int
    stage: Stage
    reviewer: str
    text: str
    base_text: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A record as the review screen shows it: with the reviewer's drafts for its stages."""

    record: RecordView
    drafts: dict[Stage, Draft] = field(default_factory=dict)
    judgement: StoredJudgement | None = None
    """The judge's newest judgement of the dialogue (`current` says whether it read this text)."""
    ratings: dict[str, int] = field(default_factory=dict)
    """This reviewer's own 0-6 ratings of the judged items."""


@dataclass(frozen=True, slots=True)
class Undone:
    """What an undo reverted."""

    record_id: int
    stage: Stage | None
    action: str
    """The action undone: accept, reject, edit, reject_record or accept_all."""
    events: int
    """How many events it reverted (an accept-all reverts one per stage)."""

    def describe(self) -> str:
        what = {
            "accept": "accept",
            "reject": "reject",
            "edit": "edit",
            "reject_record": "record rejection",
            "accept_all": "accept all",
            EventAction.RATE: "rating",
            EventAction.ADJUDICATE: "adjudication",
        }[self.action]
        where = f" of {self.stage.label}" if self.stage else ""
        return f"Undid {what}{where} (record {self.record_id})"


@dataclass(frozen=True, slots=True)
class ReviewerActivity:
    """Decisions one reviewer made, counted from the audit log."""

    reviewer: str
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    records_rejected: int = 0
    undone: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.edited + self.rejected + self.records_rejected


@dataclass(frozen=True, slots=True)
class ReviewStats:
    """What the stats screen shows."""

    records: dict[str, int]
    stages: dict[str, int]
    techniques: dict[str, int]
    reviewers: list[ReviewerActivity]


# -- the queue ----------------------------------------------------------------------------------


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(flt: QueueFilter) -> tuple[str, list[Any], bool]:
    """SQL conditions for a filter, their parameters, and whether they need the seeds table."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.status is not None:
        clauses.append("r.status = ?")
        params.append(flt.status.value)
    if flt.technique is not None:
        clauses.append("r.technique = ?")
        params.append(flt.technique)
    if flt.flagged:
        clauses.append(
            f"r.id IN (SELECT record_id FROM ({current_scores_sql()}) WHERE flagged = 1)"
        )
    text = flt.search.strip()
    if not text:
        return " AND ".join(clauses), params, False
    like = f"%{_escape_like(text)}%"
    search = "s.thought LIKE ? ESCAPE '\\' OR s.persona LIKE ? ESCAPE '\\'"
    params += [like, like]
    number = text.removeprefix("#")
    if number.isdigit():
        search += " OR r.id = ?"
        params.append(int(number))
    clauses.append(f"({search})")
    return " AND ".join(clauses), params, True


def _queue_row(row: Sequence[Any]) -> QueueRow:
    return QueueRow(
        id=row[0],
        status=RecordStatus(row[1]),
        technique=row[2],
        thought=row[3],
        attitude=row[4],
        last_reviewer=row[5],
        updated_at=row[6],
    )


def queue_page(
    store: Store,
    flt: QueueFilter,
    *,
    after: int = 0,
    limit: int = 100,
    offset: int = 0,
    reviewer: str = "",
) -> list[QueueRow]:
    """The next `limit` records of the filter with an id above `after`, in id order; with
    `flt.by_score`, the `limit` records after the first `offset` in score order.

    With a `reviewer` who has records assigned (`studio assign`), theirs come first (in that
    order), then the rest: `after` is then the last id shown, in whichever part it is."""
    register_hash(store)
    where, params, _ = _where(flt)
    mine = bool(reviewer) and has_assignments(store, reviewer)
    if flt.by_score:
        first = [reviewer] if mine else []
        rows = store.conn.execute(
            _QUEUE_SELECT
            + f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
            + (f" WHERE {where}" if where else "")
            + f" ORDER BY {_score_order(mine=mine)} LIMIT ? OFFSET ?",
            (*params, *first, limit, offset),
        ).fetchall()
    elif not mine:
        rows = _id_page(store, "", [], where, params, after=after, limit=limit)
    else:
        rows = []
        in_mine = after == 0 or _is_mine(store, after, reviewer)
        if in_mine:
            rows = _id_page(store, _MINE, [reviewer], where, params, after=after, limit=limit)
        if len(rows) < limit:
            rows += _id_page(
                store,
                f"NOT {_MINE}",
                [reviewer],
                where,
                params,
                after=0 if in_mine else after,
                limit=limit - len(rows),
            )
    return _with_scores(store, [_queue_row(row) for row in rows])


#: A record assigned to the reviewer named by the parameter.
_MINE = "EXISTS (SELECT 1 FROM assignments a WHERE a.record_id = r.id AND a.reviewer = ?)"


def _is_mine(store: Store, record_id: int, reviewer: str) -> bool:
    found = store.conn.execute(
        "SELECT 1 FROM assignments WHERE record_id = ? AND reviewer = ?", (record_id, reviewer)
    ).fetchone()
    return found is not None


def _id_page(
    store: Store,
    part: str,
    part_params: list[Any],
    where: str,
    params: list[Any],
    *,
    after: int,
    limit: int,
) -> list[Any]:
    """One page in id order of the records that match `part` (all when "") and the filter."""
    clause = (f" AND {part}" if part else "") + (f" AND {where}" if where else "")
    return store.conn.execute(
        _QUEUE_SELECT + f" WHERE r.id > ?{clause} ORDER BY r.id LIMIT ?",
        (after, *part_params, *params, limit),
    ).fetchall()


def _score_order(*, mine: bool) -> str:
    return (f"NOT {_MINE}, " if mine else "") + _SCORE_ORDER


#: Lowest CTRS mean first; records without a current judgement after them, by id.
_SCORE_ORDER = "js.ctrs_mean IS NULL, js.ctrs_mean, r.id"


def _with_scores(store: Store, rows: list[QueueRow]) -> list[QueueRow]:
    """The rows with their current judge scores (only these rows' dialogues are hashed)."""
    scores = current_scores(store, [row.id for row in rows])
    return [
        replace(row, ctrs_mean=scores[row.id].ctrs_mean, flagged=scores[row.id].flagged)
        if row.id in scores
        else row
        for row in rows
    ]


def queue_rows(store: Store, ids: Sequence[int]) -> list[QueueRow]:
    """The current state of the given records (to refresh rows already on screen)."""
    found: list[QueueRow] = []
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        found += [
            _queue_row(row)
            for row in store.conn.execute(
                _QUEUE_SELECT + f" WHERE r.id IN ({marks}) ORDER BY r.id", tuple(chunk)
            )
        ]
    return _with_scores(store, found)


def queue_ids(store: Store, flt: QueueFilter) -> list[int]:
    """The ids of every record the filter shows, in id order (e.g. to assign them)."""
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    sql = f"SELECT r.id FROM {source}" + (f" WHERE {where}" if where else "") + " ORDER BY r.id"
    return [int(rid) for (rid,) in store.conn.execute(sql, params)]


def queue_count(store: Store, flt: QueueFilter) -> int:
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    sql = f"SELECT COUNT(*) FROM {source}" + (f" WHERE {where}" if where else "")
    return int(store.conn.execute(sql, params).fetchone()[0])


def neighbor(
    store: Store, flt: QueueFilter, record_id: int, *, forward: bool, reviewer: str = ""
) -> int | None:
    """The id of the next (or previous) record after `record_id` in the filter, if any, in the
    queue's order (`queue_page`: the reviewer's assigned records first)."""
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    mine = bool(reviewer) and has_assignments(store, reviewer)
    if flt.by_score:
        ordered = [
            int(row[0])
            for row in store.conn.execute(
                "SELECT r.id FROM records r JOIN seeds s ON s.id = r.seed_id"
                f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
                + (f" WHERE {where}" if where else "")
                + f" ORDER BY {_score_order(mine=mine)}",
                (*params, *([reviewer] if mine else [])),
            )
        ]
        if record_id not in ordered:
            return ordered[0] if ordered and forward else None
        at = ordered.index(record_id) + (1 if forward else -1)
        return ordered[at] if 0 <= at < len(ordered) else None
    if not mine:
        return _next_id(store, source, "", [], where, params, record_id, forward=forward)
    parts = [(_MINE, [reviewer]), (f"NOT {_MINE}", [reviewer])]
    at = 0 if _is_mine(store, record_id, reviewer) else 1
    part, part_params = parts[at]
    found = _next_id(store, source, part, part_params, where, params, record_id, forward=forward)
    step = 1 if forward else -1
    if found is None and 0 <= at + step < len(parts):
        part, part_params = parts[at + step]
        start = 0 if forward else 2**62
        found = _next_id(store, source, part, part_params, where, params, start, forward=forward)
    return found


def _next_id(
    store: Store,
    source: str,
    part: str,
    part_params: list[Any],
    where: str,
    params: list[Any],
    record_id: int,
    *,
    forward: bool,
) -> int | None:
    op, order = (">", "ASC") if forward else ("<", "DESC")
    clause = (f" AND {part}" if part else "") + (f" AND {where}" if where else "")
    row = store.conn.execute(
        f"SELECT r.id FROM {source} WHERE r.id {op} ?{clause} ORDER BY r.id {order} LIMIT 1",
        (record_id, *part_params, *params),
    ).fetchone()
    return None if row is None else int(row[0])


def status_counts(store: Store) -> dict[RecordStatus, int]:
    found = dict(store.conn.execute("SELECT status, COUNT(*) FROM records GROUP BY status"))
    return {status: int(found.get(status.value, 0)) for status in RecordStatus}


def review_stats(store: Store) -> ReviewStats:
    stats = store.stats()
    return ReviewStats(
        records=stats["records"],
        stages=stats["stages"],
        techniques=store.technique_counts(),
        reviewers=reviewer_activity(store),
    )


def reviewer_activity(store: Store) -> list[ReviewerActivity]:
    """Decisions per reviewer (most active first), from the audit log."""
    columns = {
        EventAction.ACCEPT: "accepted",
        EventAction.EDIT: "edited",
        EventAction.REJECT: "rejected",
        EventAction.REJECT_RECORD: "records_rejected",
        EventAction.UNDO: "undone",
    }
    marks = ",".join("?" * len(columns))
    counts: dict[str, dict[str, int]] = {}
    for reviewer, action, count in store.conn.execute(
        "SELECT reviewer, action, COUNT(*) FROM events"
        f" WHERE reviewer != '' AND action IN ({marks}) GROUP BY reviewer, action",
        tuple(columns),
    ):
        counts.setdefault(reviewer, {})[columns[EventAction(action)]] = int(count)
    activity = [ReviewerActivity(reviewer, **fields) for reviewer, fields in counts.items()]
    return sorted(activity, key=lambda a: (-a.total, a.reviewer))


# -- decisions ----------------------------------------------------------------------------------


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


# -- undo ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    id: int
    action: EventAction
    record_id: int
    stage: Stage | None
    before: dict[str, Any]
    after: dict[str, Any]
    accept_group: int | None


def _undoable(store: Store, reviewer: str, *, accept_group: int | None = None) -> list[_Event]:
    marks = ",".join("?" * len(UNDOABLE_ACTIONS))
    sql = (
        "SELECT e.id, e.action, e.record_id, e.stage, e.before, e.after, e.accept_group"
        f" FROM events e WHERE e.reviewer = ? AND e.action IN ({marks})"
        " AND e.record_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"
    )
    params: list[Any] = [reviewer, *UNDOABLE_ACTIONS]
    if accept_group is None:
        sql += " ORDER BY e.id DESC LIMIT 1"
    else:
        sql += " AND e.accept_group = ? ORDER BY e.id DESC"
        params.append(accept_group)
    return [
        _Event(
            id=row[0],
            action=EventAction(row[1]),
            record_id=row[2],
            stage=Stage(row[3]) if row[3] else None,
            before=orjson.loads(row[4]) if row[4] else {},
            after=orjson.loads(row[5]) if row[5] else {},
            accept_group=row[6],
        )
        for row in store.conn.execute(sql, params)
    ]


def undo_last(store: Store, *, reviewer: str) -> Undone | None:
    """Revert the reviewer's newest decision or edit not undone yet; None if there is none.

    Raises `UndoConflict` (and changes nothing) if what the decision wrote was changed since.
    Nothing in the audit log changes: each reverted event gets an `undo` event that names it.
    """
    with store.transaction():
        found = _undoable(store, reviewer)
        if not found:
            return None
        event = found[0]
        group = [event]
        if event.accept_group is not None:
            group = _undoable(store, reviewer, accept_group=event.accept_group)
        for item in group:
            _revert(store, item, reviewer)
    grouped = len(group) > 1 and event.action is EventAction.ACCEPT
    action = "accept_all" if grouped else event.action.value
    return Undone(event.record_id, None if len(group) > 1 else event.stage, action, len(group))


def _revert(store: Store, event: _Event, reviewer: str) -> None:
    if event.action is EventAction.ADJUDICATE:
        was = revert_adjudication(
            store, event.record_id, event.stage, event.before, event.after, reviewer
        )
        store.log_event(
            EventAction.UNDO,
            reviewer=reviewer,
            record_id=event.record_id,
            stage=event.stage,
            before=was,
            after=event.before,
            undoes=event.id,
        )
        decisions.settle(store, event.record_id, reviewer=reviewer)
        return
    if event.action is EventAction.RATE:
        try:
            revert_rating(store, event.record_id, event.before, event.after, reviewer)
        except RatingChanged as exc:
            raise UndoConflict(str(exc)) from exc
        store.log_event(
            EventAction.UNDO,
            reviewer=reviewer,
            record_id=event.record_id,
            stage=event.stage,
            before=event.after,
            after=event.before,
            undoes=event.id,
        )
        return
    if event.stage is None:
        _revert_record_rejection(store, event, reviewer)
    elif decisions.is_double_reviewed(store, event.record_id):
        own = decisions.decision(store, event.record_id, event.stage, reviewer)
        if own is None or own.snapshot() != _review_fields(event.after):
            raise UndoConflict(
                f"your decision on the {event.stage.label} of record {event.record_id}"
                " changed since"
            )
        _restore_decision(store, event, reviewer)
        store.log_event(
            EventAction.UNDO,
            reviewer=reviewer,
            record_id=event.record_id,
            stage=event.stage,
            before=own.snapshot(),
            after=event.before,
            undoes=event.id,
        )
    else:
        _revert_stage(store, event, event.stage, reviewer)
    store.refresh_status(event.record_id, reviewer)


def _revert_record_rejection(store: Store, event: _Event, reviewer: str) -> None:
    conn = store.conn
    if decisions.is_double_reviewed(store, event.record_id):
        # Only the reviewer's own rejection goes back; `settle` derives the record from it.
        own = decisions.decision(store, event.record_id, None, reviewer)
        if own is None or own.note != event.after.get("note", ""):
            raise UndoConflict(f"your rejection of record {event.record_id} changed since")
        current_note = own.note
    else:
        row = conn.execute(
            "SELECT rejected, note FROM records WHERE id = ?", (event.record_id,)
        ).fetchone()
        if row is None:
            raise UndoConflict(f"record {event.record_id} no longer exists")
        if not row[0] or row[1] != event.after.get("note", ""):
            raise UndoConflict(f"record {event.record_id} changed since it was rejected")
        current_note = row[1]
        was_rejected = event.before.get("status") == RecordStatus.REJECTED.value
        conn.execute(
            "UPDATE records SET rejected = ?, note = ? WHERE id = ?",
            (int(was_rejected), event.before.get("note", ""), event.record_id),
        )
    _restore_decision(store, event, reviewer)
    store.log_event(
        EventAction.UNDO,
        reviewer=reviewer,
        record_id=event.record_id,
        before={"status": RecordStatus.REJECTED.value, "note": current_note},
        after=event.before,
        undoes=event.id,
    )


def _revert_stage(store: Store, event: _Event, stage: Stage, reviewer: str) -> None:
    """Undo a decision on a stage of a record decided by one reviewer: the stage row goes back
    to the event's `before`."""
    conn = store.conn
    current = store.stage(event.record_id, stage)
    if snapshot(current) != _review_fields(event.after):
        raise UndoConflict(
            f"the {stage.label} of record {event.record_id} changed since"
            f" (it is {current.status.value} now)"
        )
    status = StageStatus(event.before["status"])
    edited = event.before.get("edited_text")
    text = edited if edited is not None else (current.original_text or "")
    # The reason belongs to the status restored: an undone invalid edit leaves no reason
    # behind, and a restored invalid stage gets the rule's reason for its text again.
    error = current.error if status is not StageStatus.INVALID else ""
    if status in (StageStatus.ACCEPTED, StageStatus.EDITED, StageStatus.GENERATED):
        error = ""
    if stage is Stage.CBT_TECHNIQUE:
        conn.execute(
            "UPDATE records SET technique = ? WHERE id = ?",
            (normalize_technique(text) or "", event.record_id),
        )
    if status is StageStatus.INVALID and not error:
        error = imported_stage_status(stage, text)[1] or current.error
    write_stage(
        store,
        event.record_id,
        stage,
        status=status,
        edited_text=edited,
        note=event.before.get("note", ""),
        error=error,
    )
    _restore_decision(store, event, reviewer)
    store.log_event(
        EventAction.UNDO,
        reviewer=reviewer,
        record_id=event.record_id,
        stage=stage,
        before=snapshot(current),
        after=event.before,
        undoes=event.id,
    )


def _review_fields(state: dict[str, Any]) -> dict[str, Any]:
    """A decision event's before/after, as `snapshot` of a stage gives it."""
    return {
        "status": state.get("status"),
        "edited_text": state.get("edited_text"),
        "note": state.get("note", ""),
    }


_DECISION_ACTIONS = (EventAction.ACCEPT.value, EventAction.REJECT.value, EventAction.EDIT.value)


def _restore_decision(store: Store, event: _Event, reviewer: str) -> None:
    """The reviewer's decision row as it was before `event`: their previous decision on that
    stage (or record) when the undo restores it, else none."""
    actions = (EventAction.REJECT_RECORD.value,) if event.stage is None else _DECISION_ACTIONS
    marks = ",".join("?" * len(actions))
    row = store.conn.execute(
        "SELECT e.ts, e.after, e.guideline FROM events e"
        f" WHERE e.reviewer = ? AND e.record_id = ? AND e.stage IS ? AND e.action IN ({marks})"
        " AND e.id < ? AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"
        " ORDER BY e.id DESC LIMIT 1",
        (
            reviewer,
            event.record_id,
            event.stage.value if event.stage else None,
            *actions,
            event.id,
        ),
    ).fetchone()
    previous: dict[str, Any] = orjson.loads(row[1]) if row and row[1] else {}
    if event.stage is None:
        restores = bool(previous) and event.before.get("status") == RecordStatus.REJECTED.value
        restores = restores and previous.get("note", "") == event.before.get("note", "")
    else:
        restores = bool(previous) and _review_fields(previous) == _review_fields(event.before)
    if not restores:
        decisions.delete_decision(store, event.record_id, event.stage, reviewer=reviewer)
        return
    decisions.write_decision(
        store,
        decisions.Decision(
            event.record_id,
            event.stage,
            reviewer,
            StageStatus(previous.get("status", StageStatus.REJECTED.value)),
            previous.get("edited_text"),
            previous.get("note", ""),
            guideline=row[2],
            decided_at=row[0],
        ),
    )


# -- drafts -------------------------------------------------------------------------------------


def save_draft(
    store: Store, record_id: int, stage: Stage, text: str, *, reviewer: str, base_text: str = ""
) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO drafts (record_id, stage, reviewer, text, base_text, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, stage, reviewer)"
            # base_text stays what the draft was first written against.
            " DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
            (record_id, stage.value, reviewer, text, base_text, store.now()),
        )


def delete_draft(store: Store, record_id: int, stage: Stage, *, reviewer: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "DELETE FROM drafts WHERE record_id = ? AND stage = ? AND reviewer = ?",
            (record_id, stage.value, reviewer),
        )


def drafts(store: Store, reviewer: str, record_id: int | None = None) -> list[Draft]:
    """The reviewer's unsaved edits, newest first (of one record, or all)."""
    sql = "SELECT record_id, stage, reviewer, text, base_text, updated_at FROM drafts WHERE reviewer = ?"
    params: list[Any] = [reviewer]
    if record_id is not None:
        sql += " AND record_id = ?"
        params.append(record_id)
    return [
        Draft(row[0], Stage(row[1]), row[2], row[3], row[4], row[5])
        for row in store.conn.execute(sql + " ORDER BY updated_at DESC, record_id", params)
    ]
