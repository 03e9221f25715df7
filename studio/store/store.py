"""The SQLite store: seeds, records, stages, the audit log, the LLM cache and training runs.

All SQL of CBT Studio lives here. The store is safe to share between the review app, a running
`studio synth` and a training run: WAL mode, a busy timeout and short IMMEDIATE transactions.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from studio.cbt.checks import judge_answer
from studio.cbt.techniques import normalize_technique
from studio.errors import EditConflict as EditConflict  # re-exported: its old home
from studio.errors import ReadOnlyDatabaseError
from studio.model import (
    STAGES,
    CactusRow,
    RecordStatus,
    Seed,
    Stage,
    StageStatus,
    content_hash,
    record_status,
)
from studio.store import decisions
from studio.store import stages as stage_rows
from studio.store.connect import connect, enable_wal, write_problem
from studio.store.decisions import Decision
from studio.store.events import EventAction
from studio.store.migrations import check_schema, migrate, rollback_quietly
from studio.store.stages import StageView as StageView  # re-exported: its old home
from studio.store.stages import snapshot, stage_from_row, write_stage

if TYPE_CHECKING:
    import sqlite_utils

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class SeedView:
    id: int
    seed: Seed


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


@dataclass(frozen=True, slots=True)
class AddResult:
    seeds_added: int
    records_added: int
    duplicates: int
    record_ids: tuple[int, ...]


class Store:
    """One connection to a CBT Studio database. Use one Store per thread."""

    def __init__(
        self, path: str | Path, *, clock: Clock = utc_now, read_only: bool = False
    ) -> None:
        """Open (and create, and migrate) the database at `path`.

        `read_only=True` writes nothing: no file is created, no migration runs (a database that
        needs one is refused with a `DatabaseError`), and every write is refused up front with
        `ReadOnlyDatabaseError`. `Store.open` chooses for you."""
        self.path = Path(path)
        self.clock = clock
        self.read_only = read_only
        """True when this store only reads (see `read_only_reason`)."""
        self.read_only_reason = "opened read-only" if read_only else ""
        """Why the store is read-only, for a person ("the file is write-protected"); "" if not."""
        conn = connect(path, read_only=read_only)
        self.conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self.schema_version = check_schema(conn) if read_only else migrate(conn, self.now())
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open(cls, path: str | Path, *, clock: Clock = utc_now) -> Store:
        """Read-write where the file, its folder and the filesystem allow it, else read-only:
        `store.read_only` says which, `store.read_only_reason` why. For everything that can do
        its job on a database it may not change (stats, export, the review app)."""
        reason = "" if str(path) == ":memory:" else write_problem(Path(path))
        store = cls(path, clock=clock, read_only=bool(reason))
        if reason:
            store.read_only_reason = reason
        return store

    # -- plumbing -----------------------------------------------------------------------------

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the same connection (introspection, ad-hoc queries, exports).

        Built on first use: importing sqlite-utils pulls in its plugin system, which every
        command would otherwise pay for at start-up."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> str:
        return self.clock().isoformat(timespec="milliseconds")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE write transaction; nested uses join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            if self.read_only:
                raise ReadOnlyDatabaseError(
                    f"{self.path}: read-only ({self.read_only_reason}); nothing was changed"
                )
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                rollback_quietly(self.conn)
                raise
            finally:
                self._depth = 0

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the database (a deferred read transaction: in WAL
        mode it blocks no writer), e.g. an export that reads the records twice."""
        with self._lock:
            if self.conn.in_transaction:
                yield
                return
            self.conn.execute("BEGIN")
            try:
                yield
            finally:
                rollback_quietly(self.conn)  # nothing was written; ending it is all that is left

    def log_event(
        self,
        action: EventAction,
        *,
        reviewer: str = "",
        record_id: int | None = None,
        stage: Stage | None = None,
        before: Any = None,
        after: Any = None,
        detail: str = "",
        accept_group: int | None = None,
        undoes: int | None = None,
        guideline: str = "",
    ) -> int:
        """Append one event to the audit log (see `studio.store.events`); returns its id.
        `guideline`: the version of the review guidelines a decision was made under."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO events (ts, reviewer, action, record_id, stage, before, after, detail,"
                " accept_group, undoes, guideline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.now(),
                    reviewer,
                    EventAction(action).value,  # refuses an action the log does not know
                    record_id,
                    stage.value if stage else None,
                    None if before is None else _dumps(before),
                    None if after is None else _dumps(after),
                    detail,
                    accept_group,
                    undoes,
                    guideline,
                ),
            )
            return int(cur.lastrowid or 0)

    # -- adding seeds and records ---------------------------------------------------------------

    @contextmanager
    def bulk_load(self) -> Iterator[bool]:
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
        with self._lock:
            if (
                self._depth
                or self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
                or self.conn.execute("SELECT 1 FROM seeds LIMIT 1").fetchone()
            ):
                yield False
                return
            try:
                mode = self.conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            except sqlite3.OperationalError:  # another connection has it open
                mode = "wal"
            if mode == "wal":
                yield False
                return
            self.conn.execute("PRAGMA synchronous = FULL")
            try:
                yield True
            finally:
                self.conn.execute("PRAGMA synchronous = NORMAL")
                enable_wal(self.conn)

    @contextmanager
    def secondary_indexes_deferred(self) -> Iterator[None]:
        """Within one transaction of a bulk load: drop the secondary indexes of records and
        stages, and build them again at the end, which sorts once instead of updating them row
        by row (0.1 s of the 0.8 s the store spends on a 31k-row CACTUS import). Index changes
        are part of the transaction: a rollback, or a kill, restores them with the rest.
        Unique indexes stay, since the dedupe looks rows up by them."""
        if not self._depth:
            raise RuntimeError("secondary_indexes_deferred needs an open transaction")
        indexes = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('records', 'stages')"
        ).fetchall()
        for name, _ in indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        yield  # (an exception rolls the transaction back, the dropped indexes with it)
        for _, sql in indexes:
            self.conn.execute(sql)

    def add_rows(
        self,
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
        now = self.now()
        seeds_added = records_added = duplicates = 0
        record_ids: list[int] = []
        prepared = [r if isinstance(r, PreparedRow) else prepare_row(r) for r in rows]
        with self.transaction() as conn:
            seed_ids = self._ids_by_key(
                conn, "seeds", "content_hash", [p.seed_key for p in prepared]
            )
            next_seed = (
                int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM seeds").fetchone()[0]) + 1
            )
            next_record = (
                int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]) + 1
            )
            known_records = set(
                self._ids_by_key(
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

    @staticmethod
    def _ids_by_key(
        conn: sqlite3.Connection, table: str, column: str, keys: list[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(keys, 900):
            marks = ",".join("?" * len(chunk))
            found.update(
                conn.execute(f"SELECT {column}, id FROM {table} WHERE {column} IN ({marks})", chunk)
            )
        return found

    # -- reading -----------------------------------------------------------------------------

    def seed(self, seed_id: int) -> Seed:
        row = self.conn.execute(
            "SELECT persona, thought, patterns, reframes, source FROM seeds WHERE id = ?",
            (seed_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no seed {seed_id}")
        return _seed_from_row(row)

    def record(self, record_id: int) -> RecordView:
        row = self.conn.execute(_RECORD_SELECT + " WHERE r.id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(f"no record {record_id}")
        return self._record_views([row])[0]

    def records(
        self, where: str = "", params: Sequence[Any] = (), *, batch: int = 500
    ) -> Iterator[RecordView]:
        """Iterate records (with seeds and stages) in id order, `batch` at a time."""
        last = 0
        clause = f" AND ({where})" if where else ""
        while True:
            rows = self.conn.execute(
                _RECORD_SELECT + f" WHERE r.id > ?{clause} ORDER BY r.id LIMIT ?",
                (last, *params, batch),
            ).fetchall()
            if not rows:
                return
            yield from self._record_views(rows)
            last = rows[-1][0]

    def accepted_records(self) -> Iterator[RecordView]:
        return self.records("r.status = ?", (RecordStatus.ACCEPTED.value,))

    def _record_views(self, rows: list[Any]) -> list[RecordView]:
        ids = [row[0] for row in rows]
        stages: dict[int, dict[Stage, StageView]] = {i: {} for i in ids}
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            for srow in self.conn.execute(
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

    def stage(self, record_id: int, stage: Stage) -> StageView:
        row = self.conn.execute(
            f"SELECT {stage_rows.STAGE_COLUMNS} FROM stages WHERE record_id = ? AND name = ?",
            (record_id, stage.value),
        ).fetchone()
        if row is None:
            raise KeyError(f"record {record_id} has no stage {stage.value}")
        return stage_from_row(row)

    # -- reviewer decisions ---------------------------------------------------------------------

    def decide_stage(
        self,
        record_id: int,
        stage: Stage,
        status: StageStatus,
        *,
        reviewer: str,
        note: str = "",
        accept_group: int | None = None,
        guideline: str = "",
    ) -> RecordStatus:
        """Accept or reject one stage; one event with the before/after snapshot (in the
        accept-all `accept_group`, if given), and the reviewer's own decision row.

        On a record assigned to two or more reviewers only the reviewer's decision is written
        (the event's before/after are theirs) and `decisions.settle` derives the stage."""
        if status not in (StageStatus.ACCEPTED, StageStatus.REJECTED):
            raise ValueError(f"a reviewer decides accepted or rejected, not {status}")
        with self.transaction():
            before = self.stage(record_id, stage)
            if before.original_text is None and before.edited_text is None:
                raise ValueError(f"{stage.label} of record {record_id} has no text to decide on")
            double = decisions.is_double_reviewed(self, record_id)
            if double:
                own, was = decisions.own_snapshot(self, before, reviewer)
                edited = own.edited_text if own is not None else None
            else:
                was, edited = snapshot(before), before.edited_text
                write_stage(self, record_id, stage, status=status, note=note)
            mine = Decision(record_id, stage, reviewer, status, edited, note, guideline)
            decisions.write_decision(self, mine)
            self.log_event(
                _ACTION[status],
                reviewer=reviewer,
                record_id=record_id,
                stage=stage,
                before=was,
                after={"status": status.value, "edited_text": edited, "note": note},
                accept_group=accept_group,
                guideline=guideline,
            )
            return self._refresh_status(record_id, reviewer)

    def edit_stage(
        self,
        record_id: int,
        stage: Stage,
        text: str,
        *,
        reviewer: str,
        note: str = "",
        expected_text: str | None = None,
        status: StageStatus = StageStatus.EDITED,
        error: str = "",
        guideline: str = "",
    ) -> RecordStatus:
        """Save a reviewer's text as `edited` (or `invalid` with `error`, when the text breaks
        its stage's rule); the original text is never touched.

        With `expected_text` (the text the reviewer started from), a stage that changed meanwhile
        (regenerated, or edited by someone else) is not overwritten: `EditConflict`. On a record
        assigned to two or more reviewers the edit is the reviewer's own decision only (see
        `decide_stage`).
        """
        if status not in (StageStatus.EDITED, StageStatus.INVALID):
            raise ValueError(f"an edit saves edited or invalid, not {status}")
        with self.transaction() as conn:
            before = self.stage(record_id, stage)
            double = decisions.is_double_reviewed(self, record_id)
            if double:
                before = decisions.own_stage(
                    before, decisions.decision(self, record_id, stage, reviewer)
                )
            if expected_text is not None and before.text != expected_text:
                raise EditConflict(
                    f"the {stage.label} of record {record_id} changed since you started editing"
                )
            if stage is Stage.CBT_TECHNIQUE:
                normalized = normalize_technique(text)
                if normalized is None:
                    raise ValueError(f"{text!r} is not one of the 12 CBT techniques")
                text = normalized
                if not double:
                    conn.execute("UPDATE records SET technique = ? WHERE id = ?", (text, record_id))
            if not double:
                write_stage(
                    self, record_id, stage, status=status, edited_text=text, note=note, error=error
                )
            mine = Decision(record_id, stage, reviewer, status, text, note, guideline)
            decisions.write_decision(self, mine)
            self.log_event(
                EventAction.EDIT,
                reviewer=reviewer,
                record_id=record_id,
                stage=stage,
                before=snapshot(before),
                after={"status": status.value, "edited_text": text, "note": note, "error": error},
                guideline=guideline,
            )
            return self._refresh_status(record_id, reviewer)

    def reject_record(
        self, record_id: int, *, reviewer: str, reason: str = "", guideline: str = ""
    ) -> RecordStatus:
        """Reject the record as a whole (on a double-reviewed record: the reviewer's own
        rejection, which `decisions.settle` weighs against the others')."""
        with self.transaction() as conn:
            before = self.record(record_id)
            if decisions.is_double_reviewed(self, record_id):
                before = decisions.reviewer_record(self, before, reviewer)
            else:
                conn.execute(
                    "UPDATE records SET rejected = 1, note = ? WHERE id = ?", (reason, record_id)
                )
            rejection = Decision(
                record_id, None, reviewer, StageStatus.REJECTED, note=reason, guideline=guideline
            )
            decisions.write_decision(self, rejection)
            self.log_event(
                EventAction.REJECT_RECORD,
                reviewer=reviewer,
                record_id=record_id,
                before={"status": before.status.value, "note": before.note},
                after={"status": RecordStatus.REJECTED.value, "note": reason},
                guideline=guideline,
            )
            return self._refresh_status(record_id, reviewer)

    def refresh_status(self, record_id: int, reviewer: str = "") -> RecordStatus:
        """Recompute a record's status from its stages (the rule lives in `studio.model`)."""
        with self.transaction():
            return self._refresh_status(record_id, reviewer)

    def _refresh_status(self, record_id: int, reviewer: str = "") -> RecordStatus:
        if decisions.is_double_reviewed(self, record_id):
            return decisions.settle(self, record_id, reviewer=reviewer)
        conn = self.conn
        rejected = conn.execute(
            "SELECT rejected FROM records WHERE id = ?", (record_id,)
        ).fetchone()
        if rejected is None:
            raise KeyError(f"no record {record_id}")
        statuses = [
            StageStatus(s)
            for (s,) in conn.execute(
                "SELECT status FROM stages WHERE record_id = ? ORDER BY position", (record_id,)
            )
        ]
        status = record_status(statuses, rejected=bool(rejected[0]))
        conn.execute(
            "UPDATE records SET status = ?, updated_at = ?,"
            " last_reviewer = CASE WHEN ? != '' THEN ? ELSE last_reviewer END WHERE id = ?",
            (status.value, self.now(), reviewer, reviewer, record_id),
        )
        return status

    # -- summaries ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts in the shape of `studio stats --json` (every known status present, zeros too)."""
        from studio.store.runs import RunStatus, conclude_abandoned_runs

        conclude_abandoned_runs(self)  # a dead run is `failed`, never counted as running

        def counts(sql: str, statuses: Sequence[str]) -> dict[str, int]:
            found = dict(self.conn.execute(sql).fetchall())
            return {s: int(found.pop(s, 0)) for s in statuses} | {
                k: int(v) for k, v in found.items()
            }

        return {
            "seeds": int(self.conn.execute("SELECT COUNT(*) FROM seeds").fetchone()[0]),
            "records": counts(
                "SELECT status, COUNT(*) FROM records GROUP BY status",
                [s.value for s in RecordStatus],
            ),
            "stages": counts(
                "SELECT status, COUNT(*) FROM stages GROUP BY status",
                [s.value for s in StageStatus],
            ),
            "runs": counts(
                "SELECT status, COUNT(*) FROM runs GROUP BY status",
                [s.value for s in RunStatus],
            ),
        }

    def technique_counts(self) -> dict[str, int]:
        return {
            t or "(none)": int(n)
            for t, n in self.conn.execute(
                "SELECT technique, COUNT(*) FROM records GROUP BY technique ORDER BY COUNT(*) DESC"
            )
        }


_ACTION = {StageStatus.ACCEPTED: EventAction.ACCEPT, StageStatus.REJECTED: EventAction.REJECT}

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


def imported_stage_status(stage: Stage, text: str) -> tuple[StageStatus, str, str]:
    """Status, error and (for the technique) the normalized name of an imported stage text.

    Present stages arrive `generated` (awaiting review) when they pass the one rule of
    `studio.cbt.checks.judge_answer`, else `invalid` with its reason (several techniques, a
    dialogue that stops mid-sentence, …). The stored text stays the imported text.
    """
    # `isspace` instead of `strip`: no copy of a dialogue just to see that it is not blank.
    if not text or text.isspace():
        return _PENDING_CHECK
    if stage is Stage.CBT_TECHNIQUE:
        return _technique_check(text)
    judged = judge_answer(stage, text)
    if not judged.ok:
        return StageStatus.INVALID, judged.error, ""
    return _GENERATED_CHECK


_PENDING_CHECK = (StageStatus.PENDING, "", "")
_GENERATED_CHECK = (StageStatus.GENERATED, "", "")


@functools.lru_cache(maxsize=1024)
def _technique_check(text: str) -> tuple[StageStatus, str, str]:
    """Cached: a dataset names the same few techniques over and over, and judging them took
    1.2 s of a 16 s cProfile run of a CACTUS import."""
    judged = judge_answer(Stage.CBT_TECHNIQUE, text)
    if not judged.ok:
        return StageStatus.INVALID, judged.error, ""
    return StageStatus.GENERATED, "", judged.text


@functools.lru_cache(maxsize=256)
def _imported_record_status(statuses: tuple[StageStatus, ...]) -> str:
    return record_status(statuses, rejected=False).value


# Enum values looked up once: per stage of every row they cost 0.2 s of a CACTUS import.
_STAGE_NAMES: tuple[tuple[Stage, str, int], ...] = tuple(
    (stage, stage.value, stage.position) for stage in STAGES
)
_STATUS_VALUES: dict[StageStatus, str] = {status: status.value for status in StageStatus}


@dataclass(frozen=True, slots=True)
class PreparedRow:
    """A row with its hashes and stage checks computed, ready for `Store.add_rows`.

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


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
