"""The Training pane's model: the recipe form, the dataset summary, the run history and the
run the app follows.

No textual here, as an import contract checks (the Training pane, `screens/training.py` and
its widgets, is the view over it; `training_text.py` writes what it shows). Launching,
following and stopping a run is `studio.train.control.RunControl`'s job, shared with
`studio train`; `TrainingRun` is the UI thread's record of what the follower reported.
"""

from __future__ import annotations

import math
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from studio.errors import BadInputError
from studio.errors import FormInvalid as FormInvalid  # re-exported: its old home
from studio.store import RecordView, Store
from studio.store.runs import RunRow, RunStatus, list_runs
from studio.train.control import LiveRun, RunControl
from studio.train.dataset import (
    FitReport,
    SftDataset,
    SftExample,
    build_sft_dataset,
    default_max_length,
    ensure_chat_template,
    fit_examples,
    full_token_lengths,
)
from studio.train.events import TrainEvent
from studio.train.launch import RunnerOptions
from studio.train.monitor import EventLogTail, RunProgress
from studio.train.preflight import model_context_length
from studio.train.recipes import CONTEXTS, RECIPES, RunConfig, with_overrides

# -- the recipe form ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """A numeric field of the recipe form, named after the `RunConfig` field it sets."""

    name: str
    label: str
    kind: type[int] | type[float]
    minimum: float
    above_minimum: bool = False
    """True: the value must be greater than `minimum` (not equal to it)."""
    optional: bool = False
    """Blank is allowed (the recipe's value is used)."""


FORM_FIELDS: tuple[FormField, ...] = (
    FormField("max_steps", "Max steps", int, 1, optional=True),
    FormField("num_train_epochs", "Epochs", float, 0, above_minimum=True),
    FormField("learning_rate", "Learning rate", float, 0, above_minimum=True),
    FormField("lora_r", "LoRA r", int, 1),
    FormField("lora_alpha", "LoRA alpha", int, 1),
    FormField("per_device_train_batch_size", "Batch size", int, 1),
    FormField("gradient_accumulation_steps", "Grad accum.", int, 1),
    FormField("max_length", "Max length", int, 1, optional=True),
    FormField("max_eval_examples", "Eval examples", int, 1),
    FormField("eval_steps", "Eval every", int, 1, optional=True),
)
#: The 4-bit choice: auto = 4-bit with CUDA, plain LoRA on the CPU (the runner decides).
FOUR_BIT: Mapping[str, bool | None] = {"auto": None, "on": True, "off": False}
#: Fields that `RunnerOptions` carries as options of their own rather than `--set`.
_OPTION_FIELDS = frozenset({"max_steps", "num_train_epochs"})


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def preset_values(preset: str) -> dict[str, str]:
    """The form's numeric fields as the preset sets them (max steps blank: whole epochs)."""
    config = RECIPES[preset]
    values = {
        f.name: "" if getattr(config, f.name) is None else format_value(getattr(config, f.name))
        for f in FORM_FIELDS
    }
    values["max_steps"] = "" if config.max_steps < 1 else str(config.max_steps)
    return values


@dataclass(frozen=True, slots=True)
class RecipeForm:
    """What the recipe form holds, as typed: a half-typed value survives leaving the pane."""

    preset: str = "seed"
    base_model: str = ""
    context: str = "history"
    four_bit: str = "auto"
    values: Mapping[str, str] = field(default_factory=lambda: preset_values("seed"))
    """The numeric fields by `RunConfig` name, as text."""
    gpus: str = "2"
    """The number of GPUs in the `accelerate launch` command the pane shows."""


def runner_options(form: RecipeForm, *, db: Path, output: Path | None = None) -> RunnerOptions:
    """The runner's options for the form, or `FormInvalid` with one message per problem.

    Only what differs from the preset goes on the command line (`--set FIELD=VALUE`), so the
    command says exactly what was changed.
    """
    problems: list[str] = []
    base = RECIPES.get(form.preset)
    if base is None:
        problems.append(f"Preset: {form.preset!r} is not one of {', '.join(RECIPES)}")
        base = RECIPES["seed"]
    base_model = form.base_model.strip()
    if not base_model:
        problems.append("Base model: give a local model folder or a hub id (owner/name)")
    if form.context not in CONTEXTS:
        problems.append(f"Context: choose {' or '.join(CONTEXTS)}")
    if form.four_bit not in FOUR_BIT:
        problems.append(f"4-bit: choose {', '.join(FOUR_BIT)}")
    parsed: dict[str, int | float] = {}
    for spec in FORM_FIELDS:
        raw = form.values.get(spec.name, "").strip()
        if not raw:
            if not spec.optional:
                problems.append(f"{spec.label}: required")
            continue
        try:
            value = parse_number(spec, raw)
        except ValueError as exc:
            problems.append(f"{spec.label}: {exc}")
            continue
        parsed[spec.name] = value
    if problems:
        raise FormInvalid(problems)
    overrides = {
        name: value
        for name, value in parsed.items()
        if name not in _OPTION_FIELDS and value != getattr(base, name)
    }
    try:  # what only the whole config can tell (e.g. a preset's packing with these values)
        with_overrides(base, {**parsed, "base_model": base_model, "context": form.context})
    except BadInputError as exc:
        raise FormInvalid([str(exc)]) from None
    epochs = parsed.get("num_train_epochs")
    max_steps = parsed.get("max_steps")
    return RunnerOptions(
        db=db,
        base_model=base_model,
        recipe=form.preset,
        output=output,
        max_steps=int(max_steps) if max_steps is not None else None,
        epochs=float(epochs) if epochs is not None and epochs != base.num_train_epochs else None,
        load_in_4bit=FOUR_BIT[form.four_bit],
        context=form.context if form.context != base.context else None,
        overrides=tuple(f"{name}={value}" for name, value in overrides.items()),
    )


