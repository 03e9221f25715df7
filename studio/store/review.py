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
from studio.store.stages import snapshot, write_stage
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
    store: Store, flt: QueueFilter, *, after: int = 0, limit: int = 100, offset: int = 0
) -> list[QueueRow]:
    """The next `limit` records of the filter with an id above `after`, in id order; with
    `flt.by_score`, the `limit` records after the first `offset` in score order."""
    register_hash(store)
    where, params, _ = _where(flt)
    if flt.by_score:
        rows = store.conn.execute(
            _QUEUE_SELECT
            + f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
            + (f" WHERE {where}" if where else "")
            + f" ORDER BY {_SCORE_ORDER} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
    else:
        clause = f" AND {where}" if where else ""
        rows = store.conn.execute(
            _QUEUE_SELECT + f" WHERE r.id > ?{clause} ORDER BY r.id LIMIT ?",
            (after, *params, limit),
        ).fetchall()
    return _with_scores(store, [_queue_row(row) for row in rows])


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


def queue_count(store: Store, flt: QueueFilter) -> int:
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    sql = f"SELECT COUNT(*) FROM {source}" + (f" WHERE {where}" if where else "")
    return int(store.conn.execute(sql, params).fetchone()[0])


def neighbor(store: Store, flt: QueueFilter, record_id: int, *, forward: bool) -> int | None:
    """The id of the next (or previous) record after `record_id` in the filter, if any."""
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    if flt.by_score:
        ordered = [
            int(row[0])
            for row in store.conn.execute(
                "SELECT r.id FROM records r JOIN seeds s ON s.id = r.seed_id"
                f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
                + (f" WHERE {where}" if where else "")
                + f" ORDER BY {_SCORE_ORDER}",
                params,
            )
        ]
        if record_id not in ordered:
            return ordered[0] if ordered and forward else None
        at = ordered.index(record_id) + (1 if forward else -1)
        return ordered[at] if 0 <= at < len(ordered) else None
    op, order = (">", "ASC") if forward else ("<", "DESC")
    clause = f" AND {where}" if where else ""
    row = store.conn.execute(
        f"SELECT r.id FROM {source} WHERE r.id {op} ?{clause} ORDER BY r.id {order} LIMIT 1",
        (record_id, *params),
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
    return ReviewItem(
        store.record(record_id),
        {d.stage: d for d in drafts(store, reviewer, record_id)},
        latest_judgement(store, record_id),
        ratings(store, record_id, reviewer),
    )


def accept_stage(store: Store, record_id: int, stage: Stage, *, reviewer: str) -> ReviewItem:
    """Accept one stage; an `invalid` stage is refused (`InvalidStage` says why): it is edited
    into shape or regenerated first, so it never reaches an accepted record or the training set."""
    with store.transaction():
        view = store.stage(record_id, stage)
        if view.status is StageStatus.INVALID:
            raise InvalidStage(
                f"the {stage.label} of record {record_id} is invalid and cannot be accepted"
                f" ({view.error or 'it breaks its stage rule'}); edit or regenerate it first"
            )
        store.decide_stage(record_id, stage, StageStatus.ACCEPTED, reviewer=reviewer)
    return load_item(store, record_id, reviewer=reviewer)


def reject_stage(
    store: Store, record_id: int, stage: Stage, *, reviewer: str, reason: str = ""
) -> ReviewItem:
    store.decide_stage(record_id, stage, StageStatus.REJECTED, reviewer=reviewer, note=reason)
    return load_item(store, record_id, reviewer=reviewer)


def accept_remaining(store: Store, record_id: int, *, reviewer: str) -> tuple[int, ReviewItem]:
    """Accept every stage still awaiting review (`generated`); one event each, undone together."""
    with store.transaction() as conn:
        record = store.record(record_id)
        todo = [s for s in STAGES if record.stages[s].status is StageStatus.GENERATED]
        group = None
        if len(todo) > 1:
            # The group is named by its first event's id: we hold the write lock, so the next
            # event written is ours and gets MAX(id) + 1. Each event is written with its group
            # (the log is append-only: nothing is tagged afterwards).
            group = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
        for stage in todo:
            store.decide_stage(
                record_id, stage, StageStatus.ACCEPTED, reviewer=reviewer, accept_group=group
            )
    return len(todo), load_item(store, record_id, reviewer=reviewer)


def reject_record(store: Store, record_id: int, *, reviewer: str, reason: str = "") -> ReviewItem:
    store.reject_record(record_id, reviewer=reviewer, reason=reason)
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
) -> ReviewItem:
    """Save a new technique; the plan and dialogue written for the old one either become `stale`
    (to be regenerated) or are kept as they are. Either answer is an audited event."""
    with store.transaction():
        item = save_edit(
            store, record_id, Stage.CBT_TECHNIQUE, technique, reviewer=reviewer, base_text=base_text
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
    action = "accept_all" if len(group) > 1 else event.action.value
    return Undone(event.record_id, None if len(group) > 1 else event.stage, action, len(group))


def _revert(store: Store, event: _Event, reviewer: str) -> None:
    conn = store.conn
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
        row = conn.execute(
            "SELECT rejected, note FROM records WHERE id = ?", (event.record_id,)
        ).fetchone()
        if row is None:
            raise UndoConflict(f"record {event.record_id} no longer exists")
        if not row[0] or row[1] != event.after.get("note", ""):
            raise UndoConflict(f"record {event.record_id} changed since it was rejected")
        was_rejected = event.before.get("status") == RecordStatus.REJECTED.value
        note = event.before.get("note", "")
        conn.execute(
            "UPDATE records SET rejected = ?, note = ? WHERE id = ?",
            (int(was_rejected), note, event.record_id),
        )
        store.log_event(
            EventAction.UNDO,
            reviewer=reviewer,
            record_id=event.record_id,
            before={"status": RecordStatus.REJECTED.value, "note": row[1]},
            after=event.before,
            undoes=event.id,
        )
    else:
        current = store.stage(event.record_id, event.stage)
        if snapshot(current) != {
            "status": event.after.get("status"),
            "edited_text": event.after.get("edited_text"),
            "note": event.after.get("note", ""),
        }:
            raise UndoConflict(
                f"the {event.stage.label} of record {event.record_id} changed since"
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
        if event.stage is Stage.CBT_TECHNIQUE:
            conn.execute(
                "UPDATE records SET technique = ? WHERE id = ?",
                (normalize_technique(text) or "", event.record_id),
            )
        if status is StageStatus.INVALID and not error:
            error = imported_stage_status(event.stage, text)[1] or current.error
        write_stage(
            store,
            event.record_id,
            event.stage,
            status=status,
            edited_text=edited,
            note=event.before.get("note", ""),
            error=error,
        )
        store.log_event(
            EventAction.UNDO,
            reviewer=reviewer,
            record_id=event.record_id,
            stage=event.stage,
            before=snapshot(current),
            after=event.before,
            undoes=event.id,
        )
    store.refresh_status(event.record_id, reviewer)


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
