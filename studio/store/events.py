"""The audit log's vocabulary: what an event's `action` may be.

The log is append-only: an event is written once and never changed. Undo writes an `undo` event
that names the event it reverts (`events.undoes`); the events of one accept-all share
`events.accept_group` (the id of the group's first event), written with each event.
"""

from __future__ import annotations

from enum import StrEnum


class EventAction(StrEnum):
    """`events.action`: stored by value, so the values never change."""

    IMPORT = "import"
    ACCEPT_IMPORT = "accept_import"
    GENERATE = "generate"
    REGENERATE = "regenerate"
    ACCEPT = "accept"
    REJECT = "reject"
    EDIT = "edit"
    REJECT_RECORD = "reject_record"
    RATE = "rate"
    STALE = "stale"
    KEEP_DOWNSTREAM = "keep_downstream"
    UNDO = "undo"
    SEND_BACK = "send_back"
    """An evaluation session that scored badly became a new record to synthesize and review."""
    ADJUDICATE = "adjudicate"
    """An adjudicator settled a stage (or record) double reviewers decided differently."""


UNDOABLE_ACTIONS: tuple[EventAction, ...] = (
    EventAction.ACCEPT,
    EventAction.REJECT,
    EventAction.EDIT,
    EventAction.REJECT_RECORD,
    EventAction.RATE,
    EventAction.ADJUDICATE,
)
"""Event actions a reviewer can undo (regeneration and imports are not decisions)."""
