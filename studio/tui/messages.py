"""The app's messages, in one place. Workers end by posting one of these.

Each is a dataclass, so a test can assert on exactly what was posted
(`app.run_test(message_hook=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from studio.model import RecordStatus, Stage
from studio.store.review import (
    Draft,
    QueueFilter,
    QueueRow,
    ReviewItem,
    ReviewStats,
    Undone,
)
from studio.store.store import StageView


@dataclass
class QueuePageLoaded(Message, bubble=False):
    """A page of the queue arrived (the first one of a filter when `reset`)."""

    filter: QueueFilter
    rows: list[QueueRow]
    reset: bool
    complete: bool
    """True when the filter has no records after this page."""


@dataclass
class QueueRowsRefreshed(Message, bubble=False):
    """The current state of rows already on screen (after returning from a review)."""

    rows: list[QueueRow]


@dataclass
class QueueCounted(Message, bubble=False):
    """Counts for the queue header: per status, and how many records the filter matches."""

    filter: QueueFilter
    by_status: dict[RecordStatus, int]
    matching: int

    def can_replace(self, message: Message) -> bool:
        # A burst of refreshes (other writers, quick filter changes) collapses into the newest.
        return isinstance(message, QueueCounted)


@dataclass
class RecordLoaded(Message, bubble=False):
    """The review screen's record (after opening, next/previous, or an undo elsewhere)."""

    item: ReviewItem
    focus: Stage | None = None

    def can_replace(self, message: Message) -> bool:
        # Holding `n` queues many records; only the newest is worth drawing.
        return isinstance(message, RecordLoaded)


@dataclass
class NoMoreRecords(Message, bubble=False):
    """Next / previous found no record in that direction of the queue filter."""

    forward: bool


@dataclass
class DecisionSaved(Message, bubble=False):
    """A decision or edit is in the database; `item` is the record as it is now."""

    item: ReviewItem
    summary: str


@dataclass
class UndoFinished(Message, bubble=False):
    """An undo is in the database (or there was nothing left to undo: `undone` is None)."""

    undone: Undone | None
    item: ReviewItem | None


@dataclass
class RegenerateFinished(Message, bubble=False):
    """A regeneration ended; `view` is None if it failed (the failure is reported separately)."""

    record_id: int
    stage: Stage
    view: StageView | None


@dataclass
class DraftsFound(Message, bubble=False):
    """Unsaved edits from an earlier session (a crash, a kill, or quitting mid-edit)."""

    drafts: list[Draft]


@dataclass
class DraftSaved(Message, bubble=False):
    """An autosave of the edit in progress is in the database."""

    record_id: int
    stage: Stage

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DraftSaved)


@dataclass
class StatsLoaded(Message, bubble=False):
    stats: ReviewStats


@dataclass
class DraftDiscarded(Message, bubble=False):
    """The reviewer chose to throw an unsaved draft away."""

    draft: Draft
