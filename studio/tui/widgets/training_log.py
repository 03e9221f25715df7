"""The run on the Training pane: its status line, progress bar, loss plot and event log.

It follows the app's run (`show_live`, then `follow` for each batch of events) or shows one
from the history, read from its event log (`show_past_run`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import ProgressBar, RichLog, Static
from textual.worker import Worker

from studio.store.runs import RunRow, RunStatus
from studio.train.events import EvalEvent, StepEvent, TrainEvent
from studio.train.launch import runner_command, shell_line
from studio.train.monitor import RunProgress, event_log_path
from studio.tui.messages import PastRunLoaded
from studio.tui.screens.base import report_worker_failure
from studio.tui.training import TrainingRun, read_events
from studio.tui.training_text import format_duration, format_event
from studio.tui.widgets.loss_plot import LossPlot

#: Lines the live log keeps; a reattached long run shows its newest events (all are in the file).
LOG_LINES = 1000


class TrainingLog(Vertical):
    """Styled from training.tcss (`#run-status`, `#progress-row`, `#loss`, `#log`)."""

    steps_done: reactive[float] = reactive(0.0)
    """Optimizer steps done by the run on screen (the progress bar is bound to it)."""
    steps_total: reactive[float | None] = reactive(1.0)
    """That run's total steps; 1 while there is none, so that the bar rests empty."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.training: TrainingRun | None = None
        """The app's run while the view follows it (`live`)."""
        self.shown_run: RunRow | None = None
        """The history run on screen when not `live` (its row as it was chosen)."""
        self.view = RunProgress()
        """The run on screen, folded from the events shown."""

    @property
    def live(self) -> bool:
        """The view follows the app's run, not one from the history."""
        return self.training is not None

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        with Horizontal(id="progress-row"):
            yield ProgressBar(id="progress", show_eta=False).data_bind(
                progress=TrainingLog.steps_done, total=TrainingLog.steps_total
            )
            yield Static(id="eta")
        yield LossPlot(id="loss")
        yield RichLog(id="log", wrap=True, max_lines=LOG_LINES)

    def write(self, line: Text) -> None:
        """A line of the pane's own under the run's events (a stop asked for, a problem)."""
        self.query_one("#log", RichLog).write(line)

    # -- the app's run --------------------------------------------------------------------------

    def show_live(self, training: TrainingRun) -> None:
        """Show the app's run from its first event (on opening the pane, Start, or launch)."""
        self.training = training
        self.shown_run = None
        options = training.options
        command = None
        if options is not None and options.output is not None:  # started here, and launched
            command = Text(f"$ {shell_line(runner_command(options))}", style="dim")
        self.reset_view(training.events, first=command)
        if training.problem:
            self.write(Text(training.problem, style="bold red"))

    def follow(self, training: TrainingRun, new_events: Sequence[TrainEvent]) -> None:
        """The app's run moved on by `new_events`."""
        if not self.live:
            self.show_live(training)
        else:
            self.append_view(new_events)

    def run_ended(self, training: TrainingRun) -> None:
        """The app's follower is done (end event read or process gone)."""
        if not self.live:
            self.show_live(training)
        elif training.problem:
            self.write(Text(training.problem, style="bold red"))
        self.show_progress()

    # -- a run of the history -------------------------------------------------------------------

    def show_past_run(self, run: RunRow) -> None:
        self.training = None
        self.shown_run = run
        self.read_past_run(run)

    @work(
        thread=True,
        group="training-past-run",
        exclusive=True,
        exit_on_error=False,
        description="Read a run's event log",
    )
    def read_past_run(self, run: RunRow) -> None:
        self.post_message(PastRunLoaded(run.id, read_events(event_log_path(run))))

    def on_past_run_loaded(self, message: PastRunLoaded) -> None:
        row = self.shown_run
        if self.live or row is None or message.run_id != row.id:
            return
        self.reset_view(message.events)
        if not message.events:
            self.write(Text(f"Run {message.run_id}: its event log is gone.", style="italic"))
        if row.status is RunStatus.FAILED and not self.view.finished:
            # Its process vanished without an end event; listing the runs concluded it.
            self.view.status = RunStatus.FAILED
            self.view.error = str(row.metrics.get("error", "its process is gone"))
            self.write(Text(f"failed: {self.view.error}", style="bold red"))
            self.show_progress()

    # -- the view -------------------------------------------------------------------------------

    def reset_view(self, events: Sequence[TrainEvent], *, first: Text | None = None) -> None:
        """Show another run (or the same from its start): log, plot and progress anew."""
        self.view = RunProgress()
        log = self.query_one("#log", RichLog)
        log.clear()
        if first is not None:
            log.write(first)
        earlier = max(0, len(events) - LOG_LINES)
        if earlier:
            log.write(Text(f"… {earlier:,} earlier events are in events.jsonl", style="dim"))
        for event in events[:earlier]:
            self.view.apply(event)
        for event in events[earlier:]:
            self.view.apply(event)
            log.write(format_event(event))
        self.query_one(LossPlot).reset(self.view.losses, self.view.eval_losses)
        self.show_progress()

    def append_view(self, events: Sequence[TrainEvent]) -> None:
        log = self.query_one("#log", RichLog)
        train: list[tuple[int, float]] = []
        evaluation: list[tuple[int, float]] = []
        for event in events:
            self.view.apply(event)
            log.write(format_event(event))
            if isinstance(event, StepEvent) and event.loss is not None:
                train.append((event.step, event.loss))
            elif isinstance(event, EvalEvent) and event.eval_loss is not None:
                evaluation.append((event.step, event.eval_loss))
        self.query_one(LossPlot).add(train, evaluation)
        self.show_progress()

    def show_progress(self) -> None:
        view = self.view
        self.steps_total = float(view.max_steps) if view.max_steps else 1.0
        self.steps_done = float(min(view.step, view.max_steps) if view.max_steps else 0)
        parts = []
        if view.max_steps:
            parts.append(f"step {view.step:,}/{view.max_steps:,}")
        if view.losses:
            parts.append(f"loss {view.losses[-1][1]:.4f}")
        if view.status == RunStatus.RUNNING and view.eta_s is not None:
            parts.append(f"ETA {format_duration(view.eta_s)}")
        if view.tokens_per_s:
            parts.append(f"{view.tokens_per_s:,.0f} tok/s")
        self.query_one("#eta", Static).update(" · ".join(parts))
        self.query_one("#run-status", Static).update(self.status_line())

    def status_line(self) -> Content:
        view, training = self.view, self.training
        name = f"Run {view.run_id}" if view.run_id is not None else "The run"
        if training is not None and training.problem and not view.finished:
            return Content.styled(f"✗ {training.problem}", "$error")
        if training is not None and view.run_id is None and not training.ended:
            return Content.styled(
                "Starting: the runner checks the data and loads the model…", "$primary"
            )
        if view.status == RunStatus.RUNNING or (training is not None and training.active):
            stopping = (
                " · stopping after this step"
                if training is not None and training.stop_requested
                else ""
            )
            return Content.styled(f"● {name} training{stopping}", "$primary")
        if view.status == RunStatus.COMPLETED:
            return Content.styled(
                f"✓ {name} completed · adapter in {view.adapter_path}", "$success"
            )
        if view.status == RunStatus.STOPPED:
            where = f"adapter in {view.adapter_path}" if view.adapter_path else "no adapter saved"
            return Content.styled(f"■ {name} stopped · {where}", "$warning")
        if view.status == RunStatus.FAILED:
            return Content.styled(f"✗ {name} failed: {view.error or 'see its log'}", "$error")
        if not self.live and self.shown_run is None:
            return Content("No run yet: fill in the recipe and press Start (F5).")
        return Content(f"{name}: {view.status}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)
