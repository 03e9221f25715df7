"""Rows into the store: seeds and CACTUS rows become seeds, records and stages, content already
stored is skipped, and each imported stage gets its status from the one stage rule.

`add_rows` is the only way rows enter the database (the importer, the demo data, tests and
benches all use it); `bulk_load` and `secondary_indexes_deferred` make a first import fast.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from studio.cbt.checks import imported_stage_status
from studio.model import STAGES, CactusRow, Seed, Stage, StageStatus, content_hash, record_status
from studio.store import Store
from studio.store.connect import enable_wal
from studio.store.events import EventAction
from studio.store.records import chunks


@dataclass(frozen=True, slots=True)
class AddResult:
    seeds_added: int
    records_added: int
    duplicates: int
    record_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PreparedRow:
    """A row with its hashes and stage checks computed, ready for `add_rows`.

    Preparing is pure CPU work with no database access (a caller may do it ahead of time).
    """

    row: Seed | CactusRow
    seed: Seed
    seed_key: str
    record_key: str = ""
    checks: tuple[tuple[StageStatus, str, str], ...] = ()


def prepare_row(row: Seed | CactusRow) -> PreparedRow:
    if not isinstance(row, CactusRow):
        return PreparedRow(row, row, row.content_hash)
    texts = [row.stages.get(stage, "") for stage in STAGES]
    seed_key = row.seed.content_hash
    # `CactusRow.content_hash`, with the seed hashed once instead of twice.
    record_key = content_hash((seed_key, *texts, row.attitude))
    checks = tuple(
        imported_stage_status(stage, text) for stage, text in zip(STAGES, texts, strict=True)
    )
    return PreparedRow(row, row.seed, seed_key, record_key, checks)


def add_rows(
    store: Store,
    rows: Sequence[Seed | CactusRow | PreparedRow],
    *,
    source: str = "",
    accepted_by: str | None = None,
) -> AddResult:
    """Add seeds and CACTUS rows in one transaction, skipping content already stored.

    A CACTUS row becomes a seed plus a record whose present stages are `generated` (or
    `accepted` when `accepted_by` names a reviewer; one event per record), empty ones
    `pending`, and a text that breaks its stage's rule (`imported_stage_status`) `invalid`
    with the reason.
    """
    now = store.now()
    seeds_added = records_added = duplicates = 0
    record_ids: list[int] = []
    prepared = [r if isinstance(r, PreparedRow) else prepare_row(r) for r in rows]
    with store.transaction() as conn:
        seed_ids = _ids_by_key(conn, "seeds", "content_hash", [p.seed_key for p in prepared])
        next_seed = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM seeds").fetchone()[0]) + 1
        next_record = (
            int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]) + 1
        )
        known_records = set(
            _ids_by_key(
                conn, "records", "dedupe_key", [p.record_key for p in prepared if p.record_key]
            )
        )
        new_seeds: list[tuple[Any, ...]] = []
        new_records: list[tuple[Any, ...]] = []
        new_stages: list[tuple[Any, ...]] = []
        new_events: list[tuple[Any, ...]] = []
        for item in prepared:
            row, seed, key, record_key = item.row, item.seed, item.seed_key, item.record_key
            if key not in seed_ids:
                seed_ids[key] = next_seed
                next_seed += 1
                seeds_added += 1
                new_seeds.append(
                    (
                        seed_ids[key],
                        key,
                        seed.persona,
                        seed.thought,
                        _dumps(seed.patterns),
                        _dumps(seed.reframes),
                        seed.source or source,
                        now,
                    )
                )
            elif not isinstance(row, CactusRow):
                duplicates += 1
            if not isinstance(row, CactusRow):
                continue
            if record_key in known_records:
                duplicates += 1
                continue
            known_records.add(record_key)
            record_id = next_record
            next_record += 1
            records_added += 1
            record_ids.append(record_id)
            statuses: list[StageStatus] = []
            technique = ""
            for (stage, name, position), (status, error, normalized) in zip(
                _STAGE_NAMES, item.checks, strict=True
            ):
                if normalized:
                    technique = normalized
                if accepted_by is not None and status is StageStatus.GENERATED:
                    status = StageStatus.ACCEPTED
                statuses.append(status)
                new_stages.append(
                    (
                        record_id,
                        name,
                        position,
                        _STATUS_VALUES[status],
                        row.stages.get(stage) or None,
                        error,
                        now,
                    )
                )
            rstatus = _imported_record_status(tuple(statuses))
            new_records.append(
                (
                    record_id,
                    seed_ids[key],
                    record_key,
                    rstatus,
                    row.attitude,
                    technique,
                    source,
                    accepted_by or "",
                    now,
                    now,
                )
            )
            if accepted_by is not None:
                new_events.append(
                    (
                        now,
                        accepted_by,
                        EventAction.ACCEPT_IMPORT.value,
                        record_id,
                        None,
                        _dumps({"status": rstatus}),
                        source,
                    )
                )
        conn.executemany(
            "INSERT INTO seeds (id, content_hash, persona, thought, patterns, reframes, source,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            new_seeds,
        )
        conn.executemany(
            "INSERT INTO records (id, seed_id, dedupe_key, status, attitude, technique, source,"
            " last_reviewer, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            new_records,
        )
        conn.executemany(
            "INSERT INTO stages (record_id, name, position, status, original_text, error,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            new_stages,
        )
        conn.executemany(
            "INSERT INTO events (ts, reviewer, action, record_id, stage, after, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            new_events,
        )
    return AddResult(seeds_added, records_added, duplicates, tuple(record_ids))


@contextmanager
def bulk_load(store: Store) -> Iterator[bool]:
    """Load a new database without the write-ahead log; yields whether it does.

    In WAL mode every page of a bulk load is written twice, once to the log and again when
    the log is checkpointed into the database: a CACTUS-sized import spent a third of its time
    there (the store's part took 2.4 s, against 1.5 s in rollback mode). So while the database
    holds no seeds yet and no other connection has it open, it is loaded in rollback-journal
    mode with `synchronous = FULL` (as safe against a kill or a power cut as WAL: an
    interrupted load is rolled back by the next opener), and WAL is switched back on after.
    SQLite refuses the switch while anyone else has the database open, so a review app or a
    synthesis run on it is never affected; one that opens it during the load waits for it
    (the busy timeout) instead of reading a database that has nothing to review yet.
    """
    with store.locked() as conn:
        if (
            conn.in_transaction
            or conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
            or conn.execute("SELECT 1 FROM seeds LIMIT 1").fetchone()
        ):
            yield False
            return
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        except sqlite3.OperationalError:  # another connection has it open
            mode = "wal"
        if mode == "wal":
            yield False
            return
        conn.execute("PRAGMA synchronous = FULL")
        try:
            yield True
        finally:
            conn.execute("PRAGMA synchronous = NORMAL")
            enable_wal(conn)


@contextmanager
def secondary_indexes_deferred(store: Store) -> Iterator[None]:
    """Within one transaction of a bulk load: drop the secondary indexes of records and
    stages, and build them again at the end, which sorts once instead of updating them row
    by row (0.1 s of the 0.8 s the store spends on a 31k-row CACTUS import). Index changes
    are part of the transaction: a rollback, or a kill, restores them with the rest.
    Unique indexes stay, since the dedupe looks rows up by them."""
    conn = store.conn
    if not conn.in_transaction:
        raise RuntimeError("secondary_indexes_deferred needs an open transaction")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN ('records', 'stages')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    yield  # (an exception rolls the transaction back, the dropped indexes with it)
    for _, sql in indexes:
        conn.execute(sql)


def _ids_by_key(
    conn: sqlite3.Connection, table: str, column: str, keys: list[str]
) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(keys):
        marks = ",".join("?" * len(chunk))
        found.update(
            conn.execute(f"SELECT {column}, id FROM {table} WHERE {column} IN ({marks})", chunk)
        )
    return found


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@functools.lru_cache(maxsize=256)
def _imported_record_status(statuses: tuple[StageStatus, ...]) -> str:
    return record_status(statuses, rejected=False).value


# Enum values looked up once: per stage of every row they cost 0.2 s of a CACTUS import.
_STAGE_NAMES: tuple[tuple[Stage, str, int], ...] = tuple(
    (stage, stage.value, stage.position) for stage in STAGES
)
_STATUS_VALUES: dict[StageStatus, str] = {status: status.value for status in StageStatus}
