"""Undo: revert a reviewer's newest decision, edit, rating or adjudication.

Undo is built on the `events` table: each undo restores the `before` snapshot of the reviewer's
newest decision that no `undo` event points at yet, and logs an `undo` event of its own, so the
audit log stays append-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from studio.cbt.checks import imported_stage_status
from studio.cbt.techniques import normalize_technique
from studio.errors import UndoConflict
from studio.model import RecordStatus, Stage, StageStatus
from studio.store import decisions
from studio.store.adjudication import revert_adjudication
from studio.store.events import UNDOABLE_ACTIONS, EventAction
from studio.store.judging import RatingChanged, revert_rating
from studio.store.stages import snapshot, write_stage
from studio.store.store import Store


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
