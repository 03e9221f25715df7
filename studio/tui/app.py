"""The review app and its factory. Screens own their keys; the app owns what outlives a screen:
the store lane, regeneration, the reviewer's drafts, where the reviewer was in the queue, and the
training run the Training pane follows."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState, get_current_worker

from studio.errors import StudioError
from studio.model import Stage
from studio.store.drafts import Draft, delete_draft, drafts
from studio.store.queue import QueueFilter
from studio.store.store import Clock
from studio.team.guidelines import guidelines_path, load_guidelines
from studio.train.control import POLL_INTERVAL_S, RunControl, find_live_run
from studio.train.events import TrainEvent
from studio.train.launch import RunnerOptions
from studio.tui.commands import StudioCommands
from studio.tui.evaluating import EvaluationProgress
from studio.tui.messages import (
    DraftDiscarded,
    DraftsFound,
    JudgeFinished,
    RegenerateFinished,
    RunningRunFound,
    TrainingEnded,
    TrainingEvents,
    TrainingLaunched,
)
from studio.tui.regenerate import BackendFactory, Regenerator
from studio.tui.screens.adjudication import AdjudicationScreen
from studio.tui.screens.base import report_worker_failure
from studio.tui.screens.dialogs import ConfirmScreen, DraftsScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.screens.evaluation import EvaluationScreen
from studio.tui.screens.guidelines import GuidelinesScreen
from studio.tui.screens.help import HelpScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from studio.tui.screens.training import TrainingScreen
from studio.tui.settings import ReviewSettings
from studio.tui.startup import freeze_startup_objects
from studio.tui.store_lane import StoreLane, StoreOpener, store_is_read_only
from studio.tui.training import RecipeForm, TrainingRun, new_run_folder

#: The worker group of the first read: if it fails, the database is unusable and the app exits.
DATABASE_GROUP = "database"
#: Worker groups of the training run: a failure there ends the run's follow (and is reported).
TRAINING_GROUPS = frozenset({"training-launch", "training-follow"})
#: How often a thread holding the GIL hands it over (Python's default is 5 ms).

if TYPE_CHECKING:
    from studio.synth import Backend, SynthSettings


class StudioApp(App[None]):
    TITLE = "CBT Studio"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {StudioCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f1,question_mark", "help", "Help", id="app.help", key_display="?", tooltip="All keys"
        ),
        Binding(
            "f2",
            "guidelines",
            "Guidelines",
            id="app.guidelines",
            show=False,
            tooltip="The review guidelines; their version is recorded with every decision",
        ),
        Binding(
            "t",
            "training",
            "Training",
            id="app.training",
            show=False,
            tooltip="Train a counselor model on the accepted records",
        ),
        Binding(
            "v",
            "evaluations",
            "Evaluations",
            id="app.evaluations",
            show=False,
            tooltip="Compare evaluations of trained counselors (studio eval)",
        ),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    def __init__(
        self,
        *,
        store_path: Path,
        settings: ReviewSettings,
        regenerator: Regenerator,
        runs_dir: Path = Path("runs"),
        open_store: StoreOpener | None = None,
    ) -> None:
        super().__init__()
        self.store_path = store_path
        self.settings = settings
        self.runs_dir = runs_dir
        """Where the Training pane puts new run folders (like `studio train`: `runs/`)."""
        self.training: TrainingRun | None = None
        """The run the Training pane follows: started there, or found running at start-up."""
        self.training_form: RecipeForm | None = None
        """The recipe form as last left, so that reopening the pane keeps what was typed."""
        self.evaluation: EvaluationProgress | None = None
        """The last `studio eval` started from the app (one at a time; see `tui.evaluating`)."""
        self._training_tokens = itertools.count(1)
        self._quit_question: ConfirmScreen | None = None
        self.lane = StoreLane(store_path, clock=regenerator.clock, open_store=open_store)
        self.read_only = False
        """The store was opened read-only: every record can be read, nothing decided."""
        self.failure: StudioError | None = None
        """Why the app exited early (an unusable database); the CLI prints it, exit 1."""
        self.regenerator = regenerator
        self.regenerating: set[tuple[int, Stage]] = set()
        """Stages with a regeneration in flight (their keys are hidden meanwhile)."""
        self.judging: set[int] = set()
        """Records with a re-judge in flight."""
        self.last_record_id: int | None = None
        """The record last reviewed: the queue puts its cursor there."""
        self.guidelines = load_guidelines(settings.guidelines or guidelines_path())
        """The review guidelines, read once at start (a missing file stops the app before it
        starts): F2 shows this text, and every decision records this version."""
        if settings.keymap:
            self.set_keymap(dict(settings.keymap))

    @property
    def guideline_version(self) -> str:
        """The version of the guidelines in force, for each decision to record."""
        return self.guidelines.version

    def on_mount(self) -> None:
        self.theme = self.settings.theme
        self.sub_title = f"reviewer: {self.settings.reviewer} · {self.store_path.name}"
        # The first job on the lane opens the database: submitted before the queue's reads, so
        # that an unusable file ends the app with its reason rather than a spinner.
        self.check_database(self.lane.submit(store_is_read_only))
        self.push_screen(QueueScreen())
        # Only where the CLI tuned the process (`studio.tui.startup`).
        self.call_after_refresh(freeze_startup_objects)

    def on_unmount(self) -> None:
        self.regenerator.close()
        self.lane.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.group == DATABASE_GROUP:
            error = event.worker.error
            assert error is not None
            self._fail(database_failure(self.store_path, error))
            return
        if event.state is WorkerState.ERROR and event.worker.group in TRAINING_GROUPS:
            self._training_lost(f"{event.worker.description} failed: {event.worker.error}")
        report_worker_failure(self, event)

    def _fail(self, failure: StudioError) -> None:
        """End the app; the CLI prints `failure` once the terminal is back (exit 1)."""
        if self.failure is None:
            self.failure = failure
            self.exit(return_code=failure.exit_code)

    # -- the database -----------------------------------------------------------------------

    @work(group=DATABASE_GROUP, exit_on_error=False, description="Open the database")
    async def check_database(self, opened: Future[bool]) -> None:
        self.read_only = await asyncio.wrap_future(opened)
        if self.read_only:
            self.sub_title += " · read-only"
            self.notify(
                f"{self.store_path.name} is read-only: every record can be read; decisions, "
                "edits and undo are off.",
                title="Read-only",
                severity="warning",
                timeout=10,
                markup=False,
            )
            self.screen.refresh_bindings()
        else:
            self.find_drafts()  # restoring a draft writes: not on a read-only database
        self.find_running_training()

    def now(self) -> datetime:
        """The app's clock (fixed in tests)."""
        return self.lane.clock()

    def on_app_blur(self, event: events.AppBlur) -> None:
        # The reviewer switched to another window: save the edit in progress now.
        for screen in self.screen_stack:
            if isinstance(screen, EditorScreen):
                screen.autosave()

    # -- screens ----------------------------------------------------------------------------

    def open_record(
        self, record_id: int, queue_filter: QueueFilter, *, resume_draft: Stage | None = None
    ) -> None:
        self.last_record_id = record_id
        self.push_screen(ReviewScreen(record_id, queue_filter, resume_draft=resume_draft))

    def open_stats(self) -> None:
        self.push_screen(StatsScreen())

    def open_adjudication(self) -> None:
        self.push_screen(AdjudicationScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_guidelines(self) -> None:
        if not isinstance(self.screen, GuidelinesScreen):
            self.push_screen(GuidelinesScreen())

    def action_training(self) -> None:
        if not isinstance(self.screen, TrainingScreen):
            self.push_screen(TrainingScreen())

    def action_evaluations(self) -> None:
        if not isinstance(self.screen, EvaluationScreen):
            self.push_screen(EvaluationScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "evaluations":
            return not isinstance(self.screen, EvaluationScreen | HelpScreen)
        if action == "training":
            return not isinstance(self.screen, TrainingScreen | HelpScreen)
        if action == "guidelines":
            return not isinstance(self.screen, GuidelinesScreen)
        return True

    async def action_quit(self) -> None:
        """Quit; with a run training, ask first (it goes on without the studio)."""
        training = self.training
        if training is None or not training.active or self._quit_question is not None:
            self.exit()
            return
        step = training.progress
        where = (
            f"is at step {step.step:,} of {step.max_steps:,}" if step.max_steps else "is starting"
        )

        def answered(yes: bool | None) -> None:
            self._quit_question = None
            if yes:
                self.exit()

        self._quit_question = ConfirmScreen(
            f"A training run {where}. It keeps running after you quit, and the studio follows "
            "it again when you reopen it. Quit now?"
        )
        self.push_screen(self._quit_question, answered)

    # -- drafts from an earlier session -----------------------------------------------------

    @work(group="drafts", exit_on_error=False, description="Look for unsaved drafts")
    async def find_drafts(self) -> None:
        reviewer = self.settings.reviewer
        found = await self.lane.run(lambda store: drafts(store, reviewer))
        if found:
            self.post_message(DraftsFound(found))

    def on_drafts_found(self, message: DraftsFound) -> None:
        def restore(draft: Draft | None) -> None:
            if draft is not None:
                self.open_record(draft.record_id, QueueFilter(), resume_draft=draft.stage)

        self.push_screen(DraftsScreen(message.drafts), restore)

    def on_draft_discarded(self, message: DraftDiscarded) -> None:
        draft = message.draft
        self.lane.submit(
            lambda store: delete_draft(
                store, draft.record_id, draft.stage, reviewer=self.settings.reviewer
            )
        )

    # -- regeneration -----------------------------------------------------------------------

    def regenerate(self, record_id: int, stage: Stage) -> None:
        if not self.regenerator.configured:
            self.notify(
                "No synthesis backend is configured, so r cannot regenerate. "
                "Set one up as for `studio synth` (see `studio synth --help`).",
                title="Regenerate",
                severity="warning",
            )
            return
        if (record_id, stage) in self.regenerating:
            return
        self.regenerating.add((record_id, stage))
        self.run_regeneration(record_id, stage)

    @work(group="regenerate", exit_on_error=False, description="Regenerate a stage")
    async def run_regeneration(self, record_id: int, stage: Stage) -> None:
        view = None
        try:
            future = self.regenerator.submit(record_id, stage, reviewer=self.settings.reviewer)
            # Shielded: the regeneration goes on if the reviewer leaves the record.
            view = await asyncio.shield(asyncio.wrap_future(future))
        finally:
            self.regenerating.discard((record_id, stage))
            finished = RegenerateFinished(record_id, stage, view)
            for screen in self.screen_stack:
                if isinstance(screen, ReviewScreen):
                    screen.post_message(finished)
        self.notify(
            f"Regenerated the {stage.label} of record {record_id}"
            + ("; the later stages are stale" if stage is not Stage.DIALOGUE else ""),
            title="Regenerate",
        )

    def rejudge(self, record_id: int) -> None:
        """Judge one record again in the background (the review screen's `J`)."""
        if not self.regenerator.configured:
            self.notify(
                "No synthesis backend is configured, so J cannot judge. "
                "Set one up as for `studio judge` (see `studio judge --help`).",
                title="Judge",
                severity="warning",
            )
            return
        if record_id in self.judging:
            return
        self.judging.add(record_id)
        self.run_judge(record_id)

    @work(group="judge", exit_on_error=False, description="Judge a dialogue")
    async def run_judge(self, record_id: int) -> None:
        ok = False
        try:
            future = self.regenerator.submit_judge(record_id)
            # Shielded: the judgement goes on if the reviewer leaves the record.
            result = await asyncio.shield(asyncio.wrap_future(future))
            ok = result.status == "scored"
        finally:
            self.judging.discard(record_id)
            finished = JudgeFinished(record_id, ok)
            for screen in self.screen_stack:
                if isinstance(screen, ReviewScreen):
                    screen.post_message(finished)
        self.notify(
            f"Judged the dialogue of record {record_id}"
            if ok
            else f"The judge gave no usable answer for record {record_id} (stored as failed)",
            title="Judge",
            severity="information" if ok else "warning",
        )

    # -- training ---------------------------------------------------------------------------

    def start_training(self, options: RunnerOptions) -> TrainingRun:
        """Start a run with `options` (its folder is chosen here, under `runs_dir`)."""
        training = TrainingRun(token=next(self._training_tokens), options=options)
        self.training = training
        self.launch_training(training.token, options)
        self._training_changed([], reset=True)
        return training

    @work(
        thread=True,
        group="training-launch",
        exit_on_error=False,
        description="Start the training run",
    )
    def launch_training(self, token: int, options: RunnerOptions) -> None:
        output = new_run_folder(self.runs_dir, options.recipe, self.now())
        options = dataclasses.replace(options, output=output)
        control = RunControl.launch(options)
        assert control.process is not None
        self.post_message(TrainingLaunched(token, options, control.process))

    def on_training_launched(self, message: TrainingLaunched) -> None:
        training = self.training
        if training is None or training.token != message.token:
            message.process.terminate()  # superseded before it was followed: never orphan it
            return
        training.options = message.options
        assert message.options.output is not None
        training.output_dir = message.options.output
        training.control = RunControl(message.options.output, process=message.process)
        self._follow(training)
        self._training_changed([], reset=True)

    @work(group="training-attach", exit_on_error=False, description="Look for a training run")
    async def find_running_training(self) -> None:
        """Follow a run in progress (started earlier, or by `studio train`), if there is one."""
        if self.training is not None and self.training.active:
            return
        found = await self.lane.run(find_live_run)
        if found is not None:
            self.post_message(RunningRunFound(found))

    def on_running_run_found(self, message: RunningRunFound) -> None:
        if self.training is not None and self.training.active:
            return
        found = message.run
        if self.training is not None and self.training.progress.run_id == found.run_id:
            return  # the run just followed to its end, its row not yet updated by its runner
        self.training = TrainingRun(
            token=next(self._training_tokens),
            output_dir=found.folder,
            control=RunControl.attach(found.folder),
        )
        self._follow(self.training)
        self._training_changed([], reset=True)

    def _follow(self, training: TrainingRun) -> None:
        assert training.control is not None, "a run is followed once it has a control"
        self.follow_training(training.token, training.control)

    @work(
        thread=True,
        group="training-follow",
        exclusive=True,
        exit_on_error=False,
        description="Follow the training run",
    )
    def follow_training(self, token: int, control: RunControl) -> None:
        worker = get_current_worker()
        for _batch in control.follow(
            interval=POLL_INTERVAL_S, should_stop=lambda: worker.is_cancelled
        ):
            # Every event so far: a newer message replaces one still queued, losing nothing.
            self.post_message(TrainingEvents(token, tuple(control.events)))
        if control.finished:
            conclusion = control.conclude()
            self.post_message(TrainingEnded(token, control.exit_code, conclusion.problem))

    def on_training_events(self, message: TrainingEvents) -> None:
        training = self.training
        if training is None or training.token != message.token:
            return
        new = training.absorb(message.events)
        if new:
            self._training_changed(new)

    def on_training_ended(self, message: TrainingEnded) -> None:
        training = self.training
        if training is None or training.token != message.token:
            return
        training.finish(message.exit_code, message.problem)
        text, severity = training.outcome()
        # Not markup: the runner's words carry brackets (`pip install -e ".[train]"`).
        self.notify(text, title="Training", severity=severity, timeout=10, markup=False)
        self._training_changed([], ended=True)

    def _training_lost(self, problem: str) -> None:
        """A launch or follow worker failed: the run is no longer followed (reported apart)."""
        if self.training is not None and not self.training.ended:
            self.training.finish(None, problem)
            self._training_changed([], ended=True)

    def _training_changed(
        self, new: list[TrainEvent], *, reset: bool = False, ended: bool = False
    ) -> None:
        """Tell an open Training pane (the run goes on without one)."""
        for screen in self.screen_stack:
            if not isinstance(screen, TrainingScreen):
                continue
            if ended:
                screen.training_ended()
            elif reset:
                screen.show_live()
                screen.update_buttons()
            else:
                screen.training_changed(new)


def database_failure(path: Path, error: BaseException) -> StudioError:
    """One sentence for a database the app cannot use."""
    if isinstance(error, StudioError):
        return error
    if isinstance(error, sqlite3.DatabaseError):
        return StudioError(f"{path}: not a usable CBT Studio database ({error})")
    if isinstance(error, OSError):
        return StudioError(f"{path}: cannot open the database ({error})")
    return StudioError(f"{path}: cannot open the database ({type(error).__name__}: {error})")


def make_app(
    store_path: str | Path,
    *,
    reviewer: str,
    backend: Backend | None = None,
    backend_factory: BackendFactory | None = None,
    synth_settings: SynthSettings | None = None,
    clock: Clock | None = None,
    settings: ReviewSettings | None = None,
    runs_dir: str | Path = "runs",
    open_store: StoreOpener | None = None,
) -> StudioApp:
    """Build the review app over a database.

    `backend` is the synthesis backend for `r` (regenerate); `backend_factory` builds one on the
    first `r` instead (the LLM SDKs then load only when needed); with neither, `r` says that no
    backend is configured. `clock` stamps every decision (tests pass a fixed one). `runs_dir`
    holds the run folders of runs started from the Training pane. `open_store` opens the
    database (default: `Store.open(store_path)`, read-only where the file cannot be written); a store whose `read_only` attribute is true puts the
    app in read-only mode (said in the header, decisions off).
    """
    settings = settings or ReviewSettings(reviewer=reviewer)
    if settings.reviewer != reviewer:
        raise ValueError("settings.reviewer and reviewer differ")
    regenerator = Regenerator(
        store_path,
        backend=backend,
        backend_factory=backend_factory,
        settings=synth_settings,
        clock=clock,
    )
    return StudioApp(
        store_path=Path(store_path),
        settings=settings,
        regenerator=regenerator,
        runs_dir=Path(runs_dir),
        open_store=open_store,
    )
