"""The review queue: which records a filter shows, a page at a time, and the counts beside it.

The queue is read a page at a time by keyset (`id > last`), so a 100k-record database opens as
fast as a small one. A reviewer with records assigned (`studio assign`) sees theirs first. The
stats screen's counts (`review_stats`, `reviewer_activity`) are read here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from studio.model import RecordStatus
from studio.store.assignments import has_assignments
from studio.store.events import EventAction
from studio.store.judging import current_scores, current_scores_sql, register_hash
from studio.store.records import chunks
from studio.store.store import Store

_QUEUE_SELECT = (
    "SELECT r.id, r.status, r.technique, s.thought, r.attitude, r.last_reviewer, r.updated_at"
    " FROM records r JOIN seeds s ON s.id = r.seed_id"
)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which records the queue shows; `n` / `p` in the review screen walk the same filter."""

    status: RecordStatus | None = None
    """Only records with this status; None for all."""
    technique: str | None = None
    """Only records with this technique (one of the twelve, or "" for none); None for all."""
    search: str = ""
    """Text in the seed's thought or persona (case-insensitive), or `#id` / a number for a record."""
    flagged: bool = False
    """Only records whose current judgement has a safety flag."""
    by_score: bool = False
    """Lowest judge CTRS mean first (records without a current score last), instead of by id."""

    def describe(self) -> str:
        parts = [self.status.value.replace("_", " ") if self.status else "all statuses"]
        parts.append(
            "all techniques" if self.technique is None else (self.technique or "no technique")
        )
        if self.search.strip():
            parts.append(f"“{self.search.strip()}”")
        if self.flagged:
            parts.append("flagged by the judge")
        if self.by_score:
            parts.append("lowest score first")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queue: a record with the seed's thought."""

    id: int
    status: RecordStatus
    technique: str
    thought: str
    attitude: str
    last_reviewer: str
    updated_at: str
    ctrs_mean: float | None = None
    """The judge's current CTRS mean (None: not judged, or the dialogue changed since)."""
    flagged: bool = False
    """The current judgement has a safety flag."""


@dataclass(frozen=True, slots=True)
class ReviewerActivity:
    """Decisions one reviewer made, counted from the audit log."""

    reviewer: str
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    records_rejected: int = 0
    undone: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.edited + self.rejected + self.records_rejected


