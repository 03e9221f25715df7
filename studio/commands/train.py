"""`studio train`: start a training run in its own process and follow it (bar or JSON events).

The command checks what it can cheaply (accepted records, the base model, the output folder),
then launches `python -m studio.train` through `studio.train.control.RunControl` — the same core
the review app's Training pane uses — and follows the run's event log: a progress bar, or with
`--events` the events as JSON lines on stdout. The runner is its own session with its own log, so
this command can die (`kill -9`, a closed terminal) without harming the run; the Training pane or
another `studio train` can still follow it. Ctrl-C (or SIGTERM) is passed to the run once: it
finishes the step, saves the adapter and ends as `stopped`; a second Ctrl-C stops it at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from studio.commands.common import db_option, handle_errors, open_store
from studio.errors import BadInputError, StudioError
from studio.store.runs import RunStatus
from studio.train.control import RunConclusion, RunControl
from studio.train.dataset import FitReport
from studio.train.events import (
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
    event_to_json,
)
from studio.train.launch import run_options


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
    from studio.train.launch import RunnerOptions
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
    )
    view: RunView = EventEcho() if events else ProgressView()
    control = RunControl.launch(options)
    watch(control, view)
    with open_store(db) as store:
        conclusion = control.conclude(store)  # a runner gone without its end: `failed` now
    finish(conclusion, output)


class RunView:
    """Shows a run's events as they arrive."""

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, event: TrainEvent) -> None:
        raise NotImplementedError


class EventEcho(RunView):
    """`--events`: the runner's JSON lines, unchanged, on stdout."""

    def show(self, event: TrainEvent) -> None:
        click.echo(event_to_json(event))


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

    def show(self, event: TrainEvent) -> None:
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
            fit = data.get("fit")
            if isinstance(fit, dict):
                log(f"  {FitReport(**fit).describe()}")
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


def watch(control: RunControl, view: RunView) -> RunConclusion:
    """Follow the run to its end, showing each event once; returns how it ended."""
    with _forward_stop_signals(control), view:
        for batch in control.follow():
            for event in batch:
                view.show(event)
    return control.conclude()


def finish(conclusion: RunConclusion, output: Path) -> None:
    """Report how the run ended; bad input exits 2, a failure 1."""
    if conclusion.refused:
        raise BadInputError(conclusion.problem.removeprefix("The runner refused to start: "))
    end = conclusion.end
    if end is None and conclusion.status is RunStatus.STOPPED:  # Ctrl-C while it was checking
        click.echo(conclusion.problem, err=True)
        return
    if end is None or end.status is RunStatus.FAILED:
        detail = conclusion.error.message if conclusion.error else conclusion.problem
        raise StudioError(f"training failed: {detail} (run folder: {output})")
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
def _forward_stop_signals(control: RunControl) -> Iterator[None]:
    """Ctrl-C / SIGTERM here become `control.stop()`: once per signal, to the runner only."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        control.stop()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
