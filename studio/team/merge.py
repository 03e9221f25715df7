"""`studio merge OTHER.db`: bring another reviewer's copy of the database into this one.

Reviewers who work on their own machines each keep a copy of the same database. Merging reads
the other copy (through a consistent snapshot taken with SQLite's backup API, so a copy that is
open elsewhere is read safely and never changed) and adds what this copy lacks:

- seeds, matched by `content_hash`; records, matched by `dedupe_key` (a synthesized record's key
  names its seed by id, so it is translated through the seed's content hash); a record this copy
  lacks arrives with its four stages;
- each reviewer's decisions, matched by (record, stage, reviewer); clinician ratings likewise;
- assignments and adjudications;
- audit events, matched by a content hash of what they say (time, reviewer, action, record key,
  stage, before, after, detail), with their undo and accept-all links re-pointed.

Nothing is duplicated and nothing is overwritten: when the same reviewer's decision differs
between the copies, the newer one is current and the older one stays in the audit log; when
*different* reviewers decided a record differently, the record becomes double-reviewed (both are
assigned) and `settle` sends it to adjudication. Merging the same copy twice changes nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash

from studio.errors import BadInputError
from studio.store import Store
from studio.store.decisions import (
    RECORD,
    assigned_reviewers,
    decisions_of,
    settle,
)
from studio.store.records import chunks
from studio.store.stages import snapshot, write_stage


@dataclass(slots=True)
class MergeReport:
    """What a merge brought in; all zeros when there was nothing new."""

    seeds: int = 0
    records: int = 0
    decisions: int = 0
    decisions_replaced: int = 0
    ratings: int = 0
    assignments: int = 0
    adjudications: int = 0
    events: int = 0
    disputed: list[int] = field(default_factory=list)
    """Records the merge made double-reviewed because two reviewers decided them differently."""
    conflicting_texts: list[int] = field(default_factory=list)
    """Records whose generated text differs between the copies: this copy's text is kept, and the
    other copy's decisions on those stages are not brought in (they judged another text)."""

    @property
    def changed(self) -> bool:
        return any(
            (
                self.seeds,
                self.records,
                self.decisions,
                self.decisions_replaced,
                self.ratings,
                self.assignments,
                self.adjudications,
                self.events,
            )
        )

    def lines(self) -> list[str]:
        if not self.changed:
            return ["nothing new: this copy already has everything the other one has"]
        out = [
            f"{self.records} records ({self.seeds} seeds), {self.decisions} decisions"
            f" ({self.decisions_replaced} replaced by a newer one of the same reviewer),"
            f" {self.ratings} ratings, {self.assignments} assignments,"
            f" {self.adjudications} adjudications, {self.events} audit events"
        ]
        if self.disputed:
            out.append(
                f"{len(self.disputed)} records decided differently by different reviewers:"
                " they wait for adjudication"
            )
        if self.conflicting_texts:
            shown = ", ".join(str(i) for i in self.conflicting_texts[:10])
            more = "…" if len(self.conflicting_texts) > 10 else ""
            out.append(
                f"{len(self.conflicting_texts)} records have different generated text in the"
                f" two copies (records {shown}{more}): this copy's text is kept, and the other"
                " copy's decisions on those stages are left out"
            )
        return out


def merge_database(
    store: Store, other: Path, *, progress: Callable[[str], None] | None = None
) -> MergeReport:
    """Merge the database at `other` into `store` (one transaction: all of it or nothing)."""
    other = other.expanduser()
    if not other.is_file():
        raise BadInputError(f"{other}: no such database file")
    if _same_file(store.path, other):
        raise BadInputError(f"{other} is this database; merge takes another reviewer's copy")
    say = progress or (lambda _: None)
    with _snapshot(other) as theirs:
        report = MergeReport()
        with store.transaction() as conn:
            say("seeds")
            seeds = _merge_seeds(conn, theirs, report, store.now())
            say("records")
            records, texts_differ = _merge_records(conn, theirs, seeds, report)
            say("decisions")
            touched = _merge_decisions(conn, theirs, records, texts_differ, report)
            _merge_ratings(conn, theirs, records, report)
            touched |= _merge_assignments(conn, theirs, records, report)
            touched |= _merge_adjudications(conn, theirs, records, report)
            say("audit log")
            _merge_events(conn, theirs, records, report)
            touched |= _dispute_different_reviewers(conn, records.values(), report, store.now())
            say("final states")
            for record_id in sorted(touched):
                if len(assigned_reviewers(store, record_id)) < 2:
                    _follow_newest(store, record_id)
                settle(store, record_id)
        report.conflicting_texts = sorted(texts_differ)
        return report


