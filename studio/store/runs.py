"""Training-run bookkeeping: the `runs` and `run_metrics` tables (migration 0001).

A run's row is written by the training process itself (`studio.train.runner`), so it is right
whoever started the run — the CLI, the review app or `accelerate launch` — and whoever watches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from studio.store.store import Store


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
    """Runs, newest first; only those with `status` when given."""
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
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
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
