"""Reading a run's event log: `EventLogTail` (only what was appended) and `RunProgress` (events
folded into what a view shows).

The runner appends one JSON line per event to `<run folder>/events.jsonl`. `EventLogTail` reads
what was appended since its last read (a half-written last line waits for the next read), so a
viewer that opens mid-run first gets every event so far — the loss plot never drops points —
and then the new ones as they come. `studio.train.control.RunControl` follows runs with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.store.runs import RunRow, RunStatus
from studio.train.events import (
    EVENT_LOG_NAME,
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
    parse_event,
)


class EventLogTail:
    """Incremental reader of one event log; each `read_new` returns only events not seen yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.skipped_lines = 0
        """Lines that were not events (corrupt or from a newer version); they are skipped."""

    def read_new(self) -> list[TrainEvent]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []  # the runner has not created it yet
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # after the last newline: empty, or a line still being written
        events = []
        for line in lines:
            if not line.strip():
                continue
            event = parse_event(line)
            if event is None:
                self.skipped_lines += 1
            else:
                events.append(event)
        return events


@dataclass
class RunProgress:
    """What a view shows about one run, built by folding its events in order."""

    run_id: int | None = None
    pid: int | None = None
    output_dir: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    status: RunStatus | None = None
    """None while starting (no step yet), running, then completed / stopped / failed."""
    step: int = 0
    max_steps: int = 0
    epoch: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss): the loss plot's points."""
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    checkpoints: list[str] = field(default_factory=list)
    adapter_path: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED)

    @property
    def fraction_done(self) -> float:
        return self.step / self.max_steps if self.max_steps else 0.0

    def apply(self, event: TrainEvent) -> None:
        if isinstance(event, StartEvent):
            self.run_id, self.pid, self.output_dir = event.run_id, event.pid, event.output_dir
            self.config, self.dataset = event.config, event.dataset
        elif isinstance(event, StepEvent):
            self.status = RunStatus.RUNNING
            self.step, self.max_steps, self.epoch = event.step, event.max_steps, event.epoch
            self.learning_rate, self.tokens_per_s, self.eta_s = (
                event.lr,
                event.tokens_per_s,
                event.eta_s,
            )
            if event.loss is not None:
                self.losses.append((event.step, event.loss))
        elif isinstance(event, EvalEvent):
            if event.eval_loss is not None:
                self.eval_losses.append((event.step, event.eval_loss))
        elif isinstance(event, CheckpointEvent):
            self.checkpoints.append(event.path)
        elif isinstance(event, ErrorEvent):
            self.error, self.traceback = event.message, event.traceback
        elif isinstance(event, EndEvent):
            self.status, self.adapter_path, self.metrics = (
                event.status,
                event.adapter_path,
                event.metrics,
            )
            self.eta_s = 0.0


def replay(path: Path) -> RunProgress:
    """A run's progress so far, from its log (the first thing a reattaching view does)."""
    progress = RunProgress()
    for event in EventLogTail(path).read_new():
        progress.apply(event)
    return progress


def event_log_path(run: RunRow) -> Path:
    return Path(run.output_dir) / EVENT_LOG_NAME
