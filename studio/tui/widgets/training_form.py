"""The recipe form of the Training pane: preset, base model, the numbers, Start / Stop, and the
`accelerate launch` command for several GPUs.

It checks itself as it is typed and posts `RecipeChanged`; the pane keeps the form, summarizes
the dataset for it and starts the run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from studio.train.launch import accelerate_command, shell_line
from studio.train.recipes import CONTEXTS, RECIPES, field_docs
from studio.tui.messages import RecipeChanged
from studio.tui.training import (
    FORM_FIELDS,
    FOUR_BIT,
    FormInvalid,
    RecipeForm,
    parse_gpus,
    preset_values,
    run_folder_name,
    runner_options,
)

#: What a blank optional field means.
FIELD_PLACEHOLDERS = {
    "max_steps": "(epochs)",
    "max_length": "(auto)",  # from the data: the summary above says the value
    "eval_steps": "(auto)",  # as often as 10 % of the training time allows
}
PRESET_LABELS = {"seed": "seed (the notebook's)", "fast": "fast (packed, bf16)"}
FOUR_BIT_LABELS = {"auto": "auto (with CUDA)", "on": "on", "off": "off"}


class TrainingForm(Vertical):
    """Styled from training.tcss (`#recipe`, `#buttons`, `#gpus-row`, …)."""

    def __init__(
        self,
        form: RecipeForm,
        *,
        fresh: bool,
        db: Path,
        runs_dir: Path,
        preview_time: datetime,
        cursor_blink: bool,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.form = form
        """The form as composed (what was typed on the last visit, or the defaults)."""
        self.fresh = fresh
        """The form starts from the defaults (so the newest run may fill in the base model)."""
        self.db = db
        self.runs_dir = runs_dir
        self.preview_time = preview_time
        """When the pane opened: names the run folder in the `accelerate launch` command."""
        self.cursor_blink = cursor_blink
        self.accelerate_line = ""
        """That command for the form as it is (empty while the form has a problem)."""
        self._shown_preset = form.preset

    def compose(self) -> ComposeResult:
        form = self.form
        docs = field_docs()
        yield Label("Recipe", classes="section")
        with Grid(id="recipe"):
            yield Label("Preset")
            yield self._select(
                "preset", [(PRESET_LABELS.get(n, n), n) for n in RECIPES], form.preset
            )
            yield Label("Context")
            yield self._select("context", [(c, c) for c in CONTEXTS], form.context, docs["context"])
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
        field.cursor_blink = self.cursor_blink
        field.tooltip = tooltip
        return field

    def _select(
        self, id: str, options: list[tuple[str, str]], value: str, tooltip: str = ""
    ) -> Select[str]:
        select: Select[str] = Select(options, value=value, allow_blank=False, id=id, compact=True)
        if tooltip:
            select.tooltip = tooltip
        return select

    def focus_first(self) -> None:
        """The base model while it is empty, else Start: decided from the form as composed
        (never from what loads later), so that the two never race."""
        base_model = self.query_one("#base-model", Input)
        if not base_model.value:
            base_model.focus()
        else:
            self.query_one("#start", Button).focus()

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

    def suggest_base_model(self, base_model: str) -> None:
        """The newest run's base model, for a form fresh from the defaults and still empty."""
        field = self.query_one("#base-model", Input)
        if self.fresh and not field.value and base_model:
            field.value = base_model
            self.refresh_form(at_once=True)
        self.fresh = False

    def show_run_state(self, *, active: bool, can_stop: bool, stopping: bool) -> None:
        """Start while no run trains; Stop (then Stop now) while the run can be stopped."""
        self.query_one("#start", Button).disabled = active
        stop = self.query_one("#stop", Button)
        stop.disabled = not can_stop
        stop.label = "Stop now" if stopping else "Stop"

    # The inputs' own Changed events on mounting fill in the errors and the command.
    @on(Input.Changed)
    def _input_changed(self) -> None:
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

    def refresh_form(self, *, at_once: bool = False) -> None:
        """Check the form, show the multi-GPU command, and tell the pane (`RecipeChanged`)."""
        if not self.is_mounted:
            return
        form = self.read_form()
        problems: list[str] = []
        command = ""
        try:
            output = run_folder_name(self.runs_dir, form.preset, self.preview_time)
            options = runner_options(form, db=self.db, output=output)
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
        self.post_message(RecipeChanged(form, at_once=at_once))

    @on(Button.Pressed, "#copy-command")
    def copy_command(self, event: Button.Pressed) -> None:
        event.stop()
        if self.accelerate_line:
            self.app.copy_to_clipboard(self.accelerate_line)
            self.notify("The accelerate launch command is on the clipboard.", title="Training")
