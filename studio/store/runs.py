"""Training-run bookkeeping: the `runs` and `run_metrics` tables (migration 0001).

A run's row is written by the training process itself (`studio.train.runner`), so it is right
whoever started the run — the CLI, the review app or `accelerate launch` — and whoever watches it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from studio.errors import ReadOnlyDatabaseError
from studio.store.records import chunks
from studio.store.store import Store

#: A run folder's event log (one JSON event per line; the first is `start`, with the runner's
#: pid) and the runner's console (stdout + stderr), written by the runner process itself.
EVENT_LOG_NAME = "events.jsonl"
CONSOLE_LOG_NAME = "console.log"
#: Why a `running` row whose process is gone is marked `failed`.
ABANDONED = "the training process ended without a final event"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    """Stopped on request (SIGINT / SIGTERM); the adapter up to that step was saved."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    status: RunStatus
    config: dict[str, Any]
    dataset_hash: str
    n_records: int
    n_examples: int
    reviewers: tuple[str, ...]
    output_dir: str
    metrics: dict[str, Any]
    started_at: str
    ended_at: str | None


@dataclass(frozen=True, slots=True)
class MetricRow:
    run_id: int
    step: int
    kind: str
    """`train` or `eval`."""
    loss: float | None
    lr: float | None
    epoch: float | None
    data: dict[str, Any]
    ts: str


_RUN_COLUMNS = (
    "id, status, config, dataset_hash, n_records, n_examples, reviewers, output_dir, metrics,"
    " started_at, ended_at"
)


def create_run(
    store: Store,
    *,
    config: dict[str, Any],
    dataset_hash: str,
    n_records: int,
    n_examples: int,
    reviewers: Sequence[str],
    output_dir: str,
) -> int:
    """Insert a `running` run and return its id."""
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO runs (status, config, dataset_hash, n_records, n_examples, reviewers,"
            " output_dir, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                RunStatus.RUNNING.value,
                _dumps(config),
                dataset_hash,
                n_records,
                n_examples,
                _dumps(list(reviewers)),
                output_dir,
                store.now(),
            ),
        )
        return int(cur.lastrowid or 0)


def record_metric(
    store: Store,
    run_id: int,
    *,
    step: int,
    kind: str = "train",
    loss: float | None = None,
    lr: float | None = None,
    epoch: float | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Keep one logged step; logging the same (kind, step) again replaces it."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO run_metrics (run_id, step, kind, loss, lr, epoch, data, ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, step, kind, loss, lr, epoch, _dumps(data or {}), store.now()),
        )


def finish_run(
    store: Store, run_id: int, *, status: RunStatus, metrics: dict[str, Any] | None = None
) -> None:
    if status is RunStatus.RUNNING:
        raise ValueError("a finished run is completed, stopped or failed")
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE runs SET status = ?, metrics = ?, ended_at = ? WHERE id = ?",
            (status.value, _dumps(metrics or {}), store.now(), run_id),
        )
        if cur.rowcount == 0:
            raise KeyError(f"no run {run_id}")


def get_run(store: Store, run_id: int) -> RunRow:
    row = store.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id}")
    return _run_from_row(row)


def list_runs(
    store: Store, *, status: RunStatus | None = None, limit: int | None = None
) -> list[RunRow]:
    """Runs, newest first; only those with `status` when given.

    A `running` row whose process is gone is marked `failed` first (`conclude_abandoned_runs`),
    so no listing ever shows a dead run as running.
    """
    conclude_abandoned_runs(store)
    sql = f"SELECT {_RUN_COLUMNS} FROM runs"
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status.value)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_run_from_row(row) for row in store.conn.execute(sql, params)]


def run_metrics(store: Store, run_id: int, *, kind: str | None = None) -> list[MetricRow]:
    """A run's logged steps in step order (train before eval at the same step)."""
    sql = "SELECT run_id, step, kind, loss, lr, epoch, data, ts FROM run_metrics WHERE run_id = ?"
    params: list[Any] = [run_id]
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    sql += " ORDER BY step, kind DESC"
    return [
        MetricRow(
            run_id=row[0],
            step=row[1],
            kind=row[2],
            loss=row[3],
            lr=row[4],
            epoch=row[5],
            data=orjson.loads(row[6]),
            ts=row[7],
        )
        for row in store.conn.execute(sql, params)
    ]


