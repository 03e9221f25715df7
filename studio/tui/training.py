"""The studio's side of a training run: the recipe form, the dataset summary, the runner process
and the follow loop over its event log.

No textual here (the Training pane, `screens/training.py`, is the view over it), so each piece is
testable on its own. The training itself happens in `python -m studio.train`, a process of its
own that outlives the studio; the studio only starts it, watches its `events.jsonl`, and sends it
SIGINT to stop (the runner then saves the adapter and ends `stopped`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from studio.errors import BadInputError
from studio.store import RecordView, Store
from studio.store.runs import RunRow, RunStatus, list_runs
from studio.train.dataset import (
    SftDataset,
    SftExample,
    build_sft_dataset,
    ensure_chat_template,
    token_length_stats,
)
from studio.train.events import EndEvent, StartEvent, TrainEvent
from studio.train.launch import RunnerOptions, runner_command
from studio.train.monitor import (
    EventLogTail,
    RunProgress,
    event_log_path,
    process_alive,
    replay,
    running_runs,
)
from studio.train.recipes import CONTEXTS, RECIPES, RunConfig, with_overrides

#: Seconds between two reads of a followed run's event log.
FOLLOW_INTERVAL_S = 0.25
#: How long the follower waits for a run's process to exit after its end event (to reap it).
REAP_TIMEOUT_S = 15.0
#: The runner's console (stdout + stderr) lands beside its run folder, as `<folder>.console.log`:
#: the run folder itself must be new or empty when the runner starts.
CONSOLE_SUFFIX = ".console.log"

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
    FormField("max_length", "Max length", int, 1),
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
    values = {f.name: format_value(getattr(config, f.name)) for f in FORM_FIELDS}
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


class FormInvalid(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


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
        stats = token_length_stats(dataset.examples, tokenizer, max_length=max_length)
        return TokenLengths(stats.min, stats.median, stats.max, stats.over_max_length, exact=True)
    lengths = sorted(estimated_tokens(e) for e in dataset.examples)
    over = sum(1 for n in lengths if max_length is not None and n > max_length)
    return TokenLengths(
        lengths[0],
        float(statistics.median(lengths)),
        lengths[-1],
        over,
        exact=False,
        note=why_not,
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


@dataclass(frozen=True, slots=True)
class HistoryRow:
    run: RunRow
    process_gone: bool = False
    """The table says `running`, but no process writes its log any more (it was killed)."""


def run_history(store: Store, *, limit: int = 100) -> list[HistoryRow]:
    """The newest runs first; a `running` row is checked against its process."""
    rows = []
    for run in list_runs(store, limit=limit):
        gone = False
        if run.status is RunStatus.RUNNING:
            progress = replay(event_log_path(run))
            gone = progress.finished or not (progress.pid and process_alive(progress.pid))
        rows.append(HistoryRow(run, gone))
    return rows


@dataclass(frozen=True, slots=True)
class LiveRun:
    """A run in progress found through the database and its event log."""

    run_id: int
    log_path: Path
    pid: int


def find_live_run(store: Store) -> LiveRun | None:
    """The newest `running` run whose process is still alive: what a reopened studio follows."""
    for run, log in running_runs(store):
        progress = replay(log)
        if not progress.finished and progress.pid and process_alive(progress.pid):
            return LiveRun(run.id, log, progress.pid)
    return None


def read_events(log_path: Path) -> list[TrainEvent]:
    """Every event of a run's log (a finished run's, to show it again)."""
    return EventLogTail(log_path).read_new()


# -- starting a run -----------------------------------------------------------------------------


def new_run_folder(runs_dir: Path, recipe: str, now: datetime) -> Path:
    """`<runs_dir>/<UTC time>-<recipe>`, never one that exists (its console log neither)."""
    candidate = run_folder_name(runs_dir, recipe, now)
    suffix = 2
    while candidate.exists() or console_log_path(candidate).exists():
        candidate = candidate.with_name(f"{run_folder_name(runs_dir, recipe, now).name}-{suffix}")
        suffix += 1
    return candidate


def run_folder_name(runs_dir: Path, recipe: str, now: datetime) -> Path:
    return runs_dir / f"{now.strftime('%Y%m%d-%H%M%S')}-{recipe}"


def console_log_path(run_folder: Path) -> Path:
    return run_folder.with_name(run_folder.name + CONSOLE_SUFFIX)


def launch_runner(options: RunnerOptions) -> subprocess.Popen[bytes]:
    """Start `python -m studio.train …` as a process of its own.

    Its own session, so a Ctrl-C at the studio's terminal never reaches it and quitting the
    studio leaves it running; stdin closed and its console in a file (never a pipe, which would
    break when the studio exits).
    """
    if options.output is None:
        raise ValueError("the run folder must be chosen before starting (RunnerOptions.output)")
    console = console_log_path(options.output)
    console.parent.mkdir(parents=True, exist_ok=True)
    with console.open("wb") as sink:
        return subprocess.Popen(
            runner_command(options),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# -- following a run ----------------------------------------------------------------------------


@dataclass
class TrainingRun:
    """The run the studio follows (the UI thread's view of it; the follower thread owns the log).

    Started from the Training pane (then `process` is ours), or found running when the studio
    opened (then only the pid from its start event is known).
    """

    token: int
    """Which run this is, for the app: messages about an earlier one are ignored."""
    output_dir: Path | None = None
    """The run folder (None until the launch has chosen it)."""
    options: RunnerOptions | None = None
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    events: list[TrainEvent] = field(default_factory=list)
    progress: RunProgress = field(default_factory=RunProgress)
    ended: bool = False
    """The follower is done: the end event was read, or the process is gone."""
    exit_code: int | None = None
    problem: str = ""
    """Why the run ended without an end event (bad input, a crash, a kill)."""
    stop_requested: bool = False

    @property
    def active(self) -> bool:
        """Starting or training: neither an end event nor a vanished process yet."""
        return not self.ended and not self.progress.finished

    @property
    def can_stop(self) -> bool:
        return self.active and (self.process is not None or self.pid is not None)

    def absorb(self, events_so_far: Sequence[TrainEvent]) -> list[TrainEvent]:
        """Take the follower's events (all of them so far); returns those not seen before."""
        new = list(events_so_far[len(self.events) :])
        for event in new:
            self.progress.apply(event)
            if isinstance(event, StartEvent):
                self.pid = event.pid
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
        if progress.status == RunStatus.COMPLETED:
            return f"{name} completed: adapter in {progress.adapter_path}", "information"
        if progress.status == RunStatus.STOPPED:
            saved = f"adapter in {progress.adapter_path}" if progress.adapter_path else "no adapter"
            return f"{name} stopped: {saved}", "warning"
        return f"{name} failed: {progress.error or 'see its event log'}", "error"

    def stop(self) -> None:
        """SIGINT: the runner finishes its step, saves the adapter and ends `stopped`.

        A second call sends it again, which stops the runner at once, without saving.
        """
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
        elif self.pid is not None and process_alive(self.pid):
            os.kill(self.pid, signal.SIGINT)
        self.stop_requested = True


class RunFollower:
    """Reads a run's event log as it grows, and notices when its process is gone.

    The follower thread's side: `poll()` reads what was appended; `finished` turns true after the
    end event, or once the process has exited (its last lines are read after the exit, so none
    is lost).
    """

    def __init__(
        self, log_path: Path, *, process: subprocess.Popen[bytes] | None, pid: int | None
    ) -> None:
        self.tail = EventLogTail(log_path)
        self.process = process
        self.pid = pid
        self.events: list[TrainEvent] = []
        self.saw_end = False
        self.finished = False
        self.exit_code: int | None = None

    def poll(self) -> bool:
        """Read new events; True if there were any."""
        gone = not self.saw_end and self._process_gone()
        new = self.tail.read_new()
        for event in new:
            if isinstance(event, StartEvent) and self.pid is None:
                self.pid = event.pid
            elif isinstance(event, EndEvent):
                self.saw_end = True
        self.events.extend(new)
        self.finished = self.saw_end or gone
        return bool(new)

    def _process_gone(self) -> bool:
        if self.process is not None:
            self.exit_code = self.process.poll()
            return self.exit_code is not None
        return self.pid is not None and not process_alive(self.pid)

    def reap(self, timeout: float = REAP_TIMEOUT_S) -> None:
        """Wait for our process to exit after its end event (it only closes its files)."""
        if self.process is None or self.exit_code is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.exit_code = self.process.wait(timeout)

    def problem(self, console_log: Path | None) -> str:
        """Why the run ended without an end event; empty when it has one."""
        if self.saw_end:
            return ""
        said = console_error(console_log)
        if self.process is None:
            return (
                "The training process is gone without ending its run (killed?); its row in "
                "the runs table stays 'running'."
            )
        if self.exit_code == 2:
            return f"The runner refused to start: {said or 'bad input'}"
        if self.exit_code == 0 and not self.events:
            return "Stopped before the run started; nothing was written."
        where = f" (see {console_log})" if console_log is not None else ""
        detail = f": {said}" if said else ""
        return f"The runner exited with code {self.exit_code}{detail}{where}"


def console_error(console_log: Path | None, *, lines: int = 40) -> str:
    """The runner's own last word on its console: an `error: …` line, else the last line."""
    if console_log is None:
        return ""
    try:
        text = console_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line.strip() for line in text.splitlines()[-lines:] if line.strip()]
    errors = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
    if errors:
        return errors[-1]
    return tail[-1] if tail else ""