def parse_number(spec: FormField, raw: str) -> int | float:
    kind = "a whole number" if spec.kind is int else "a number"
    try:
        value: int | float = spec.kind(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not {kind}") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not {kind}")
    if value < spec.minimum or (spec.above_minimum and value == spec.minimum):
        relation = "more than" if spec.above_minimum else "at least"
        raise ValueError(f"must be {relation} {spec.minimum:g}")
    return value


def parse_gpus(raw: str) -> int:
    try:
        count = int(raw.strip())
    except ValueError:
        raise ValueError(f"GPUs: {raw.strip()!r} is not a whole number") from None
    if count < 1:
        raise ValueError("GPUs: must be at least 1")
    return count


# -- the dataset summary ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenLengths:
    """Lengths of the examples (prompt + completion) in tokens, or estimated from characters."""

    min: int
    median: float
    max: int
    over_max_length: int
    exact: bool
    """Counted with the base model's own tokenizer; otherwise characters / 4."""
    note: str = ""
    """Why the lengths are estimated (no local model folder, no tokenizer, …)."""
    max_length: int | None = None
    """The max length a run would use: the one typed, else the one chosen from the data."""
    max_length_note: str = ""
    """How a max length from the data was chosen (empty when one was typed)."""
    fit: FitReport | None = None
    """What fitting to `max_length` does (exact lengths only): examples shortened, turns dropped."""


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """What Start would train on: accepted records → examples, split, and their lengths."""

    records: int
    records_without_examples: int
    train_examples: int
    validation_examples: int
    validation_records: int
    context: str
    lengths: TokenLengths | None
    """None when there are no examples."""

    @property
    def examples(self) -> int:
        return self.train_examples + self.validation_examples


