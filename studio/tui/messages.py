"""The app's messages, in one place. Workers end by posting one of these (to their own node:
`bubble=False`); a widget tells its screen what happened in it by one that bubbles.

Each is a dataclass, so a test can assert on exactly what was posted
(`app.run_test(message_hook=...)`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from textual.message import Message

from studio.judge.agreement import AgreementReport
from studio.judge.coverage import Spread
from studio.model import RecordStatus, Stage
from studio.store.adjudication import Dispute
from studio.store.drafts import Draft
from studio.store.queue import QueueFilter, QueueRow, ReviewStats
from studio.store.review import ReviewItem
from studio.store.store import StageView
from studio.store.undo import Undone
from studio.team.agreement import TeamAgreement
from studio.train.events import TrainEvent
from studio.train.launch import RunnerOptions
from studio.tui.training import DatasetSummary, HistoryRow, LiveRun, RecipeForm


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
class DisputesLoaded(Message, bubble=False):
    """The records waiting for adjudication, read again (on opening, or after an adjudication or
    an undo: `record_id` is the record to show, `summary` what was done)."""

    disputes: list[Dispute]
    record_id: int | None = None
    summary: str = ""


@dataclass
class RegenerateFinished(Message, bubble=False):
    """A regeneration ended; `view` is None if it failed (the failure is reported separately)."""

    record_id: int
    stage: Stage
    view: StageView | None


@dataclass
class JudgeFinished(Message, bubble=False):
    """A re-judge of one record ended (`ok` False: it failed; the failure is reported apart)."""

    record_id: int
    ok: bool


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
class JudgeStatsLoaded(Message, bubble=False):
    """The Stats screen's judge panels: agreement with clinicians, and coverage."""

    report: AgreementReport
    coverage: list[Spread]


@dataclass
class TeamAgreementLoaded(Message, bubble=False):
    """The Stats screen's panel of how far reviewers agree with each other."""

    report: TeamAgreement


@dataclass
class DraftDiscarded(Message, bubble=False):
    """The reviewer chose to throw an unsaved draft away."""

    draft: Draft


# -- training ---------------------------------------------------------------------------------


@dataclass
class DatasetSummarized(Message, bubble=False):
    """The Training pane's dataset summary, for the form values in `key`."""

    key: tuple[str, str, int | None]
    """(base model, context, max length): what the summary was computed for."""
    summary: DatasetSummary

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DatasetSummarized)


@dataclass
class RunHistoryLoaded(Message, bubble=False):
    """The runs table, newest first, with each evaluated run's summary line (by run id)."""

    rows: list[HistoryRow]
    evaluations: dict[int, str] = field(default_factory=dict)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunHistoryLoaded)


@dataclass
class RecipeChanged(Message):
    """The recipe form as it now reads (from `TrainingForm`, up to the Training pane)."""

    form: RecipeForm
    at_once: bool = False
    """Summarize the dataset for it now, not after a pause in the typing."""


@dataclass
class RunHistoryShown(Message):
    """The runs table is filled (from `RunHistory`, up to the pane); newest first."""

    rows: list[HistoryRow]


@dataclass
class RunChosen(Message):
    """Enter on a run of the history (from `RunHistory`, up to the pane): show that run."""

    run: HistoryRow


@dataclass
class PastRunLoaded(Message, bubble=False):
    """The event log of a finished run, to show it in the pane again."""

    run_id: int
    events: list[TrainEvent]


@dataclass
class TrainingLaunched(Message, bubble=False):
    """The runner process of run `token` is started (its run folder is `options.output`)."""

    token: int
    options: RunnerOptions
    process: subprocess.Popen[bytes]


@dataclass
class TrainingEvents(Message, bubble=False):
    """The followed run's events so far."""

    token: int
    events: tuple[TrainEvent, ...]
    """Every event since the start, not only the new ones: a newer message replaces an older one
    still waiting in the queue without losing a point."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainingEvents) and message.token == self.token


@dataclass
class TrainingEnded(Message, bubble=False):
    """The follower is done with run `token`: its end event was read, or its process is gone."""

    token: int
    exit_code: int | None
    problem: str
    """Why it ended without an end event; empty when it has one."""


@dataclass
class RunningRunFound(Message, bubble=False):
    """At start-up: a run is still training (started earlier, from here or a terminal)."""

    run: LiveRun