@dataclass(frozen=True, slots=True)
class ReviewStats:
    """What the stats screen shows."""

    records: dict[str, int]
    stages: dict[str, int]
    techniques: dict[str, int]
    reviewers: list[ReviewerActivity]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(flt: QueueFilter) -> tuple[str, list[Any], bool]:
    """SQL conditions for a filter, their parameters, and whether they need the seeds table."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.status is not None:
        clauses.append("r.status = ?")
        params.append(flt.status.value)
    if flt.technique is not None:
        clauses.append("r.technique = ?")
        params.append(flt.technique)
    if flt.flagged:
        clauses.append(
            f"r.id IN (SELECT record_id FROM ({current_scores_sql()}) WHERE flagged = 1)"
        )
    text = flt.search.strip()
    if not text:
        return " AND ".join(clauses), params, False
    like = f"%{_escape_like(text)}%"
    search = "s.thought LIKE ? ESCAPE '\\' OR s.persona LIKE ? ESCAPE '\\'"
    params += [like, like]
    number = text.removeprefix("#")
    if number.isdigit():
        search += " OR r.id = ?"
        params.append(int(number))
    clauses.append(f"({search})")
    return " AND ".join(clauses), params, True


def _queue_row(row: Sequence[Any]) -> QueueRow:
    return QueueRow(
        id=row[0],
        status=RecordStatus(row[1]),
        technique=row[2],
        thought=row[3],
        attitude=row[4],
        last_reviewer=row[5],
        updated_at=row[6],
    )


def queue_page(
    store: Store,
    flt: QueueFilter,
    *,
    after: int = 0,
    limit: int = 100,
    offset: int = 0,
    reviewer: str = "",
) -> list[QueueRow]:
    """The next `limit` records of the filter with an id above `after`, in id order; with
    `flt.by_score`, the `limit` records after the first `offset` in score order.

    With a `reviewer` who has records assigned (`studio assign`), theirs come first (in that
    order), then the rest: `after` is then the last id shown, in whichever part it is."""
    register_hash(store)
    where, params, _ = _where(flt)
    mine = bool(reviewer) and has_assignments(store, reviewer)
    if flt.by_score:
        first = [reviewer] if mine else []
        rows = store.conn.execute(
            _QUEUE_SELECT
            + f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
            + (f" WHERE {where}" if where else "")
            + f" ORDER BY {_score_order(mine=mine)} LIMIT ? OFFSET ?",
            (*params, *first, limit, offset),
        ).fetchall()
    elif not mine:
        rows = _id_page(store, "", [], where, params, after=after, limit=limit)
    else:
        rows = []
        in_mine = after == 0 or _is_mine(store, after, reviewer)
        if in_mine:
            rows = _id_page(store, _MINE, [reviewer], where, params, after=after, limit=limit)
        if len(rows) < limit:
            rows += _id_page(
                store,
                f"NOT {_MINE}",
                [reviewer],
                where,
                params,
                after=0 if in_mine else after,
                limit=limit - len(rows),
            )
    return _with_scores(store, [_queue_row(row) for row in rows])


#: A record assigned to the reviewer named by the parameter.
_MINE = "EXISTS (SELECT 1 FROM assignments a WHERE a.record_id = r.id AND a.reviewer = ?)"


def _is_mine(store: Store, record_id: int, reviewer: str) -> bool:
    found = store.conn.execute(
        "SELECT 1 FROM assignments WHERE record_id = ? AND reviewer = ?", (record_id, reviewer)
    ).fetchone()
    return found is not None


def _id_page(
    store: Store,
    part: str,
    part_params: list[Any],
    where: str,
    params: list[Any],
    *,
    after: int,
    limit: int,
) -> list[Any]:
    """One page in id order of the records that match `part` (all when "") and the filter."""
    clause = (f" AND {part}" if part else "") + (f" AND {where}" if where else "")
    return store.conn.execute(
        _QUEUE_SELECT + f" WHERE r.id > ?{clause} ORDER BY r.id LIMIT ?",
        (after, *part_params, *params, limit),
    ).fetchall()


def _score_order(*, mine: bool) -> str:
    return (f"NOT {_MINE}, " if mine else "") + _SCORE_ORDER


#: Lowest CTRS mean first; records without a current judgement after them, by id.
_SCORE_ORDER = "js.ctrs_mean IS NULL, js.ctrs_mean, r.id"


def _with_scores(store: Store, rows: list[QueueRow]) -> list[QueueRow]:
    """The rows with their current judge scores (only these rows' dialogues are hashed)."""
    scores = current_scores(store, [row.id for row in rows])
    return [
        replace(row, ctrs_mean=scores[row.id].ctrs_mean, flagged=scores[row.id].flagged)
        if row.id in scores
        else row
        for row in rows
    ]


def queue_rows(store: Store, ids: Sequence[int]) -> list[QueueRow]:
    """The current state of the given records (to refresh rows already on screen)."""
    found: list[QueueRow] = []
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        found += [
            _queue_row(row)
            for row in store.conn.execute(
                _QUEUE_SELECT + f" WHERE r.id IN ({marks}) ORDER BY r.id", tuple(chunk)
            )
        ]
    return _with_scores(store, found)


def queue_ids(store: Store, flt: QueueFilter) -> list[int]:
    """The ids of every record the filter shows, in id order (e.g. to assign them)."""
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    sql = f"SELECT r.id FROM {source}" + (f" WHERE {where}" if where else "") + " ORDER BY r.id"
    return [int(rid) for (rid,) in store.conn.execute(sql, params)]


def queue_count(store: Store, flt: QueueFilter) -> int:
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    sql = f"SELECT COUNT(*) FROM {source}" + (f" WHERE {where}" if where else "")
    return int(store.conn.execute(sql, params).fetchone()[0])


def neighbor(
    store: Store, flt: QueueFilter, record_id: int, *, forward: bool, reviewer: str = ""
) -> int | None:
    """The id of the next (or previous) record after `record_id` in the filter, if any, in the
    queue's order (`queue_page`: the reviewer's assigned records first)."""
    register_hash(store)
    where, params, needs_seeds = _where(flt)
    source = "records r JOIN seeds s ON s.id = r.seed_id" if needs_seeds else "records r"
    mine = bool(reviewer) and has_assignments(store, reviewer)
    if flt.by_score:
        ordered = [
            int(row[0])
            for row in store.conn.execute(
                "SELECT r.id FROM records r JOIN seeds s ON s.id = r.seed_id"
                f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id"
                + (f" WHERE {where}" if where else "")
                + f" ORDER BY {_score_order(mine=mine)}",
                (*params, *([reviewer] if mine else [])),
            )
        ]
        if record_id not in ordered:
            return ordered[0] if ordered and forward else None
        at = ordered.index(record_id) + (1 if forward else -1)
        return ordered[at] if 0 <= at < len(ordered) else None
    if not mine:
        return _next_id(store, source, "", [], where, params, record_id, forward=forward)
    parts = [(_MINE, [reviewer]), (f"NOT {_MINE}", [reviewer])]
    at = 0 if _is_mine(store, record_id, reviewer) else 1
    part, part_params = parts[at]
    found = _next_id(store, source, part, part_params, where, params, record_id, forward=forward)
    step = 1 if forward else -1
    if found is None and 0 <= at + step < len(parts):
        part, part_params = parts[at + step]
        start = 0 if forward else 2**62
        found = _next_id(store, source, part, part_params, where, params, start, forward=forward)
    return found


def _next_id(
    store: Store,
    source: str,
    part: str,
    part_params: list[Any],
    where: str,
    params: list[Any],
    record_id: int,
    *,
    forward: bool,
) -> int | None:
    op, order = (">", "ASC") if forward else ("<", "DESC")
    clause = (f" AND {part}" if part else "") + (f" AND {where}" if where else "")
    row = store.conn.execute(
        f"SELECT r.id FROM {source} WHERE r.id {op} ?{clause} ORDER BY r.id {order} LIMIT 1",
        (record_id, *part_params, *params),
    ).fetchone()
    return None if row is None else int(row[0])


def status_counts(store: Store) -> dict[RecordStatus, int]:
    found = dict(store.conn.execute("SELECT status, COUNT(*) FROM records GROUP BY status"))
    return {status: int(found.get(status.value, 0)) for status in RecordStatus}


def review_stats(store: Store) -> ReviewStats:
    stats = store.stats()
    return ReviewStats(
        records=stats["records"],
        stages=stats["stages"],
        techniques=store.technique_counts(),
        reviewers=reviewer_activity(store),
    )


def reviewer_activity(store: Store) -> list[ReviewerActivity]:
    """Decisions per reviewer (most active first), from the audit log."""
    columns = {
        EventAction.ACCEPT: "accepted",
        EventAction.EDIT: "edited",
        EventAction.REJECT: "rejected",
        EventAction.REJECT_RECORD: "records_rejected",
        EventAction.UNDO: "undone",
    }
    marks = ",".join("?" * len(columns))
    counts: dict[str, dict[str, int]] = {}
    for reviewer, action, count in store.conn.execute(
        "SELECT reviewer, action, COUNT(*) FROM events"
        f" WHERE reviewer != '' AND action IN ({marks}) GROUP BY reviewer, action",
        tuple(columns),
    ):
        counts.setdefault(reviewer, {})[columns[EventAction(action)]] = int(count)
    activity = [ReviewerActivity(reviewer, **fields) for reviewer, fields in counts.items()]
    return sorted(activity, key=lambda a: (-a.total, a.reviewer))
