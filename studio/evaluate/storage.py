"""Evaluations and their sessions in the database (migration 0005)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from studio.store import Store
from studio.store.events import EventAction

FINISHED = "finished"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EvaluationRow:
    id: int
    key: str
    run_id: int | None
    label: str
    counselor: dict[str, Any]
    settings: dict[str, Any]
    created_at: str


@dataclass(frozen=True, slots=True)
class SessionRow:
    evaluation_id: int
    client_key: str
    attitude: str
    status: str
    record_id: int | None = None
    transcript: str = ""
    turns: int = 0
    ended_by: str = ""
    ctrs: dict[str, Any] = field(default_factory=dict)
    ctrs_mean: float | None = None
    flags: list[Any] = field(default_factory=list)
    panas_before: dict[str, int] = field(default_factory=dict)
    panas_after: dict[str, int] = field(default_factory=dict)
    positive_change: float | None = None
    negative_change: float | None = None
    error: str = ""
    tokens: int = 0
    elapsed_s: float = 0.0
    id: int = 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def find_or_create_evaluation(
    store: Store,
    *,
    key: str,
    run_id: int | None,
    label: str,
    counselor: dict[str, Any],
    settings: dict[str, Any],
) -> EvaluationRow:
    """The evaluation with this key (a rerun resumes it), else a new one."""
    with store.transaction() as conn:
        row = conn.execute("SELECT id FROM evaluations WHERE key = ?", (key,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO evaluations (key, run_id, label, counselor, settings, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, run_id, label, _json(counselor), _json(settings), store.now()),
            )
    return next(e for e in list_evaluations(store) if e.key == key)


def list_evaluations(store: Store, *, run_id: int | None = None) -> list[EvaluationRow]:
    sql = "SELECT id, key, run_id, label, counselor, settings, created_at FROM evaluations"
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params.append(run_id)
    rows = store.conn.execute(sql + " ORDER BY id", params).fetchall()
    return [
        EvaluationRow(r[0], r[1], r[2], r[3], orjson.loads(r[4]), orjson.loads(r[5]), r[6])
        for r in rows
    ]


def get_evaluation(store: Store, evaluation_id: int) -> EvaluationRow | None:
    return next((e for e in list_evaluations(store) if e.id == evaluation_id), None)


_COLUMNS = (
    "evaluation_id, client_key, attitude, status, record_id, transcript, turns, ended_by, ctrs,"
    " ctrs_mean, flags, panas_before, panas_after, positive_change, negative_change, error,"
    " tokens, elapsed_s"
)


def save_session(store: Store, session: SessionRow) -> None:
    """Commit one session (replacing a failed try of the same client and attitude)."""
    values = (
        session.evaluation_id,
        session.client_key,
        session.attitude,
        session.status,
        session.record_id,
        session.transcript,
        session.turns,
        session.ended_by,
        _json(session.ctrs),
        session.ctrs_mean,
        _json(session.flags),
        _json(session.panas_before),
        _json(session.panas_after),
        session.positive_change,
        session.negative_change,
        session.error,
        session.tokens,
        session.elapsed_s,
    )
    with store.transaction() as conn:
        conn.execute(
            f"INSERT OR REPLACE INTO eval_sessions ({_COLUMNS}, created_at)"
            f" VALUES ({', '.join('?' * (len(values) + 1))})",
            (*values, store.now()),
        )


def sessions(store: Store, evaluation_id: int) -> list[SessionRow]:
    rows = store.conn.execute(
        f"SELECT {_COLUMNS}, id FROM eval_sessions WHERE evaluation_id = ? ORDER BY id",
        (evaluation_id,),
    ).fetchall()
    return [
        SessionRow(
            evaluation_id=r[0],
            client_key=r[1],
            attitude=r[2],
            status=r[3],
            record_id=r[4],
            transcript=r[5],
            turns=r[6],
            ended_by=r[7],
            ctrs=orjson.loads(r[8]),
            ctrs_mean=r[9],
            flags=orjson.loads(r[10]),
            panas_before=orjson.loads(r[11]),
            panas_after=orjson.loads(r[12]),
            positive_change=r[13],
            negative_change=r[14],
            error=r[15],
            tokens=r[16],
            elapsed_s=r[17],
            id=r[18],
        )
        for r in rows
    ]


def finished_keys(store: Store, evaluation_id: int) -> set[tuple[str, str]]:
    return {
        (s.client_key, s.attitude) for s in sessions(store, evaluation_id) if s.status == FINISHED
    }


def send_back(store: Store, session_id: int, *, reviewer: str = "") -> int | None:
    """What the counselor did poorly becomes data a clinician looks at: a new record for the seed
    of the session's client (pending, so `studio synth` writes it and it comes to review), with
    the session's attitude. Returns its id (the same one when sent back twice); None when the
    client is not a record (a client from a file, a chat)."""
    from studio.model import STAGES, RecordStatus, StageStatus

    found = store.conn.execute(
        "SELECT s.record_id, s.attitude, s.ctrs_mean, r.seed_id, r.mode FROM eval_sessions s"
        " JOIN records r ON r.id = s.record_id WHERE s.id = ?",
        (session_id,),
    ).fetchone()
    if found is None:
        return None
    record_id, attitude, score, seed_id, mode = found
    key = f"eval-session:{session_id}"
    now = store.now()
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO records (seed_id, dedupe_key, mode, status, attitude, source,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'eval', ?, ?)",
            (seed_id, key, mode, RecordStatus.PENDING.value, attitude, now, now),
        )
        if not cur.rowcount:
            row = conn.execute("SELECT id FROM records WHERE dedupe_key = ?", (key,)).fetchone()
            return int(row[0])
        new_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO stages (record_id, name, position, status, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(new_id, s.value, s.position, StageStatus.PENDING.value, now) for s in STAGES],
        )
        store.log_event(
            EventAction.SEND_BACK,
            reviewer=reviewer,
            record_id=new_id,
            detail=f"evaluation session {session_id} of record {record_id} scored {score}",
        )
    return new_id