def reviewers_of(store: Store, record_ids: Iterable[int]) -> list[str]:
    """Everyone whose decisions (accepts, edits, imports as accepted) are on these records."""
    ids = list(record_ids)
    found: set[str] = set()
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        found.update(
            reviewer
            for (reviewer,) in store.conn.execute(
                f"SELECT DISTINCT reviewer FROM events WHERE reviewer != ''"
                f" AND record_id IN ({marks})",
                chunk,
            )
        )
    return sorted(found)


def accepted_record_count(store: Store) -> tuple[int, int]:
    """(records, accepted records): what `studio train` says when there is nothing to train on."""
    total, accepted = store.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(status = 'accepted'), 0) FROM records"
    ).fetchone()
    return int(total), int(accepted)


def _run_from_row(row: Sequence[Any]) -> RunRow:
    return RunRow(
        id=row[0],
        status=RunStatus(row[1]),
        config=orjson.loads(row[2]),
        dataset_hash=row[3],
        n_records=row[4],
        n_examples=row[5],
        reviewers=tuple(orjson.loads(row[6])),
        output_dir=row[7],
        metrics=orjson.loads(row[8]),
        started_at=row[9],
        ended_at=row[10],
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- runs whose process is gone -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunnerIdentity:
    """Who writes a run: the pid and time of its start event (the first line of its log)."""

    pid: int
    started: datetime | None


def runner_identity(run_folder: Path) -> RunnerIdentity | None:
    """The runner of a run folder, from its log's start event; None before it is written."""
    try:
        with (run_folder / EVENT_LOG_NAME).open("rb") as log:
            first = log.readline()
        data = orjson.loads(first)
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("event") != "start":
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    started = None
    with contextlib.suppress(TypeError, ValueError):
        started = datetime.fromisoformat(str(data.get("ts")))
    return RunnerIdentity(pid, started)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (and is not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    with contextlib.suppress(OSError, IndexError):
        # A finished child that nobody has waited for yet still answers kill(0); /proc says "Z".
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def runner_alive(identity: RunnerIdentity) -> bool:
    """The runner still runs: its pid is alive and was not reused by a later process."""
    if not process_alive(identity.pid):
        return False
    started = _process_start_time(identity.pid)
    if started is None or identity.started is None:
        return True
    # The start event is written after the process started; a process that started later is
    # another one that got the pid after the runner died. A second of slack for clock ticks.
    return started <= identity.started + timedelta(seconds=1)


def _process_start_time(pid: int) -> datetime | None:
    """When a process started (Linux /proc); None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / per_second).astimezone()


def last_log_line(run_folder: Path, *, tail_bytes: int = 8192) -> str:
    """The last line the runner wrote on its console (else in its event log), for a reason."""
    for name in (CONSOLE_LOG_NAME, EVENT_LOG_NAME):
        try:
            with (run_folder / name).open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - tail_bytes))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def abandoned_reason(run_folder: Path) -> str:
    last = last_log_line(run_folder)
    return f"{ABANDONED} (last line of its log: {last})" if last else ABANDONED


def conclude_abandoned_runs(store: Store) -> list[int]:
    """Mark `failed` every `running` run whose process is gone; returns their ids.

    A runner killed with SIGKILL, or one that died on a full disk, never writes its end event
    nor its row. Its start event names its pid; once that process is gone the run is over. A run
    whose log has no start event yet is left alone (its runner is between the row and the log).
    On a read-only database nothing is written, and the rows stay as they are.
    """
    rows = store.conn.execute(
        "SELECT id, output_dir FROM runs WHERE status = ?", (RunStatus.RUNNING.value,)
    ).fetchall()
    concluded: list[int] = []
    for run_id, output_dir in rows:
        folder = Path(output_dir)
        identity = runner_identity(folder)
        if identity is None or runner_alive(identity):
            continue
        try:
            with store.transaction() as conn:
                conn.execute(
                    "UPDATE runs SET status = ?, metrics = ?, ended_at = ?"
                    " WHERE id = ? AND status = ?",
                    (
                        RunStatus.FAILED.value,
                        _dumps({"error": abandoned_reason(folder)}),
                        store.now(),
                        run_id,
                        RunStatus.RUNNING.value,
                    ),
                )
        except (sqlite3.Error, ReadOnlyDatabaseError):
            return concluded  # read-only or locked: the next listing tries again
        concluded.append(int(run_id))
    return concluded
