"""Reading records: a record with its seed and its stages (`RecordView`), one or many at a time.

`Store.record`, `Store.records` and `Store.accepted_records` are the way in; these functions take
the connection so the store's core holds no query of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from studio.model import RecordStatus, Seed, Stage
from studio.store import stages as stage_rows
from studio.store.stages import StageView, stage_from_row

#: Most `?` marks one statement takes (SQLite's default limit was 999 before 3.32).
MAX_MARKS = 900


@dataclass(frozen=True, slots=True)
class RecordView:
    id: int
    seed_id: int
    seed: Seed
    status: RecordStatus
    mode: str
    attempt: int
    attitude: str
    technique: str
    note: str
    last_reviewer: str
    created_at: str
    updated_at: str
    stages: dict[Stage, StageView] = field(default_factory=dict)

    def text(self, stage: Stage) -> str:
        return self.stages[stage].text


def read_seed(conn: sqlite3.Connection, seed_id: int) -> Seed:
    row = conn.execute(
        "SELECT persona, thought, patterns, reframes, source FROM seeds WHERE id = ?",
        (seed_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no seed {seed_id}")
    return _seed_from_row(row)


def read_record(conn: sqlite3.Connection, record_id: int) -> RecordView:
    row = conn.execute(_RECORD_SELECT + " WHERE r.id = ?", (record_id,)).fetchone()
    if row is None:
        raise KeyError(f"no record {record_id}")
    return _record_views(conn, [row])[0]


def read_records(
    conn: sqlite3.Connection, where: str = "", params: Sequence[Any] = (), *, batch: int = 500
) -> Iterator[RecordView]:
    """Iterate records (with seeds and stages) in id order, `batch` at a time."""
    last = 0
    clause = f" AND ({where})" if where else ""
    while True:
        rows = conn.execute(
            _RECORD_SELECT + f" WHERE r.id > ?{clause} ORDER BY r.id LIMIT ?",
            (last, *params, batch),
        ).fetchall()
        if not rows:
            return
        yield from _record_views(conn, rows)
        last = rows[-1][0]


def chunks(items: Sequence[Any], size: int = MAX_MARKS) -> Iterator[Sequence[Any]]:
    """`items` in slices small enough for one `IN (?, …)` each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record_views(conn: sqlite3.Connection, rows: list[Any]) -> list[RecordView]:
    ids = [row[0] for row in rows]
    stages: dict[int, dict[Stage, StageView]] = {i: {} for i in ids}
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        for srow in conn.execute(
            f"SELECT {stage_rows.STAGE_COLUMNS} FROM stages WHERE record_id IN ({marks})"
            " ORDER BY record_id, position",
            chunk,
        ):
            view = stage_from_row(srow)
            stages[view.record_id][view.stage] = view
    return [
        RecordView(
            id=row[0],
            seed_id=row[1],
            status=RecordStatus(row[2]),
            mode=row[3],
            attempt=row[4],
            attitude=row[5],
            technique=row[6],
            note=row[7],
            last_reviewer=row[8],
            created_at=row[9],
            updated_at=row[10],
            seed=_seed_from_row(row[11:16]),
            stages=stages[row[0]],
        )
        for row in rows
    ]


_RECORD_SELECT = (
    "SELECT r.id, r.seed_id, r.status, r.mode, r.attempt, r.attitude, r.technique, r.note,"
    " r.last_reviewer, r.created_at, r.updated_at,"
    " s.persona, s.thought, s.patterns, s.reframes, s.source"
    " FROM records r JOIN seeds s ON s.id = r.seed_id"
)


def _seed_from_row(row: Sequence[Any]) -> Seed:
    return Seed(
        persona=row[0],
        thought=row[1],
        patterns=tuple(orjson.loads(row[2])),
        reframes=tuple(orjson.loads(row[3])),
        source=row[4],
    )
