"""The run's event stream: one JSON object per line, `{"event": KIND, ...}`.

A run writes every event to `events.jsonl` in its folder (always) and to stdout (with `--events`).
The log file is the source of truth for anyone watching: the CLI's progress bar, the review app's
Training pane, or a pane reopened later that reattaches to a run still in progress
(`studio.train.monitor`). Readers skip fields they don't know, so new fields never break them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson

from studio.store.runs import EVENT_LOG_NAME, RunStatus

__all__ = ["EVENT_LOG_NAME"]  # re-exported: the log's name belongs to the runs bookkeeping

CONFIG_NAME = "run_config.json"


@dataclass(frozen=True, slots=True)
class StartEvent:
    kind: ClassVar[str] = "start"
    run_id: int | None
    pid: int
    output_dir: str
    config: dict[str, Any]
    dataset: dict[str, Any]
    """Hash, sizes and token-length statistics (`SftDataset.summary` + `token_lengths`)."""
    command: list[str] = field(default_factory=list)
    ts: str = ""


@dataclass(frozen=True, slots=True)
class StepEvent:
    kind: ClassVar[str] = "step"
    step: int
    max_steps: int
    loss: float | None
    lr: float | None
    epoch: float | None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    """Non-padding tokens per second since the previous step event."""
    eta_s: float | None = None
    ts: str = ""


@dataclass(frozen=True, slots=True)
class EvalEvent:
    kind: ClassVar[str] = "eval"
    step: int
    eval_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    ts: str = ""


@dataclass(frozen=True, slots=True)
class CheckpointEvent:
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    ts: str = ""


@dataclass(frozen=True, slots=True)
class EndEvent:
    kind: ClassVar[str] = "end"
    status: RunStatus
    """completed, stopped or failed (the `runs` table's statuses)."""
    adapter_path: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    ts: str = ""


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    kind: ClassVar[str] = "error"
    message: str
    traceback: str = ""
    """The last lines of the traceback (empty for bad input, which has no traceback)."""
    exit_code: int = 1
    ts: str = ""


TrainEvent = StartEvent | StepEvent | EvalEvent | CheckpointEvent | EndEvent | ErrorEvent

EVENT_TYPES: dict[str, type[TrainEvent]] = {
    cls.kind: cls
    for cls in (StartEvent, StepEvent, EvalEvent, CheckpointEvent, EndEvent, ErrorEvent)
}


def event_to_json(event: TrainEvent) -> str:
    data = {"event": event.kind, **dataclasses.asdict(event)}
    # orjson writes NaN/inf as null, which is what a loss that blew up should look like in JSON.
    return orjson.dumps(data).decode()


def parse_event(line: str | bytes) -> TrainEvent | None:
    """One log line as an event; None for a blank line, an unknown kind or a malformed line."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    values = {key: value for key, value in data.items() if key in known}
    try:
        if cls is EndEvent:
            values["status"] = RunStatus(str(values.get("status")))
        return cls(**values)
    except (TypeError, ValueError):  # a required field is missing, or an unknown status
        return None


def finite(value: Any) -> float | None:
    """A float for JSON and SQLite, or None for missing / NaN / infinite values."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class EventWriter:
    """Appends events to the run's log file (flushed per line) and, optionally, to a stream."""

    def __init__(self, log_path: Path, stream: IO[str] | None = None) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = log_path.open("a", encoding="utf-8")
        self._stream = stream

    def emit(self, event: TrainEvent) -> TrainEvent:
        if not event.ts:
            event = dataclasses.replace(event, ts=now_iso())
        line = event_to_json(event) + "\n"
        self._file.write(line)
        self._file.flush()
        if self._stream is not None:
            self._stream.write(line)
            self._stream.flush()
        return event

    def close(self) -> None:
        self._file.close()
