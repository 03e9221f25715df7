"""Store operations for batch synthesis: the batches we submitted and the requests in them.

A batch row is written before anything is sent and every step of its submission is committed as it
happens (`preparing` → `uploaded` → the server's status → `collected`), so whoever opens the
database next knows exactly what the server may hold and never submits the same requests twice.

A batch holds one job: a synthesis stage, or the judge (`JudgeJob.JUDGE`, stored in the same
`stage` column: one request per record, answering its current dialogue).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from studio.model import Stage
from studio.store.stages import write_stage
from studio.store.store import Store


class JudgeJob(StrEnum):
    """A batch job that is not a synthesis stage."""

    JUDGE = "judge"

    @property
    def label(self) -> str:
        return "Judge"


#: What one batch (and each of its requests) answers.
Job = Stage | JudgeJob


def job_of(value: str) -> Job:
    return JudgeJob(value) if value == JudgeJob.JUDGE.value else Stage(value)


class BatchState(StrEnum):
    PREPARING = "preparing"
    """Rows written, nothing sent that could be charged (an upload alone costs nothing)."""
    UPLOADED = "uploaded"
    """The input file is on the server; the batch may or may not have been created from it."""
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COLLECTED = "collected"
    """Results stored, unanswered requests returned; `outcome` is the server's final status, or
    `lost` when the server answered 404 for the batch's id."""


#: The server's statuses while a batch runs (anything else is final).
RUNNING: frozenset[str] = frozenset({"validating", "in_progress", "finalizing", "cancelling"})


class RequestState(StrEnum):
    IN_FLIGHT = "in_flight"
    ANSWERED = "answered"
    RETURNED = "returned"
    """No usable answer came back (expired, cancelled, an error): the stage waits for the next run."""
    SKIPPED = "skipped"
    """The stage changed while the request was out (a reviewer's work wins)."""


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One stage's (or the judge's) prompt, ready to go into a batch."""

    record_id: int
    stage: Job
    cache_key: str
    prompt_hash: str
    template_version: str
    stage_updated_at: str


@dataclass(frozen=True, slots=True)
class BatchRequest:
    custom_id: str
    batch: int
    record_id: int
    stage: Job
    state: RequestState
    cache_key: str
    prompt_hash: str
    template_version: str
    stage_updated_at: str
    error: str


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: int
    label: str
    stage: Job
    backend: str
    model: str
    base_url: str
    state: BatchState
    outcome: str
    input_file_id: str
    batch_id: str
    requests: int
    done: int
    failed: int
    tokens_in: int
    tokens_out: int
    error: str
    created_at: str


_BATCH_COLUMNS = (
    "id, label, stage, backend, model, base_url, state, outcome, input_file_id, batch_id,"
    " requests, done, failed, tokens_in, tokens_out, error, created_at"
)
_REQUEST_COLUMNS = (
    "custom_id, batch, record_id, stage, state, cache_key, prompt_hash, template_version,"
    " stage_updated_at, error"
)


def _batch(row: Sequence[object]) -> BatchRow:
    values = list(row)
    values[2] = job_of(str(values[2]))
    values[6] = BatchState(str(values[6]))
    return BatchRow(*values)  # type: ignore[arg-type]


def _request(row: Sequence[object]) -> BatchRequest:
    values = list(row)
    values[3] = job_of(str(values[3]))
    values[4] = RequestState(str(values[4]))
    return BatchRequest(*values)  # type: ignore[arg-type]


def custom_id(batch: int, record_id: int, stage: Job) -> str:
    return f"b{batch}-r{record_id}-{stage.value}"


def create_batch(
    store: Store,
    stage: Job,
    requests: Sequence[PlannedRequest],
    *,
    backend: str,
    model: str,
    base_url: str,
) -> tuple[BatchRow, list[str]]:
    """Write a batch and its requests in one transaction (state `preparing`); returns the row and
    the requests' custom ids, in order. Its label (random) finds it again on the server."""
    now = store.now()
    with store.transaction() as conn:
        label = f"studio-{uuid.uuid4().hex[:16]}"
        cur = conn.execute(
            "INSERT INTO batches (label, stage, backend, model, base_url, requests, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (label, stage.value, backend, model, base_url, len(requests), now, now),
        )
        batch = int(cur.lastrowid or 0)
        ids = [custom_id(batch, r.record_id, r.stage) for r in requests]
        conn.executemany(
            f"INSERT INTO batch_requests ({_REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
            [
                (
                    cid,
                    batch,
                    r.record_id,
                    r.stage.value,
                    RequestState.IN_FLIGHT.value,
                    r.cache_key,
                    r.prompt_hash,
                    r.template_version,
                    r.stage_updated_at,
                )
                for cid, r in zip(ids, requests, strict=True)
            ],
        )
    return get_batch(store, batch), ids


def get_batch(store: Store, batch: int) -> BatchRow:
    row = store.conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch,)
    ).fetchone()
    if row is None:
        raise KeyError(f"no batch {batch}")
    return _batch(row)


def _jobs_filter(jobs: Collection[Job] | None) -> tuple[str, tuple[str, ...]]:
    """An SQL condition on the `stage` column (and its parameters): those jobs only, or all."""
    if jobs is None:
        return "", ()
    return f" AND stage IN ({', '.join('?' * len(jobs))})", tuple(j.value for j in jobs)


