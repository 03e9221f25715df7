"""The Training pane (`t`): the dataset, the recipe form, Start / Stop, and the run as it trains.

The run belongs to the app (`StudioApp.training`), not to this screen: leaving the pane keeps it
going, and opening the pane again shows it from its first event. Without a run in progress the
pane shows the newest run of the history (or the one chosen there) from its event log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import (
    Button,
    DataTable,
    Header,
    Input,
    Label,
    ProgressBar,
    RichLog,
    Select,
    Static,
)
from textual.worker import get_current_worker

from studio.evaluate.report import run_summaries
from studio.store import RecordView, Store
from studio.store.runs import RunRow, RunStatus
from studio.train.dataset import FitReport
from studio.train.events import (
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
)
from studio.train.launch import accelerate_command, runner_command, shell_line
from studio.train.monitor import RunProgress, event_log_path
from studio.train.recipes import CONTEXTS, RECIPES, RunConfig, field_docs
from studio.tui.evaluating import (
    EvaluationProgress,
    EvaluationProgressed,
    counselor_of_run,
    start_evaluation,
)
from studio.tui.formatting import short_time
from studio.tui.messages import DatasetSummarized, PastRunLoaded, RunHistoryLoaded
from studio.tui.screens.base import StudioScreen
from studio.tui.screens.dialogs import ConfirmScreen
from studio.tui.training import (
    FORM_FIELDS,
    FOUR_BIT,
    DatasetSummary,
    FormInvalid,
    RecipeForm,
    parse_gpus,
    preset_values,
    read_events,
    run_folder_name,
    run_history,
    runner_options,
    summarize_dataset,
)
from studio.tui.widgets.footer import StudioFooter
from studio.tui.widgets.loss_plot import LossPlot

#: Lines the live log keeps; a reattached long run shows its newest events (all are in the file).
LOG_LINES = 1000
#: Seconds between two looks for a run started elsewhere, while the pane is open.
ATTACH_INTERVAL_S = 1.0
#: Seconds of quiet typing before the dataset is summarized again.
SUMMARY_DELAY_S = 0.6
#: What a blank optional field means.
FIELD_PLACEHOLDERS = {
    "max_steps": "(epochs)",
    "max_length": "(auto)",  # from the data: the summary above says the value
    "eval_steps": "(auto)",  # as often as 10 % of the training time allows
}
PRESET_LABELS = {"seed": "seed (the notebook's)", "fast": "fast (packed, bf16)"}
FOUR_BIT_LABELS = {"auto": "auto (with CUDA)", "on": "on", "off": "off"}
RUN_STATUS_COLOR = {
    RunStatus.RUNNING: "primary",
    RunStatus.COMPLETED: "success",
    RunStatus.STOPPED: "warning",
    RunStatus.FAILED: "error",
}
HISTORY_COLUMNS: tuple[tuple[str, int], ...] = (
    ("#", 4),
    ("Status", 10),
    ("Recipe", 6),
    ("Started", 11),
    ("Steps", 6),
    ("Loss", 7),
    ("Eval", 7),
    ("Evaluation", 52),
    ("Examples", 8),
    ("Folder", 24),
)

SummaryKey = tuple[str, str, int | None]


def accepted_records(store: Store) -> list[RecordView]:
    return list(store.accepted_records())


# -- what the pane writes -------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def display_path(path: str) -> str:
    """A path relative to the current folder when it is inside it (shorter on screen)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def format_event(event: TrainEvent) -> Text:
    """One log line (more for a start's notes and an error's traceback)."""
    stamp = Text(f"{event.ts[11:19] or '--:--:--'} ", style="dim")
    if isinstance(event, StartEvent):
        data, config = event.dataset, event.config
        line = Text.assemble(
            stamp,
            (f"start  run {event.run_id} · pid {event.pid}", "bold"),
            f" · {config.get('recipe', '?')} recipe · {data.get('train_examples', '?')} train /"
            f" {data.get('validation_examples', '?')} validation examples",
        )
        fit = data.get("fit")
        if isinstance(fit, dict):
            line.append(f"\n         {FitReport(**fit).describe()}")
        for note in config.get("notes", []):
            line.append(f"\n         note: {note}", style="dim")
        return line
    if isinstance(event, StepEvent):
        parts = [f"step {event.step}/{event.max_steps}"]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        if event.lr is not None:
            parts.append(f"lr {event.lr:.2e}")
        if event.epoch is not None:
            parts.append(f"epoch {event.epoch:.2f}")
        if event.tokens_per_s:
            parts.append(f"{event.tokens_per_s:,.0f} tok/s")
        if event.eta_s is not None:
            parts.append(f"ETA {format_duration(event.eta_s)}")
        return Text.assemble(stamp, "  ".join(parts))
    if isinstance(event, EvalEvent):
        loss = "—" if event.eval_loss is None else f"{event.eval_loss:.4f}"
        return Text.assemble(stamp, (f"eval   step {event.step} · eval loss {loss}", "cyan"))
    if isinstance(event, CheckpointEvent):
        where = display_path(event.path)
        return Text.assemble(stamp, f"checkpoint at step {event.step} → {where}")
    if isinstance(event, ErrorEvent):
        line = Text.assemble(stamp, (f"error  {event.message}", "bold red"))
        for traceback_line in event.traceback.splitlines()[-8:]:
            line.append(f"\n         {traceback_line}", style="red")
        return line
    style = {RunStatus.COMPLETED: "bold green", RunStatus.STOPPED: "bold yellow"}.get(
        event.status, "bold red"
    )
    metrics = event.metrics
    details = [
        f"adapter {display_path(event.adapter_path)}" if event.adapter_path else "no adapter saved"
    ]
    for key, label in (("train_loss", "train loss"), ("eval_loss", "eval loss")):
        if isinstance(metrics.get(key), int | float):
            details.append(f"{label} {metrics[key]:.4f}")
    return Text.assemble(stamp, (f"end    {event.status}", style), " · ", " · ".join(details))


