"""The Training pane (`t`): the dataset, the recipe form, Start / Stop, and the run as it trains.

The run belongs to the app (`StudioApp.training`), not to this screen: leaving the pane keeps it
going, and opening the pane again shows it from its first event. Without a run in progress the
pane shows the newest run of the history (or the one chosen there) from its event log.

The screen holds the keys and composes the widgets: they tell it what happened in them by
messages (`RecipeChanged`, `RunHistoryShown`, `RunChosen`), and it tells them what to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Header, Label

from studio.store.runs import RunStatus
from studio.train.events import EndEvent, StartEvent, TrainEvent
from studio.tui.evaluating import EvaluationProgressed, counselor_of_run, start_evaluation
from studio.tui.messages import RecipeChanged, RunChosen, RunHistoryShown
from studio.tui.screens.base import StudioScreen
from studio.tui.screens.dialogs import ConfirmScreen
from studio.tui.training import DatasetSummary, FormInvalid, RecipeForm, runner_options
from studio.tui.widgets.dataset_summary import DatasetSummaryView
from studio.tui.widgets.footer import StudioFooter
from studio.tui.widgets.run_history import RunHistory
from studio.tui.widgets.training_form import TrainingForm
from studio.tui.widgets.training_log import TrainingLog

#: Seconds between two looks for a run started elsewhere, while the pane is open.
ATTACH_INTERVAL_S = 1.0


class TrainingScreen(StudioScreen):
    CSS_PATH = "training.tcss"
    AUTO_FOCUS = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f5", "start", "Start", id="training.start", tooltip="Start a run with this recipe"
        ),
        Binding(
            "shift+f5",
            "stop",
            "Stop",
            id="training.stop",
            tooltip="Stop the run after its current step; the adapter is saved",
        ),
        Binding(
            "ctrl+r",
            "reload",
            "Reload",
            id="training.reload",
            tooltip="Recount the dataset and reread the run history",
        ),
        Binding(
            "f6",
            "evaluate_run",
            "Evaluate",
            id="training.evaluate",
            tooltip="Evaluate the selected run in the background (studio eval --run N)",
        ),
        Binding(
            "f7",
            "chat",
            "Chat",
            id="training.chat",
            tooltip="Talk to the selected run's counselor (its adapter)",
        ),
        Binding("escape", "back", "Back", id="training.back", tooltip="Back; a run keeps going"),
    ]

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        studio = self.studio
        yield Header()
        with Horizontal(id="training"):
            with VerticalScroll(id="setup"):
                yield Label("Dataset", classes="section")
                yield DatasetSummaryView(studio.lane, id="dataset")
                yield TrainingForm(
                    studio.training_form or RecipeForm(),
                    fresh=studio.training_form is None,
                    db=studio.store_path,
                    runs_dir=studio.runs_dir,
                    preview_time=studio.now(),
                    cursor_blink=studio.settings.cursor_blink,
                )
            with Vertical(id="monitor"):
                yield TrainingLog()
                yield RunHistory(studio.lane)
        yield StudioFooter()

    @property
    def form(self) -> TrainingForm:
        return self.query_one(TrainingForm)

    @property
    def run_log(self) -> TrainingLog:
        return self.query_one(TrainingLog)

    @property
    def history(self) -> RunHistory:
        return self.query_one(RunHistory)

    @property
    def summary(self) -> DatasetSummary | None:
        """The dataset summary for the form as it is (None until the first one is in)."""
        return self.query_one(DatasetSummaryView).summary

    def on_mount(self) -> None:
        self.history.load()
        # A run started elsewhere (`studio train` in a terminal) is followed once it shows up.
        self.set_interval(ATTACH_INTERVAL_S, self.look_for_run)
        if self.studio.training is not None:
            self.show_live()
        else:
            self.run_log.show_progress()
        self.update_buttons()
        # Textual's own auto-focus is off, so that it never races the form's choice.
        self.form.focus_first()

    def look_for_run(self) -> None:
        training = self.studio.training
        if training is None or not training.active:
            self.studio.find_running_training()

    # -- what the widgets say -------------------------------------------------------------------

    def on_recipe_changed(self, message: RecipeChanged) -> None:
        self.studio.training_form = message.form  # kept for the next visit
        self.query_one(DatasetSummaryView).summarize_soon(message.form, at_once=message.at_once)

    def on_run_history_shown(self, message: RunHistoryShown) -> None:
        if not message.rows:
            return
        newest = message.rows[0]
        if not self.run_log.live and self.run_log.shown_run is None:
            self.run_log.show_past_run(newest)
        self.form.suggest_base_model(str(newest.config.get("base_model") or ""))

    def on_run_chosen(self, message: RunChosen) -> None:
        training = self.studio.training
        if training is not None and training.progress.run_id == message.run.id:
            self.show_live()
        elif training is not None and training.active:
            self.notify(
                "A run is training: the pane follows it until it ends.",
                title="Training",
                severity="warning",
            )
        else:
            self.run_log.show_past_run(message.run)

    def on_evaluation_progressed(self, message: EvaluationProgressed) -> None:
        self.history.show_evaluation(message.progress)

    def on_screen_resume(self) -> None:
        # What the app's evaluation said while another screen was on top went to that screen.
        progress = self.studio.evaluation
        if progress is not None and progress is not self.history.progress_shown:
            self.history.show_evaluation(progress)

    # -- the app's run (the app calls these) ----------------------------------------------------

    def show_live(self) -> None:
        """Show the app's run from its first event (on opening the pane, Start, or launch)."""
        if self.studio.training is not None:
            self.run_log.show_live(self.studio.training)

    def training_changed(self, new_events: Sequence[TrainEvent]) -> None:
        """The app's run moved on (called by the app for each batch of events it read)."""
        if self.studio.training is not None:
            self.run_log.follow(self.studio.training, new_events)
        if any(isinstance(e, StartEvent | EndEvent) for e in new_events):
            self.history.load()
        self.update_buttons()

    def training_ended(self) -> None:
        """The follower is done (end event read or process gone)."""
        if self.studio.training is not None:
            self.run_log.run_ended(self.studio.training)
        self.update_buttons()
        self.history.load()

    def update_buttons(self) -> None:
        training = self.studio.training
        self.form.show_run_state(
            active=training is not None and training.active,
            can_stop=training is not None and training.can_stop,
            stopping=training is not None and training.active and training.stop_requested,
        )
        self.refresh_bindings()

    # -- actions --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        training = self.studio.training
        if action == "start":
            return None if training is not None and training.active else True
        if action == "stop":
            return True if training is not None and training.can_stop else None
        return True

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    def action_start(self) -> None:
        training = self.studio.training
        if training is not None and training.active:
            return
        try:
            options = runner_options(self.form.read_form(), db=self.studio.store_path)
        except FormInvalid as exc:
            self.notify(
                "Fix the recipe first: " + exc.problems[0], title="Training", severity="warning"
            )
            return
        if self.summary is not None and self.summary.examples == 0:
            self.notify(
                "Nothing to train on: accept records with dialogues first.",
                title="Training",
                severity="warning",
            )
            return
        self.studio.start_training(options)

    def action_stop(self) -> None:
        training = self.studio.training
        if training is None or not training.can_stop:
            return
        if not training.stop_requested:
            training.stop()
            self.run_log.write(
                Text(
                    "Stop requested: the runner finishes this step, saves the adapter and ends.",
                    style="yellow",
                )
            )
            self.run_log.show_progress()
            self.update_buttons()
            return

        def answered(yes: bool | None) -> None:
            if yes and training.active:
                training.stop()

        self.app.push_screen(
            ConfirmScreen(
                "The run is already stopping after its current step. "
                "Stop it at once, without saving the adapter?"
            ),
            answered,
        )

    def action_evaluate_run(self) -> None:
        run = self.history.selected_run()
        running = self.studio.evaluation
        if run is None:
            self.notify("No run to evaluate yet", title="Evaluate", severity="warning")
        elif running is not None and running.running:
            self.notify(
                f"Run {running.run_id} is being evaluated: one at a time",
                title="Evaluate",
                severity="warning",
            )
        elif run.status is RunStatus.RUNNING:
            self.notify(
                f"Run {run.id} is still training: evaluate it once it ends",
                title="Evaluate",
                severity="warning",
            )
        else:
            start_evaluation(self.studio, run.id)

    def action_chat(self) -> None:
        run = self.history.selected_run()
        if run is None:
            self.notify("No run to talk to yet", title="Chat", severity="warning")
            return
        self.open_chat(run.id)

    @work(group="training-chat", exclusive=True, exit_on_error=False, description="Open a chat")
    async def open_chat(self, run_id: int) -> None:
        from studio.tui.screens.chat import ChatScreen

        counselor = await self.studio.lane.run(counselor_of_run(run_id))
        self.app.push_screen(ChatScreen(counselor))

    def action_reload(self) -> None:
        self.query_one(DatasetSummaryView).reload(self.studio.training_form or RecipeForm())
        self.history.load()

    def action_back(self) -> None:
        self.dismiss(None)
