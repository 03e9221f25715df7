"""The SQLite store's core: the connection, transactions, the audit log, reviewer decisions and
the counts of `studio stats`.

Records are read through `studio.store.records`; seeds and records are added by the importer's
rules, `studio.ingest.load`. The store is safe to share between the review app, a running
`studio synth` and a training run: WAL mode, a busy timeout and short IMMEDIATE transactions.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from studio.cbt.techniques import normalize_technique
from studio.errors import EditConflict as EditConflict  # re-exported: its old home
from studio.errors import ReadOnlyDatabaseError
from studio.model import (
    RecordStatus,
    Seed,
    Stage,
    StageStatus,
    record_status,
)
from studio.store import decisions
from studio.store import stages as stage_rows
from studio.store.connect import connect, write_problem
from studio.store.decisions import Decision
from studio.store.events import EventAction
from studio.store.migrations import check_schema, migrate, rollback_quietly
from studio.store.records import RecordView as RecordView  # re-exported: its old home
from studio.store.records import read_record, read_records, read_seed
from studio.store.stages import StageView as StageView  # re-exported: its old home
from studio.store.stages import snapshot, stage_from_row, write_stage

if TYPE_CHECKING:
    import sqlite_utils

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


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

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection with this store's lock held: for work that spans several transactions or
        changes the connection's settings (a bulk load's journal mode), so that no other thread
        sharing this store runs a statement in between."""
        with self._lock:
            yield self.conn

    # -- reading -----------------------------------------------------------------------------

    def seed(self, seed_id: int) -> Seed:
        return read_seed(self.conn, seed_id)

    def record(self, record_id: int) -> RecordView:
        return read_record(self.conn, record_id)

    def records(
        self, where: str = "", params: Sequence[Any] = (), *, batch: int = 500
    ) -> Iterator[RecordView]:
        """Iterate records (with seeds and stages) in id order, `batch` at a time."""
        return read_records(self.conn, where, params, batch=batch)

    def accepted_records(self) -> Iterator[RecordView]:
        return self.records("r.status = ?", (RecordStatus.ACCEPTED.value,))

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
            double = decisions.double_reviewed_by(self, record_id, reviewer)
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
            double = decisions.double_reviewed_by(self, record_id, reviewer)
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
            if decisions.double_reviewed_by(self, record_id, reviewer):
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
        """Recompute a record's status from its stages (the rule lives in `studio.model`); a
        double-reviewed record is settled from its reviewers' decisions (`decisions.settle`)."""
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
