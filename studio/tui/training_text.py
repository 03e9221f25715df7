"""What the Training pane writes, as rich `Text`: the event log's lines and the dataset summary.

No textual here (an import contract says so): the widgets in `widgets/training_log.py` and
`widgets/dataset_summary.py` show these lines; a test can read them as plain text.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from studio.store.runs import RunStatus
from studio.train.dataset import FitReport
from studio.train.events import (
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
)
from studio.tui.training import DatasetSummary


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