def open_batches(store: Store, jobs: Collection[Job] | None = None) -> list[BatchRow]:
    """Batches not collected yet (of those jobs), oldest first."""
    where, params = _jobs_filter(jobs)
    rows = store.conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE state != ?{where} ORDER BY id",
        (BatchState.COLLECTED.value, *params),
    ).fetchall()
    return [_batch(row) for row in rows]


def all_batches(store: Store) -> list[BatchRow]:
    rows = store.conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY id").fetchall()
    return [_batch(row) for row in rows]


def update_batch(store: Store, batch: int, **values: object) -> BatchRow:
    """Set some of a batch's columns (committed at once)."""
    allowed = {"state", "outcome", "input_file_id", "batch_id", "done", "failed", "error"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))} on a batch")
    assignments = ", ".join(f"{name} = ?" for name in values)
    params = [v.value if isinstance(v, StrEnum) else v for v in values.values()]
    with store.transaction() as conn:
        conn.execute(
            f"UPDATE batches SET {assignments}, updated_at = ? WHERE id = ?",
            (*params, store.now(), batch),
        )
    return get_batch(store, batch)


def drop_batch(store: Store, batch: int) -> None:
    """Forget a batch that never reached the server as a batch; its requests are ready again."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM batches WHERE id = ?", (batch,))


def batch_requests(
    store: Store, batch: int, state: RequestState | None = RequestState.IN_FLIGHT
) -> list[BatchRequest]:
    sql = f"SELECT {_REQUEST_COLUMNS} FROM batch_requests WHERE batch = ?"
    params: tuple[object, ...] = (batch,)
    if state is not None:
        sql += " AND state = ?"
        params += (state.value,)
    return [_request(row) for row in store.conn.execute(sql + " ORDER BY rowid", params)]


def get_request(store: Store, cid: str) -> BatchRequest | None:
    row = store.conn.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM batch_requests WHERE custom_id = ?", (cid,)
    ).fetchone()
    return _request(row) if row else None


def in_flight_count(store: Store) -> int:
    row = store.conn.execute(
        "SELECT COUNT(*) FROM batch_requests WHERE state = ?", (RequestState.IN_FLIGHT.value,)
    ).fetchone()
    return int(row[0])


def in_flight_records(store: Store, jobs: Collection[Job] | None = None) -> list[int]:
    """Records with a request (for one of those jobs) out in a batch, in id order."""
    where, params = _jobs_filter(jobs)
    rows = store.conn.execute(
        f"SELECT DISTINCT record_id FROM batch_requests WHERE state = ?{where} ORDER BY record_id",
        (RequestState.IN_FLIGHT.value, *params),
    )
    return [int(row[0]) for row in rows]


def record_in_flight(store: Store, record_id: int, jobs: Collection[Job] | None = None) -> bool:
    where, params = _jobs_filter(jobs)
    row = store.conn.execute(
        f"SELECT 1 FROM batch_requests WHERE record_id = ? AND state = ?{where}",
        (record_id, RequestState.IN_FLIGHT.value, *params),
    ).fetchone()
    return row is not None


def last_request_state(store: Store, record_id: int, stage: Job) -> RequestState | None:
    """What became of the newest request for a record's stage (a returned one may have been
    sent again, and answered, since); None if it never went in a batch."""
    row = store.conn.execute(
        "SELECT state FROM batch_requests WHERE record_id = ? AND stage = ?"
        " ORDER BY batch DESC LIMIT 1",
        (record_id, stage.value),
    ).fetchone()
    return RequestState(row[0]) if row else None


def finish_request(
    store: Store,
    cid: str,
    state: RequestState,
    *,
    error: str = "",
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    """Close one request (joins the caller's transaction, so an answer and its stage commit
    together); its tokens count towards the batch's real usage."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE batch_requests SET state = ?, error = ? WHERE custom_id = ?",
            (state.value, error, cid),
        )
        if tokens_in or tokens_out:
            conn.execute(
                "UPDATE batches SET tokens_in = tokens_in + ?, tokens_out = tokens_out + ?"
                " WHERE id = (SELECT batch FROM batch_requests WHERE custom_id = ?)",
                (tokens_in, tokens_out, cid),
            )


def return_request(store: Store, request: BatchRequest, reason: str) -> None:
    """No usable answer: the stage goes back to waiting (its status never changed) with the reason
    in its `error`, unless someone changed the stage meanwhile. A judge request only closes (the
    record stays unjudged, and the reason stays on the request)."""
    with store.transaction():
        finish_request(store, request.custom_id, RequestState.RETURNED, error=reason)
        if not isinstance(request.stage, Stage):
            return
        # touch=False: the stage still waits for the same answer; only the reason is new.
        write_stage(
            store,
            request.record_id,
            request.stage,
            touch=False,
            if_updated_at=request.stage_updated_at,
            error=reason,
        )


def batch_usage(store: Store) -> tuple[int, int]:
    """Tokens in and out over every batch's results (what the server billed)."""
    row = store.conn.execute(
        "SELECT COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0) FROM batches"
    ).fetchone()
    return int(row[0]), int(row[1])


def stage_token_averages(store: Store) -> dict[Stage, tuple[float, float]]:
    """Mean tokens in and out per stage over the stages generated so far (for estimates)."""
    rows = store.conn.execute(
        "SELECT name, AVG(tokens_in), AVG(tokens_out) FROM stages WHERE tokens_out > 0"
        " GROUP BY name"
    ).fetchall()
    known = {stage.value for stage in Stage}
    return {Stage(name): (float(tin), float(tout)) for name, tin, tout in rows if name in known}