# -- reading the other copy --------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A private, up-to-date copy of the other database (migrated to this version's schema), so
    the original is never written, even when it is older or open in another process."""
    with tempfile.TemporaryDirectory(prefix="studio-merge-") as folder:
        copy = Path(folder) / "other.db"
        try:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                source.execute("SELECT count(*) FROM sqlite_master").fetchone()
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.DatabaseError as exc:
            raise BadInputError(f"{path}: not a CBT Studio database ({exc})") from exc
        try:
            migrated = Store(copy)
        except sqlite3.DatabaseError as exc:
            raise BadInputError(f"{path}: not a CBT Studio database ({exc})") from exc
        try:
            if not _table_exists(migrated.conn, "records"):
                raise BadInputError(f"{path}: not a CBT Studio database (no records table)")
            yield migrated.conn
        finally:
            migrated.close()


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        is not None
    )


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.resolve().samefile(second.resolve())
    except OSError:
        return False


# -- seeds and records -------------------------------------------------------------------------

_SEED_COLUMNS = ("content_hash", "persona", "thought", "patterns", "reframes", "source")
_RECORD_COLUMNS = (
    "mode",
    "attempt",
    "status",
    "rejected",
    "attitude",
    "technique",
    "note",
    "source",
    "last_reviewer",
    "created_at",
    "updated_at",
)
_STAGE_COLUMNS = (
    "name",
    "position",
    "status",
    "original_text",
    "edited_text",
    "note",
    "error",
    "model",
    "prompt_hash",
    "template_version",
    "tokens_in",
    "tokens_out",
    "latency_ms",
    "updated_at",
)


def _merge_seeds(
    conn: sqlite3.Connection, theirs: sqlite3.Connection, report: MergeReport, now: str
) -> dict[int, int]:
    """Their seed id → ours, adding the seeds this copy lacks."""
    ours = dict(conn.execute("SELECT content_hash, id FROM seeds"))
    mapping: dict[int, int] = {}
    names = ", ".join(_SEED_COLUMNS)
    for their_id, *values in theirs.execute(f"SELECT id, {names} FROM seeds ORDER BY id"):
        found = ours.get(values[0])
        if found is None:
            cur = conn.execute(
                f"INSERT INTO seeds ({names}, created_at) VALUES"
                f" ({', '.join('?' * len(values))}, ?)",
                (*values, now),
            )
            found = int(cur.lastrowid or 0)
            report.seeds += 1
        mapping[their_id] = found
    return mapping


def translate_key(key: str, seeds: dict[int, int]) -> str:
    """A record's `dedupe_key` in this copy's terms: `synth:<seed id>:…` names a seed by its id,
    which differs between copies; every other key is a content hash and stays as it is."""
    parts = key.split(":")
    if parts[0] == "synth" and len(parts) >= 3 and parts[1].isdigit():
        mapped = seeds.get(int(parts[1]))
        if mapped is not None:
            return ":".join(["synth", str(mapped), *parts[2:]])
    return key


def _merge_records(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    seeds: dict[int, int],
    report: MergeReport,
) -> tuple[dict[int, int], set[int]]:
    """Their record id → ours (adding the records this copy lacks, with their stages), and the
    ids (ours) of records whose generated texts differ between the copies."""
    ours = dict(conn.execute("SELECT dedupe_key, id FROM records"))
    mapping: dict[int, int] = {}
    differ: set[int] = set()
    names = ", ".join(_RECORD_COLUMNS)
    stage_names = ", ".join(_STAGE_COLUMNS)
    for their_id, seed_id, key, *values in theirs.execute(
        f"SELECT id, seed_id, dedupe_key, {names} FROM records ORDER BY id"
    ):
        if seed_id not in seeds:
            continue
        key = translate_key(key, seeds)
        found = ours.get(key)
        their_stages = theirs.execute(
            f"SELECT {stage_names} FROM stages WHERE record_id = ? ORDER BY position",
            (their_id,),
        ).fetchall()
        if found is None:
            cur = conn.execute(
                f"INSERT INTO records (seed_id, dedupe_key, {names}) VALUES"
                f" (?, ?, {', '.join('?' * len(values))})",
                (seeds[seed_id], key, *values),
            )
            found = int(cur.lastrowid or 0)
            conn.executemany(
                f"INSERT INTO stages (record_id, {stage_names}) VALUES"
                f" (?, {', '.join('?' * len(_STAGE_COLUMNS))})",
                [(found, *row) for row in their_stages],
            )
            ours[key] = found
            report.records += 1
        else:
            mine = dict(
                conn.execute(
                    "SELECT name, original_text FROM stages WHERE record_id = ?", (found,)
                ).fetchall()
            )
            if any(
                mine.get(row[0]) not in (None, row[3]) and row[3] is not None
                for row in their_stages
            ):
                differ.add(found)
        mapping[their_id] = found
    return mapping, differ


# -- decisions, ratings, assignments, adjudications --------------------------------------------

_DECISION_COLUMNS = ("status", "edited_text", "note", "guideline", "decided_at")


def _merge_decisions(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    records: dict[int, int],
    texts_differ: set[int],
    report: MergeReport,
) -> set[int]:
    touched: set[int] = set()
    names = ", ".join(_DECISION_COLUMNS)
    for their_record, stage, reviewer, *values in theirs.execute(
        f"SELECT record_id, stage, reviewer, {names} FROM decisions ORDER BY record_id"
    ):
        record_id = records.get(their_record)
        if record_id is None or (record_id in texts_differ and stage != RECORD):
            continue
        mine = conn.execute(
            f"SELECT {names} FROM decisions WHERE record_id = ? AND stage = ? AND reviewer = ?",
            (record_id, stage, reviewer),
        ).fetchone()
        if mine is None:
            conn.execute(
                f"INSERT INTO decisions (record_id, stage, reviewer, {names})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, stage, reviewer, *values),
            )
            report.decisions += 1
        elif tuple(mine) != tuple(values) and values[-1] > mine[-1]:
            conn.execute(
                f"UPDATE decisions SET {', '.join(f'{n} = ?' for n in _DECISION_COLUMNS)}"
                " WHERE record_id = ? AND stage = ? AND reviewer = ?",
                (*values, record_id, stage, reviewer),
            )
            report.decisions_replaced += 1
        else:
            continue
        touched.add(record_id)
    return touched


def _merge_ratings(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    records: dict[int, int],
    report: MergeReport,
) -> None:
    for their_record, item, reviewer, value, text_hash, rated_at in theirs.execute(
        "SELECT record_id, item, reviewer, value, text_hash, rated_at FROM clinician_ratings"
    ):
        record_id = records.get(their_record)
        if record_id is None:
            continue
        cur = conn.execute(
            "INSERT INTO clinician_ratings (record_id, item, reviewer, value, text_hash, rated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, item, reviewer) DO UPDATE SET"
            " value = excluded.value, text_hash = excluded.text_hash,"
            " rated_at = excluded.rated_at WHERE excluded.rated_at > clinician_ratings.rated_at",
            (record_id, item, reviewer, value, text_hash, rated_at),
        )
        report.ratings += cur.rowcount


def _merge_assignments(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    records: dict[int, int],
    report: MergeReport,
) -> set[int]:
    touched: set[int] = set()
    for their_record, reviewer, assigned_at, plan in theirs.execute(
        "SELECT record_id, reviewer, assigned_at, plan FROM assignments"
    ):
        record_id = records.get(their_record)
        if record_id is None:
            continue
        cur = conn.execute(
            "INSERT OR IGNORE INTO assignments (record_id, reviewer, assigned_at, plan)"
            " VALUES (?, ?, ?, ?)",
            (record_id, reviewer, assigned_at, plan),
        )
        if cur.rowcount:
            report.assignments += 1
            touched.add(record_id)
    return touched


_ADJUDICATION_COLUMNS = (
    "adjudicator",
    "outcome",
    "picked",
    "status",
    "edited_text",
    "note",
    "guideline",
    "decided_at",
)


def _merge_adjudications(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    records: dict[int, int],
    report: MergeReport,
) -> set[int]:
    touched: set[int] = set()
    names = ", ".join(_ADJUDICATION_COLUMNS)
    updates = ", ".join(f"{n} = excluded.{n}" for n in _ADJUDICATION_COLUMNS)
    for their_record, stage, *values in theirs.execute(
        f"SELECT record_id, stage, {names} FROM adjudications"
    ):
        record_id = records.get(their_record)
        if record_id is None:
            continue
        cur = conn.execute(
            f"INSERT INTO adjudications (record_id, stage, {names}) VALUES"
            f" (?, ?, {', '.join('?' * len(values))}) ON CONFLICT (record_id, stage) DO UPDATE"
            f" SET {updates} WHERE excluded.decided_at > adjudications.decided_at",
            (record_id, stage, *values),
        )
        if cur.rowcount:
            report.adjudications += 1
            touched.add(record_id)
    return touched


def _dispute_different_reviewers(
    conn: sqlite3.Connection, record_ids: Any, report: MergeReport, now: str
) -> set[int]:
    """Records that nobody assigned but that two reviewers decided differently (each in their own
    copy) become double-reviewed, so `settle` sends them to adjudication instead of letting one
    reviewer's decision silently win."""
    ids = sorted(set(record_ids))
    touched: set[int] = set()
    for chunk in chunks(ids):
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT d.record_id, d.stage, d.reviewer, d.status, d.edited_text FROM decisions d"
            f" WHERE d.record_id IN ({marks}) AND NOT EXISTS"
            " (SELECT 1 FROM assignments a WHERE a.record_id = d.record_id)",
            chunk,
        ).fetchall()
        by_record: dict[int, dict[str, set[tuple[Any, ...]]]] = {}
        reviewers: dict[int, set[str]] = {}
        for record_id, stage, reviewer, status, text in rows:
            by_record.setdefault(record_id, {}).setdefault(stage, set()).add((status, text))
            reviewers.setdefault(record_id, set()).add(reviewer)
        plan = orjson.dumps({"merge": "decided differently in two copies"}).decode()
        for record_id, stages in by_record.items():
            if len(reviewers[record_id]) < 2 or all(len(v) == 1 for v in stages.values()):
                continue
            conn.executemany(
                "INSERT OR IGNORE INTO assignments (record_id, reviewer, assigned_at, plan)"
                " VALUES (?, ?, ?, ?)",
                [(record_id, r, now, plan) for r in sorted(reviewers[record_id])],
            )
            report.disputed.append(record_id)
            touched.add(record_id)
    return touched