def summarize_dataset(
    records: Sequence[RecordView],
    *,
    base_model: str,
    context: str,
    max_length: int | None,
    config: RunConfig | None = None,
) -> DatasetSummary:
    """Build the dataset as the runner would, and measure it (slow: call it from a thread)."""
    config = config or RECIPES["seed"]
    dataset = build_sft_dataset(
        records,
        context=context if context in CONTEXTS else "history",
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    return DatasetSummary(
        records=dataset.n_records,
        records_without_examples=len(dataset.records_without_examples),
        train_examples=len(dataset.train),
        validation_examples=len(dataset.validation),
        validation_records=len({e.record_id for e in dataset.validation}),
        context=dataset.context,
        lengths=measure(dataset, base_model, max_length) if dataset.examples else None,
    )


def measure(dataset: SftDataset, base_model: str, max_length: int | None) -> TokenLengths:
    tokenizer, why_not = load_tokenizer(base_model)
    if tokenizer is not None:
        ensure_chat_template(tokenizer, dataset.examples[0])
        lengths = full_token_lengths(dataset.examples, tokenizer)
        note = ""
        if max_length is None:
            context = model_context_length(Path(base_model.strip()).expanduser())
            max_length, note = default_max_length(lengths, context)
        _, fit = fit_examples(dataset.examples, tokenizer, max_length, lengths=lengths)
        ranked = sorted(lengths)
        return TokenLengths(
            ranked[0],
            float(statistics.median(ranked)),
            ranked[-1],
            sum(1 for n in ranked if n > max_length),
            exact=True,
            max_length=max_length,
            max_length_note=note,
            fit=fit,
        )
    estimates = sorted(estimated_tokens(e) for e in dataset.examples)
    note = ""
    if max_length is None:
        max_length, note = default_max_length(estimates, None)
    over = sum(1 for n in estimates if n > max_length)
    return TokenLengths(
        estimates[0],
        float(statistics.median(estimates)),
        estimates[-1],
        over,
        exact=False,
        note=why_not,
        max_length=max_length,
        max_length_note=note,
    )


def estimated_tokens(example: SftExample) -> int:
    """Characters / 4: roughly what English costs in a Llama tokenizer, chat markup left out."""
    characters = sum(len(m["content"]) for m in example.prompt) + len(example.completion["content"])
    return max(1, round(characters / 4))


def load_tokenizer(base_model: str) -> tuple[Any | None, str]:
    """The base model's tokenizer when it is a local folder; else None and the reason."""
    if not base_model.strip():
        return None, "no base model given"
    folder = Path(base_model.strip()).expanduser()
    if not folder.is_dir():
        return None, "the base model is not a local folder"
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None, "transformers is not installed (pip install -e '.[train]')"
    try:
        return AutoTokenizer.from_pretrained(str(folder)), ""
    except Exception as exc:  # OSError, ValueError, or whatever a broken folder raises
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"cannot load its tokenizer ({first_line})"


# -- run history --------------------------------------------------------------------------------

#: A row of the pane's run history (the messages module names it so).
HistoryRow = RunRow
__all__ = ["HistoryRow", "LiveRun"]


def run_history(store: Store, *, limit: int = 100) -> list[RunRow]:
    """The newest runs first (listing them concludes those whose process is gone: `failed`)."""
    return list_runs(store, limit=limit)


def read_events(log_path: Path) -> list[TrainEvent]:
    """Every event of a run's log (a finished run's, to show it again)."""
    return EventLogTail(log_path).read_new()


# -- starting a run -----------------------------------------------------------------------------


def new_run_folder(runs_dir: Path, recipe: str, now: datetime) -> Path:
    """`<runs_dir>/<UTC time>-<recipe>`, never one that exists."""
    candidate = run_folder_name(runs_dir, recipe, now)
    suffix = 2
    while candidate.exists():
        candidate = candidate.with_name(f"{run_folder_name(runs_dir, recipe, now).name}-{suffix}")
        suffix += 1
    return candidate


def run_folder_name(runs_dir: Path, recipe: str, now: datetime) -> Path:
    return runs_dir / f"{now.strftime('%Y%m%d-%H%M%S')}-{recipe}"


# -- the run the app follows --------------------------------------------------------------------


@dataclass
class TrainingRun:
    """The run the studio follows, as the UI thread sees it (the follower thread polls `control`).

    Started from the Training pane, or found running (started earlier, or by `studio train`).
    """

    token: int
    """Which run this is, for the app: messages about an earlier one are ignored."""
    output_dir: Path | None = None
    """The run folder (None until the launch has chosen it)."""
    options: RunnerOptions | None = None
    control: RunControl | None = None
    """The run control (None until launched); `stop()` goes through it."""
    events: list[TrainEvent] = field(default_factory=list)
    progress: RunProgress = field(default_factory=RunProgress)
    ended: bool = False
    """The follower is done: the end event was read, or the process is gone."""
    exit_code: int | None = None
    problem: str = ""
    """Why the run ended without an end event (bad input, a crash, a kill)."""
    stop_requested: bool = False

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.control.process if self.control is not None else None

    @property
    def active(self) -> bool:
        """Starting or training: neither an end event nor a vanished process yet."""
        return not self.ended and not self.progress.finished

    @property
    def can_stop(self) -> bool:
        return self.active and self.control is not None and self.control.pid is not None

    def absorb(self, events_so_far: Sequence[TrainEvent]) -> list[TrainEvent]:
        """Take the follower's events (all of them so far); returns those not seen before."""
        new = list(events_so_far[len(self.events) :])
        for event in new:
            self.progress.apply(event)
        self.events.extend(new)
        return new

    def finish(self, exit_code: int | None, problem: str) -> None:
        """The follower is done with this run (or failed)."""
        self.ended = True
        self.exit_code = exit_code
        self.problem = problem
        if self.stop_requested and not self.events:
            self.problem = "Stopped before the run started; nothing was written."

    def outcome(self) -> tuple[str, Literal["information", "warning", "error"]]:
        """How the run ended, in a sentence, and how loudly to say it."""
        progress = self.progress
        name = f"Run {progress.run_id}" if progress.run_id is not None else "The training run"
        if self.problem and not progress.finished:
            return self.problem, "error"
        if progress.status is RunStatus.COMPLETED:
            return f"{name} completed: adapter in {progress.adapter_path}", "information"
        if progress.status is RunStatus.STOPPED:
            saved = f"adapter in {progress.adapter_path}" if progress.adapter_path else "no adapter"
            return f"{name} stopped: {saved}", "warning"
        return f"{name} failed: {progress.error or 'see its event log'}", "error"

    def stop(self) -> None:
        """SIGINT through the run control (a second call stops it at once, without saving)."""
        if self.control is not None:
            self.control.stop()
        self.stop_requested = True
