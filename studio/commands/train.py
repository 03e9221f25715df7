"""`studio train`: start a training run in its own process and show it (or pass its events on).

The command checks what it can cheaply (accepted records, the base model, the output folder),
then runs `python -m studio.train --events …` and turns the event stream into a progress bar — or,
with `--events`, copies it to stdout. Ctrl-C (or SIGTERM) is passed to the run once: it finishes
the step, saves the adapter and ends as `stopped`; a second Ctrl-C stops it at once.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import click

from studio.commands.common import db_option, handle_errors, open_store
from studio.errors import BadInputError, StudioError
from studio.train.events import (
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
    parse_event,
)
from studio.train.launch import run_options

STDERR_TAIL_LINES = 40


@click.command("train")
@run_options
@db_option
@click.option("--events", is_flag=True, help="Print JSON events (one per line) instead of a bar.")
@handle_errors
def train_command(
    base_model: str,
    db: Path,
    recipe: str,
    output: Path | None,
    max_steps: int | None,
    epochs: float | None,
    load_in_4bit: bool | None,
    context: str | None,
    events: bool,
) -> None:
    """Fine-tune a counselor model (LoRA) on the accepted records.

    Every counselor turn after the opening exchange of an accepted dialogue is one example
    (edited text wins). The run folder is a standard PEFT adapter folder. Every recipe field can
    be set with `python -m studio.train --set FIELD=VALUE` (see its --help); for several GPUs,
    `accelerate launch --multi_gpu --num_processes N -m studio.train …` takes the same options.
    """
    from studio.train.launch import RunnerOptions, runner_command
    from studio.train.preflight import (
        check_accepted_records,
        check_output_dir,
        check_training_installed,
        default_output_dir,
        locate_base_model,
    )

    check_training_installed()
    with open_store(db) as store:
        check_accepted_records(store)
    locate_base_model(base_model)
    output = output or default_output_dir(recipe)
    check_output_dir(output)
    options = RunnerOptions(
        db=db,
        base_model=base_model,
        recipe=recipe,
        output=output,
        max_steps=max_steps,
        epochs=epochs,
        load_in_4bit=load_in_4bit,
        context=context,
        events=True,  # the bar is drawn from the events too
    )
    view: RunView = EventEcho() if events else ProgressView()
    outcome = watch_runner(runner_command(options), view)
    finish(outcome, output)


@dataclass
class RunOutcome:
    exit_code: int
    end: EndEvent | None = None
    """How the run ended, if it got that far."""
    error: ErrorEvent | None = None
    stderr_tail: list[str] = field(default_factory=list)


class RunView:
    """Shows a run's events as they arrive."""

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def line(self, text: str, event: TrainEvent) -> None:
        raise NotImplementedError


class EventEcho(RunView):
    """`--events`: the runner's JSON lines, unchanged, on stdout."""

    def line(self, text: str, event: TrainEvent) -> None:
        click.echo(text)


class ProgressView(RunView):
    """A rich progress bar with loss, tokens/s and ETA; evaluations and checkpoints as log lines."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
        )
        self.task = self.progress.add_task("preparing", total=None, loss="–", speed="", eta="–")

    def __enter__(self) -> RunView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, text: str, event: TrainEvent) -> None:
        log = self.progress.console.print
        if isinstance(event, StartEvent):
            data = event.dataset
            lengths = data.get("token_lengths", {})
            log(
                f"run {event.run_id} → {event.output_dir}\n"
                f"  {data.get('records')} accepted records → {data.get('examples')} examples "
                f"({data.get('train_examples')} train / {data.get('validation_examples')} "
                f"validation); tokens mean {lengths.get('mean')}, max {lengths.get('max')}"
            )
            for note in event.config.get("notes", []):
                log(f"  [dim]{note}[/]")
            self.progress.update(self.task, description="loading the model")
        elif isinstance(event, StepEvent):
            self.progress.update(
                self.task,
                description="training",
                total=event.max_steps,
                completed=event.step,
                loss=f"{event.loss:.4f}" if event.loss is not None else "–",
                speed=f"{event.tokens_per_s:,.0f} tok/s" if event.tokens_per_s else "",
                eta=_duration(event.eta_s),
            )
        elif isinstance(event, EvalEvent) and event.eval_loss is not None:
            log(f"step {event.step}: eval loss {event.eval_loss:.4f}")
        elif isinstance(event, CheckpointEvent):
            log(f"[dim]step {event.step}: checkpoint {event.path}[/]")
        elif isinstance(event, ErrorEvent):
            log(f"[red]{event.message}[/]")
            if event.traceback:
                log(event.traceback, markup=False, highlight=False)


def watch_runner(argv: list[str], view: RunView) -> RunOutcome:
    """Run the training process to its end, showing its events; returns how it ended."""
    # A session of its own: Ctrl-C reaches only this process, which passes it on exactly once
    # per press (the runner reads a second signal as "stop now").
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    outcome = RunOutcome(exit_code=0)
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(proc.stderr, stderr_tail), daemon=True)
    drain.start()
    with _forward_stop_signals(proc), view:
        for raw in proc.stdout:
            text = raw.rstrip("\n")
            event = parse_event(text)
            if event is None:
                continue
            if isinstance(event, EndEvent):
                outcome.end = event
            elif isinstance(event, ErrorEvent):
                outcome.error = event
            view.line(text, event)
        outcome.exit_code = proc.wait()
    drain.join(timeout=5)
    outcome.stderr_tail = list(stderr_tail)
    return outcome


def finish(outcome: RunOutcome, output: Path) -> None:
    """Report how the run ended; bad input exits 2, a failure 1."""
    if outcome.exit_code == BadInputError.exit_code:
        message = outcome.error.message if outcome.error else _last_error_line(outcome)
        raise BadInputError(message)
    end = outcome.end
    if end is None or end.status == "failed":
        detail = outcome.error.message if outcome.error else _last_error_line(outcome)
        raise StudioError(
            f"training failed: {detail} (exit code {outcome.exit_code}; log: {output}/events.jsonl)"
        )
    metrics = end.metrics
    summary = f"{end.status}: step {metrics.get('global_step', 0)}"
    if "train_loss" in metrics:
        summary += f", train loss {metrics['train_loss']:.4f}"
    if "eval_loss" in metrics:
        summary += f", eval loss {metrics['eval_loss']:.4f}"
    if end.adapter_path:
        summary += f"; adapter saved to {end.adapter_path}"
    click.echo(summary, err=True)


@contextmanager
def _forward_stop_signals(proc: subprocess.Popen[str]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drain(stream: IO[str], tail: deque[str]) -> None:
    # Read continuously, so that a chatty library can never fill the pipe and block the run.
    for line in stream:
        tail.append(line.rstrip("\n"))


def _last_error_line(outcome: RunOutcome) -> str:
    for line in reversed(outcome.stderr_tail):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return outcome.stderr_tail[-1] if outcome.stderr_tail else "no output"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