def _follow_newest(store: Store, record_id: int) -> None:
    """A record reviewed by one person at a time (no double assignment): as on a shared
    database, each stage follows the newest decision made on it, wherever it was made."""
    newest: dict[Any, Any] = {}
    for found in decisions_of(store, record_id):
        if found.stage not in newest or found.decided_at > newest[found.stage].decided_at:
            newest[found.stage] = found
    conn = store.conn
    for stage, found in newest.items():
        if stage is None:
            continue
        view = store.stage(record_id, stage)
        if found.decided_at < view.updated_at or snapshot(view) == found.snapshot():
            continue
        write_stage(
            store,
            record_id,
            stage,
            touch=False,
            status=found.status,
            edited_text=found.edited_text,
            note=found.note,
            updated_at=found.decided_at,
        )
        if found.edited_text is not None and stage.value == "cbt_technique":
            conn.execute(
                "UPDATE records SET technique = ? WHERE id = ?", (found.edited_text, record_id)
            )
    rejection = newest.get(None)
    if rejection is not None and rejection.status.value == "rejected":
        conn.execute(
            "UPDATE records SET rejected = 1, note = ? WHERE id = ?", (rejection.note, record_id)
        )


# -- the audit log -----------------------------------------------------------------------------

_EVENT_COLUMNS = ("ts", "reviewer", "action", "stage", "before", "after", "detail", "guideline")