def summary_text(summary: DatasetSummary, max_length: int | None) -> Text:
    if summary.records == 0:
        return Text(
            "No accepted records yet. Accept records in the queue (every stage accepted or "
            "edited) to train on them.",
            style="italic",
        )
    text = Text()
    text.append(f"{summary.records:,} accepted records → {summary.examples:,} examples\n", "bold")
    held_out = summary.validation_records
    text.append(
        f"  {summary.train_examples:,} train · {summary.validation_examples:,} validation "
        f"({held_out} record{'s' if held_out != 1 else ''} held out)\n"
    )
    if summary.records_without_examples:
        text.append(
            f"  {summary.records_without_examples} without a counselor turn after the opening"
            " (skipped)\n",
            "yellow",
        )
    lengths = summary.lengths
    if lengths is None:
        text.append("  No examples: no dialogue goes past its opening exchange.", "yellow")
        return text
    if lengths.exact:
        text.append("Tokens per example (the base model's tokenizer)\n")
    else:
        text.append(f"≈ Tokens per example, estimated as characters / 4 ({lengths.note})\n")
    text.append(
        f"  min {lengths.min:,} · median {lengths.median:,.0f} · max {lengths.max:,}",
    )
    if lengths.max_length is not None:
        chosen = "from the data" if max_length is None else "as set"
        text.append(f"\n  max length {lengths.max_length:,} ({chosen})")
    if lengths.fit is not None and (lengths.fit.shortened or lengths.fit.left_out):
        fit = lengths.fit
        text.append(
            f"\n  {fit.shortened:,} shortened from the start ({fit.dropped_turns:,} oldest turns "
            "dropped; the counselor turn stays whole)",
            "yellow",
        )
        if fit.left_out:
            text.append(f"\n  {fit.left_out:,} too long even so: left out", "yellow")
    elif lengths.over_max_length and lengths.max_length is not None:
        text.append(
            f"\n  {lengths.over_max_length} longer than max length {lengths.max_length:,} "
            "(their oldest turns are dropped)",
            "yellow",
        )
    return text