def _event_hash(record_key: str | None, row: Sequence[Any]) -> str:
    return xxhash.xxh3_128_hexdigest(orjson.dumps([record_key, *row]))


def _merge_events(
    conn: sqlite3.Connection,
    theirs: sqlite3.Connection,
    records: dict[int, int],
    report: MergeReport,
) -> None:
    names = ", ".join(f"e.{n}" for n in _EVENT_COLUMNS)
    keys = dict(conn.execute("SELECT id, dedupe_key FROM records"))
    seen: dict[str, int] = {}
    for event_id, record_id, *row in conn.execute(
        f"SELECT e.id, e.record_id, {names} FROM events e"
    ):
        seen[_event_hash(keys.get(record_id), row)] = event_id
    their_ids: dict[int, int] = {}
    for their_event, their_record, group, undoes, *row in theirs.execute(
        f"SELECT e.id, e.record_id, e.accept_group, e.undoes, {names} FROM events e ORDER BY e.id"
    ):
        record_id = records.get(their_record) if their_record is not None else None
        if their_record is not None and record_id is None:
            continue
        digest = _event_hash(keys.get(record_id) if record_id is not None else None, row)
        found = seen.get(digest)
        if found is None:
            # Under the write lock the next event id is MAX(id) + 1: the first event of an
            # accept-all names itself, and is written with that name (the log is append-only).
            next_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
            their_ids[their_event] = next_id
            conn.execute(
                f"INSERT INTO events (id, record_id, accept_group, undoes,"
                f" {', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, ?,"
                f" {', '.join('?' * len(_EVENT_COLUMNS))})",
                (
                    next_id,
                    record_id,
                    their_ids.get(group) if group is not None else None,
                    their_ids.get(undoes) if undoes is not None else None,
                    *row,
                ),
            )
            found = next_id
            seen[digest] = found
            report.events += 1
        their_ids[their_event] = found