def history_cells(run: RunRow, evaluation: str | None = None) -> tuple[Content | str, ...]:
    status = Content.styled(run.status.value, f"${RUN_STATUS_COLOR[run.status]}")
    metrics = run.metrics

    def loss(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.4f}" if isinstance(value, int | float) else "—"

    steps = metrics.get("global_step")
    return (
        str(run.id),
        status,
        str(run.config.get("recipe", "?")),
        short_time(run.started_at)[5:],
        str(steps) if steps is not None else "—",
        loss("train_loss"),
        loss("eval_loss"),
        evaluation or "—",
        f"{run.n_examples:,}",
        Path(run.output_dir).name,
    )


# -- the screen ---------------------------------------------------------------------------------


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

    steps_done: reactive[float] = reactive(0.0)
    """Optimizer steps done by the run on screen (the progress bar is bound to it)."""
    steps_total: reactive[float | None] = reactive(1.0)
    """That run's total steps; 1 while there is none, so that the bar rests empty."""

    def __init__(self) -> None:
        super().__init__()
        self.live = False
        """The view follows the app's run (`StudioApp.training`), not one from the history."""
        self.shown_run_id: int | None = None
        """The history run on screen when not `live`."""
        self.view = RunProgress()
        """The run on screen, folded from the events shown."""
        self.summary: DatasetSummary | None = None
        self.summary_key: SummaryKey | None = None
        """What the summary on screen (or being computed) is for."""
        self.history: list[RunRow] = []
        self.preview_time = datetime.min
        """When the pane opened: names the run folder in the `accelerate launch` command."""
        self.accelerate_line = ""
        """That command for the form as it is (empty while the form has a problem)."""
        self._summary_timer: Timer | None = None
        self._shown_preset = ""
        self.evaluations: dict[int, str] = {}
        """Each evaluated run's summary line, by run id."""
        self.progress_shown: EvaluationProgress | None = None
        """The app's evaluation as last shown under the history."""
        self._fresh_form = True
        """The form starts from the defaults (so the newest run may fill in the base model)."""

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        form = self.studio.training_form or RecipeForm()
        self._fresh_form = self.studio.training_form is None
        self._shown_preset = form.preset
        docs = field_docs()
        yield Header()
        with Horizontal(id="training"):
            with VerticalScroll(id="setup"):
                yield Label("Dataset", classes="section")
                yield Static("Reading the accepted records…", id="dataset")
                yield Label("Recipe", classes="section")
                with Grid(id="recipe"):
                    yield Label("Preset")
                    yield self._select(
                        "preset", [(PRESET_LABELS.get(n, n), n) for n in RECIPES], form.preset
                    )
                    yield Label("Context")
                    yield self._select(
                        "context", [(c, c) for c in CONTEXTS], form.context, docs["context"]
                    )
                    yield Label("Base model")
                    yield self._input(
                        "base-model",
                        form.base_model,
                        docs["base_model"],
                        placeholder="model folder or owner/name",
                        # Focused while empty, then filled from the newest run by a worker: with
                        # select-all on focus, whichever came first decided whether the model
                        # showed selected (typing would replace it). Never selected, either way.
                        select_on_focus=False,
                    )
                    for spec in FORM_FIELDS:
                        yield Label(spec.label)
                        yield self._input(
                            f"field-{spec.name}",
                            form.values.get(spec.name, ""),
                            docs[spec.name],
                            placeholder=FIELD_PLACEHOLDERS.get(spec.name, ""),
                        )
                    yield Label("4-bit")
                    yield self._select(
                        "four-bit",
                        [(FOUR_BIT_LABELS[k], k) for k in FOUR_BIT],
                        form.four_bit,
                        docs["load_in_4bit"],
                    )
                yield Static(id="form-errors")
                with Horizontal(id="buttons"):
                    yield Button("Start", id="start", variant="success", tooltip="F5")
                    yield Button("Stop", id="stop", variant="error", tooltip="shift+F5")
                yield Label("Several GPUs: run this in a terminal", classes="section")
                with Horizontal(id="gpus-row"):
                    yield Label("GPUs")
                    yield self._input("gpus", form.gpus, "Processes for accelerate launch")
                    yield Button("Copy", id="copy-command", compact=True)
                yield Static(id="accelerate")
            with Vertical(id="monitor"):
                yield Static(id="run-status")
                with Horizontal(id="progress-row"):
                    yield ProgressBar(id="progress", show_eta=False).data_bind(
                        progress=TrainingScreen.steps_done, total=TrainingScreen.steps_total
                    )
                    yield Static(id="eta")
                yield LossPlot(id="loss")
                yield RichLog(id="log", wrap=True, max_lines=LOG_LINES)
                yield Label("Runs (enter shows one)", classes="section")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                # The table is wider than the pane: the selected run's evaluation, always seen.
                yield Label("", id="run-evaluation")
                yield Label("", id="eval-progress")
        yield StudioFooter()

    def _input(
        self,
        id: str,
        value: str,
        tooltip: str,
        *,
        placeholder: str = "",
        select_on_focus: bool = True,
    ) -> Input:
        field = Input(
            value, placeholder=placeholder, id=id, compact=True, select_on_focus=select_on_focus
        )
        field.cursor_blink = self.studio.settings.cursor_blink
        field.tooltip = tooltip
        return field

    def _select(
        self, id: str, options: list[tuple[str, str]], value: str, tooltip: str = ""
    ) -> Select[str]:
        select: Select[str] = Select(options, value=value, allow_blank=False, id=id, compact=True)
        if tooltip:
            select.tooltip = tooltip
        return select

    def on_mount(self) -> None:
        self.preview_time = self.studio.now()
        table = self.query_one("#runs", DataTable)
        for label, width in HISTORY_COLUMNS:
            table.add_column(label, width=width)
        self.refresh_form(summarize_at_once=True)
        self.load_history()
        # A run started elsewhere (`studio train` in a terminal) is followed once it shows up.
        self.set_interval(ATTACH_INTERVAL_S, self.look_for_run)
        if self.studio.training is not None:
            self.show_live()
        else:
            self.show_progress()
        self.update_buttons()
        # The focus is decided here alone, from the form as composed (never from what loads
        # later); Textual's own auto-focus is off, so the two never race.
        if not self.query_one("#base-model", Input).value:
            self.query_one("#base-model", Input).focus()
        else:
            self.query_one("#start", Button).focus()

    def look_for_run(self) -> None:
        training = self.studio.training
        if training is None or not training.active:
            self.studio.find_running_training()

    # -- the recipe form ------------------------------------------------------------------------

    def read_form(self) -> RecipeForm:
        def text(id: str) -> str:
            return self.query_one(f"#{id}", Input).value

        def choice(id: str) -> str:
            return str(self.query_one(f"#{id}", Select).value)

        return RecipeForm(
            preset=choice("preset"),
            base_model=text("base-model"),
            context=choice("context"),
            four_bit=choice("four-bit"),
            values={spec.name: text(f"field-{spec.name}") for spec in FORM_FIELDS},
            gpus=text("gpus"),
        )

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        self.refresh_form()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset" and event.value != self._shown_preset:
            self._shown_preset = str(event.value)
            # The recipe's own numbers; the base model, max steps, context and 4-bit stay.
            for name, value in preset_values(self._shown_preset).items():
                if name != "max_steps":
                    self.query_one(f"#field-{name}", Input).value = value
        self.refresh_form()

    def refresh_form(self, *, summarize_at_once: bool = False) -> None:
        """Check the form, keep it for the next visit, and show the multi-GPU command."""
        if not self.is_mounted:
            return
        form = self.read_form()
        self.studio.training_form = form
        problems: list[str] = []
        command = ""
        try:
            output = run_folder_name(self.studio.runs_dir, form.preset, self.preview_time)
            options = runner_options(form, db=self.studio.store_path, output=output)
            gpus = parse_gpus(form.gpus)
        except FormInvalid as exc:
            problems = exc.problems
        except ValueError as exc:
            problems = [str(exc)]
        else:
            command = shell_line(accelerate_command(options, num_processes=gpus))
        errors = self.query_one("#form-errors", Static)
        errors.update("\n".join(f"• {problem}" for problem in problems))
        errors.display = bool(problems)
        self.accelerate_line = command
        self.query_one("#accelerate", Static).update(
            command or "Fix the recipe above to see the command."
        )
        self.summarize_soon(at_once=summarize_at_once)

    @on(Button.Pressed, "#copy-command")
    def copy_command(self) -> None:
        if self.accelerate_line:
            self.app.copy_to_clipboard(self.accelerate_line)
            self.notify("The accelerate launch command is on the clipboard.", title="Training")

    # -- the dataset summary --------------------------------------------------------------------

    def _summary_key(self) -> SummaryKey:
        form = self.studio.training_form or RecipeForm()
        raw = form.values.get("max_length", "").strip()
        max_length = int(raw) if raw.isdigit() and int(raw) > 0 else None
        return (form.base_model.strip(), form.context, max_length)

    def summarize_soon(self, *, at_once: bool = False) -> None:
        """Summarize the dataset again if what it depends on changed (after a typing pause)."""
        key = self._summary_key()
        if key == self.summary_key:
            return
        self.summary_key = key
        if self._summary_timer is not None:
            self._summary_timer.stop()
        form = self.studio.training_form or RecipeForm()
        config = RECIPES.get(form.preset, RECIPES["seed"])
        if at_once:
            self.summarize(key, config)
        else:
            self._summary_timer = self.set_timer(
                SUMMARY_DELAY_S, lambda: self.summarize(key, config)
            )

    @work(
        thread=True,
        group="training-dataset",
        exclusive=True,
        exit_on_error=False,
        description="Summarize the training dataset",
    )
    def summarize(self, key: SummaryKey, config: RunConfig) -> None:
        worker = get_current_worker()
        records = self.studio.lane.submit(accepted_records).result()
        if worker.is_cancelled:
            return
        base_model, context, max_length = key
        summary = summarize_dataset(
            records, base_model=base_model, context=context, max_length=max_length, config=config
        )
        if not worker.is_cancelled:
            self.post_message(DatasetSummarized(key, summary))

    def on_dataset_summarized(self, message: DatasetSummarized) -> None:
        if message.key != self.summary_key:
            return  # the form changed meanwhile; a newer summary is on its way
        self.summary = message.summary
        self.query_one("#dataset", Static).update(summary_text(message.summary, message.key[2]))

    # -- run history ----------------------------------------------------------------------------

    @work(
        group="training-history",
        exclusive=True,
        exit_on_error=False,
        description="Read the run history",
    )
    async def load_history(self) -> None:
        def job(store: Store) -> tuple[list[RunRow], dict[int, str]]:
            return run_history(store), run_summaries(store)

        self.post_message(RunHistoryLoaded(*await self.studio.lane.run(job)))

    def on_run_history_loaded(self, message: RunHistoryLoaded) -> None:
        self.history = message.rows
        self.evaluations = message.evaluations
        table = self.query_one("#runs", DataTable)
        # Keep the cursor on the same run (an evaluation's end reloads the history).
        selected = self.selected_run()
        table.clear()
        for row in message.rows:
            table.add_row(*history_cells(row, message.evaluations.get(row.id)), key=str(row.id))
        if selected is not None and selected.id in (row.id for row in message.rows):
            table.move_cursor(row=table.get_row_index(str(selected.id)))
        self.show_run_evaluation()
        if not message.rows:
            return
        newest = message.rows[0]
        if not self.live and self.shown_run_id is None:
            self.show_past_run(newest)
        base_model = self.query_one("#base-model", Input)
        if self._fresh_form and not base_model.value and newest.config.get("base_model"):
            base_model.value = str(newest.config["base_model"])
            self.refresh_form(summarize_at_once=True)
        self._fresh_form = False

    @on(DataTable.RowHighlighted, "#runs")
    def show_run_evaluation(self) -> None:
        run = self.selected_run()
        line = self.evaluations.get(run.id) if run is not None else None
        self.query_one("#run-evaluation", Label).update(
            "" if run is None else f"Run {run.id}: {line or 'not evaluated yet'}"
        )

    @on(DataTable.RowSelected, "#runs")
    def _run_chosen(self, event: DataTable.RowSelected) -> None:
        run_id = int(str(event.row_key.value))
        training = self.studio.training
        if training is not None and training.progress.run_id == run_id:
            self.show_live()
            return
        if training is not None and training.active:
            self.notify(
                "A run is training: the pane follows it until it ends.",
                title="Training",
                severity="warning",
            )
            return
        for row in self.history:
            if row.id == run_id:
                self.show_past_run(row)

    def show_past_run(self, run: RunRow) -> None:
        self.live = False
        self.shown_run_id = run.id
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
        if self.live or message.run_id != self.shown_run_id:
            return
        self.reset_view(message.events)
        log = self.query_one("#log", RichLog)
        if not message.events:
            log.write(Text(f"Run {message.run_id}: its event log is gone.", style="italic"))
        row = next((run for run in self.history if run.id == message.run_id), None)
        if row is not None and row.status is RunStatus.FAILED and not self.view.finished:
            # Its process vanished without an end event; listing the runs concluded it.
            self.view.status = RunStatus.FAILED
            self.view.error = str(row.metrics.get("error", "its process is gone"))
            log.write(Text(f"failed: {self.view.error}", style="bold red"))
            self.show_progress()

    # -- the run on screen ----------------------------------------------------------------------

    def show_live(self) -> None:
        """Show the app's run from its first event (on opening the pane, Start, or launch)."""
        training = self.studio.training
        if training is None:
            return
        self.live = True
        self.shown_run_id = None
        options = training.options
        command = None
        if options is not None and options.output is not None:  # started here, and launched
            command = Text(f"$ {shell_line(runner_command(options))}", style="dim")
        self.reset_view(training.events, first=command)
        if training.problem:
            self.query_one("#log", RichLog).write(Text(training.problem, style="bold red"))

    def training_changed(self, new_events: Sequence[TrainEvent]) -> None:
        """The app's run moved on (called by the app for each batch of events it read)."""
        if not self.live:
            self.show_live()
        else:
            self.append_view(new_events)
        if any(isinstance(e, StartEvent | EndEvent) for e in new_events):
            self.load_history()
        self.update_buttons()

    def training_ended(self) -> None:
        """The follower is done (end event read or process gone)."""
        training = self.studio.training
        if not self.live:
            self.show_live()
        elif training is not None and training.problem:
            self.query_one("#log", RichLog).write(Text(training.problem, style="bold red"))
        self.show_progress()
        self.update_buttons()
        self.load_history()

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
        view = self.view
        training = self.studio.training if self.live else None
        name = f"Run {view.run_id}" if view.run_id is not None else "The run"
        if training is not None and training.problem and not view.finished:
            return Content.styled(f"✗ {training.problem}", "$error")
        if self.live and training is not None and view.run_id is None and not training.ended:
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
        if not self.live and self.shown_run_id is None:
            return Content("No run yet: fill in the recipe and press Start (F5).")
        return Content(f"{name}: {view.status}")

    def update_buttons(self) -> None:
        training = self.studio.training
        active = training is not None and training.active
        self.query_one("#start", Button).disabled = active
        stop = self.query_one("#stop", Button)
        stop.disabled = training is None or not training.can_stop
        stopping = training is not None and training.active and training.stop_requested
        stop.label = "Stop now" if stopping else "Stop"
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
            options = runner_options(self.read_form(), db=self.studio.store_path)
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
            self.query_one("#log", RichLog).write(
                Text(
                    "Stop requested: the runner finishes this step, saves the adapter and ends.",
                    style="yellow",
                )
            )
            self.show_progress()
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

    def selected_run(self) -> RunRow | None:
        """The run under the history's cursor."""
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        run_id = int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
        return next((row for row in self.history if row.id == run_id), None)

    def action_evaluate_run(self) -> None:
        run = self.selected_run()
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

    def on_evaluation_progressed(self, message: EvaluationProgressed) -> None:
        self.progress_shown = message.progress
        self.query_one("#eval-progress", Label).update(message.progress.describe())
        if not message.progress.running:
            self.load_history()  # its summary, now in the history

    def on_screen_resume(self) -> None:
        # What the app's evaluation said while another screen was on top went to that screen.
        progress = self.studio.evaluation
        if progress is not None and progress is not self.progress_shown:
            self.on_evaluation_progressed(EvaluationProgressed(progress))

    def action_chat(self) -> None:
        run = self.selected_run()
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
        self.summary_key = None
        self.summarize_soon(at_once=True)
        self.load_history()

    def action_back(self) -> None:
        self.dismiss(None)
