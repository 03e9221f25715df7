"""Store operations for the judge: its scores, the clinicians' ratings, and what is left to judge.

A score belongs to the exact dialogue text it read (`text_hash`). Whether it is current is
decided in SQL by hashing the dialogue's current text (edited text wins) with `studio_text_hash`,
a deterministic function registered on the connection, so an edit, a regeneration or an undo
makes a score stale, or current again, without any bookkeeping in the paths that change texts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import xxhash

from studio.cbt.ctrs import CTRS_ITEMS, RATED_ITEMS, valid_score
from studio.errors import BadInputError
from studio.errors import RatingChanged as RatingChanged  # re-exported: its old home
from studio.model import Stage
from studio.store.events import EventAction
from studio.store.records import chunks
from studio.store.store import Store

SCORED = "scored"
FAILED = "failed"
RATE_ACTION = EventAction.RATE

_DIALOGUE_TEXT = "COALESCE(d.edited_text, d.original_text, '')"


def text_hash(text: str) -> str:
    """The hash a score keeps of the dialogue text it read."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def _with_hash(store: Store) -> sqlite3.Connection:
    """The store's connection with `studio_text_hash` registered (cheap to repeat)."""
    store.conn.create_function("studio_text_hash", 1, _sql_hash, deterministic=True)
    return store.conn


def _sql_hash(text: str | None) -> str:
    return text_hash(text or "")


#: Per record with dialogue text: the newest `scored` judgement of its current text.
_CURRENT = (
    "SELECT j.record_id AS record_id, MAX(j.id) AS id FROM judge_scores j"
    " JOIN stages d ON d.record_id = j.record_id AND d.name = 'dialogue'"
    f" WHERE j.status = 'scored' AND j.text_hash = studio_text_hash({_DIALOGUE_TEXT})"
    " GROUP BY j.record_id"
)


@dataclass(frozen=True, slots=True)
class ItemScore:
    score: int
    explanation: str


@dataclass(frozen=True, slots=True)
class SafetyFlag:
    kind: str
    turn: int
    quote: str
    counselor_response: str = ""
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "turn": self.turn,
            "quote": self.quote,
            "counselor_response": self.counselor_response,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """One judgement, ready to store: `scored` with its items, or `failed` with the raw answer."""

    status: str
    items: dict[str, ItemScore] = field(default_factory=dict)
    plan_steps: tuple[int, ...] = ()
    flags: tuple[SafetyFlag, ...] = ()
    raw: str = ""
    error: str = ""
    model: str = ""
    template_version: str = ""
    prompt_hash: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0

    @property
    def ctrs_mean(self) -> float | None:
        scores = [self.items[i].score for i in CTRS_ITEMS if i in self.items]
        return sum(scores) / len(scores) if len(scores) == len(CTRS_ITEMS) else None


@dataclass(frozen=True, slots=True)
class StoredJudgement:
    """A stored judgement of a record's dialogue."""

    id: int
    record_id: int
    result: JudgeResult
    text_hash: str
    created_at: str
    current: bool
    """False when the dialogue changed since (or the judgement failed)."""

    @property
    def flagged(self) -> bool:
        return bool(self.result.flags)


def save_judgement(store: Store, record_id: int, judged_hash: str, result: JudgeResult) -> int:
    """Commit one judgement (a failed one too, with its raw answer)."""
    items = {k: {"score": v.score, "explanation": v.explanation} for k, v in result.items.items()}
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO judge_scores (record_id, text_hash, status, items, ctrs_mean, fidelity,"
            " plan_steps, flags, flagged, raw, error, model, template_version, prompt_hash,"
            " tokens_in, tokens_out, latency_ms, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                judged_hash,
                result.status,
                orjson.dumps(items).decode(),
                result.ctrs_mean,
                result.items["fidelity"].score if "fidelity" in result.items else None,
                orjson.dumps(list(result.plan_steps)).decode(),
                orjson.dumps([f.to_json() for f in result.flags]).decode(),
                int(bool(result.flags)),
                result.raw,
                result.error,
                result.model,
                result.template_version,
                result.prompt_hash,
                result.tokens_in,
                result.tokens_out,
                result.latency_ms,
                store.now(),
            ),
        )
        return int(cur.lastrowid or 0)


def records_to_judge(store: Store, *, limit: int | None = None, rejudge: bool = False) -> list[int]:
    """Records whose dialogue has text and (unless `rejudge`) no current score, oldest first."""
    conn = _with_hash(store)
    sql = (
        "SELECT d.record_id FROM stages d WHERE d.name = 'dialogue'"
        f" AND TRIM({_DIALOGUE_TEXT}) != ''"
    )
    if not rejudge:
        sql += f" AND d.record_id NOT IN (SELECT record_id FROM ({_CURRENT}))"
    sql += " ORDER BY d.record_id LIMIT ?"
    return [int(r[0]) for r in conn.execute(sql, (-1 if limit is None else limit,))]


_SCORE_COLUMNS = (
    "j.id, j.record_id, j.status, j.items, j.plan_steps, j.flags, j.raw, j.error, j.model,"
    " j.template_version, j.prompt_hash, j.tokens_in, j.tokens_out, j.latency_ms, j.text_hash,"
    " j.created_at"
)


def _judgement(row: Sequence[Any], current_hash: str) -> StoredJudgement:
    items = {
        k: ItemScore(int(v["score"]), str(v["explanation"]))
        for k, v in orjson.loads(row[3]).items()
    }
    flags = tuple(SafetyFlag(**f) for f in orjson.loads(row[5]))
    result = JudgeResult(
        status=row[2],
        items=items,
        plan_steps=tuple(orjson.loads(row[4])),
        flags=flags,
        raw=row[6],
        error=row[7],
        model=row[8],
        template_version=row[9],
        prompt_hash=row[10],
        tokens_in=row[11],
        tokens_out=row[12],
        latency_ms=row[13],
    )
    current = row[2] == SCORED and row[14] == current_hash
    return StoredJudgement(row[0], row[1], result, row[14], row[15], current)


def dialogue_hash(store: Store, record_id: int) -> str:
    row = store.conn.execute(
        f"SELECT {_DIALOGUE_TEXT} FROM stages d WHERE d.record_id = ? AND d.name = ?",
        (record_id, Stage.DIALOGUE.value),
    ).fetchone()
    return text_hash(row[0] if row else "")


def latest_judgement(store: Store, record_id: int) -> StoredJudgement | None:
    """What the review screen shows: the current judgement if there is one, else the newest
    (stale or failed) one, marked as such."""
    current_hash = dialogue_hash(store, record_id)
    rows = store.conn.execute(
        f"SELECT {_SCORE_COLUMNS} FROM judge_scores j WHERE j.record_id = ? ORDER BY j.id DESC",
        (record_id,),
    ).fetchall()
    if not rows:
        return None
    for row in rows:
        if row[2] == SCORED and row[14] == current_hash:
            return _judgement(row, current_hash)
    return _judgement(rows[0], current_hash)


@dataclass(frozen=True, slots=True)
class CurrentScore:
    """The queue's view of a record's current judgement."""

    ctrs_mean: float | None
    flagged: bool


def current_scores(store: Store, record_ids: Sequence[int]) -> dict[int, CurrentScore]:
    """Current judgements of the given records (those without one are left out)."""
    conn = _with_hash(store)
    found: dict[int, CurrentScore] = {}
    for chunk in chunks(record_ids):
        marks = ",".join("?" * len(chunk))
        for record_id, mean, flagged in conn.execute(
            "SELECT j.record_id, j.ctrs_mean, j.flagged FROM judge_scores j"
            " JOIN stages d ON d.record_id = j.record_id AND d.name = 'dialogue'"
            f" WHERE j.record_id IN ({marks}) AND j.status = 'scored'"
            f" AND j.text_hash = studio_text_hash({_DIALOGUE_TEXT}) ORDER BY j.id",
            chunk,
        ):
            found[int(record_id)] = CurrentScore(mean, bool(flagged))
    return found


def current_scores_sql() -> str:
    """A subquery (record_id, ctrs_mean, flagged) of every current judgement, for queue queries;
    run it on a connection that went through `register_hash`."""
    return (
        f"SELECT j.record_id, j.ctrs_mean, j.flagged FROM judge_scores j JOIN ({_CURRENT}) c"
        " ON c.id = j.id"
    )


def register_hash(store: Store) -> None:
    _with_hash(store)


def judged_counts(store: Store) -> dict[str, int]:
    """`studio stats --json`'s `judged`: records with a current score, how many of them are
    flagged, and records a clinician rated."""
    conn = _with_hash(store)
    records, flagged = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(j.flagged), 0) FROM ({current_scores_sql()}) j"
    ).fetchone()
    rated = conn.execute("SELECT COUNT(DISTINCT record_id) FROM clinician_ratings").fetchone()[0]
    return {"records": int(records), "flagged": int(flagged), "rated_by_clinicians": int(rated)}


# -- clinicians' ratings ------------------------------------------------------------------------


def rate(store: Store, record_id: int, item: str, value: int, *, reviewer: str) -> None:
    """A clinician's 0-6 rating of one item of a record, audited (a `rate` event with before and
    after) and undoable like every decision."""
    if item not in RATED_ITEMS:
        raise BadInputError(f"unknown item {item!r}; expected one of {', '.join(RATED_ITEMS)}")
    if not valid_score(value):
        raise BadInputError(f"a rating of {item} is an integer from 0 to 6, not {value!r}")
    if not reviewer:
        raise BadInputError("a rating needs the reviewer's name")
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT value FROM clinician_ratings WHERE record_id = ? AND item = ? AND reviewer = ?",
            (record_id, item, reviewer),
        ).fetchone()
        conn.execute(
            "INSERT INTO clinician_ratings (record_id, item, reviewer, value, text_hash, rated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, item, reviewer) DO UPDATE SET"
            " value = excluded.value, text_hash = excluded.text_hash, rated_at = excluded.rated_at",
            (record_id, item, reviewer, value, dialogue_hash(store, record_id), store.now()),
        )
        store.log_event(
            RATE_ACTION,
            reviewer=reviewer,
            record_id=record_id,
            stage=Stage.DIALOGUE,
            before={"item": item, "value": None if row is None else int(row[0])},
            after={"item": item, "value": value},
        )


def revert_rating(
    store: Store, record_id: int, before: dict[str, Any], after: dict[str, Any], reviewer: str
) -> None:
    """Put a rating back to what it was before a `rate` event (inside the caller's transaction);
    the caller logs the undo event."""
    item = str(after["item"])
    row = store.conn.execute(
        "SELECT value FROM clinician_ratings WHERE record_id = ? AND item = ? AND reviewer = ?",
        (record_id, item, reviewer),
    ).fetchone()
    if row is None or int(row[0]) != after.get("value"):
        raise RatingChanged(f"the {item} rating of record {record_id} changed since")
    old = before.get("value")
    if old is None:
        store.conn.execute(
            "DELETE FROM clinician_ratings WHERE record_id = ? AND item = ? AND reviewer = ?",
            (record_id, item, reviewer),
        )
    else:
        store.conn.execute(
            "UPDATE clinician_ratings SET value = ?, rated_at = ?"
            " WHERE record_id = ? AND item = ? AND reviewer = ?",
            (int(old), store.now(), record_id, item, reviewer),
        )


def ratings(store: Store, record_id: int, reviewer: str) -> dict[str, int]:
    return {
        str(item): int(value)
        for item, value in store.conn.execute(
            "SELECT item, value FROM clinician_ratings WHERE record_id = ? AND reviewer = ?",
            (record_id, reviewer),
        )
    }


@dataclass(frozen=True, slots=True)
class RatedPair:
    """One item of one record scored by both the judge and a clinician, on the same text."""

    record_id: int
    item: str
    judge: int
    clinician: int
    reviewer: str


def rated_pairs(store: Store) -> list[RatedPair]:
    """Judge and clinician scores of the same item of the same dialogue text: the clinician's
    rating paired with the newest scored judgement of the text they rated."""
    pairs: list[RatedPair] = []
    rows = store.conn.execute(
        "SELECT c.record_id, c.item, c.value, c.reviewer, j.items FROM clinician_ratings c"
        " JOIN judge_scores j ON j.id = (SELECT MAX(id) FROM judge_scores WHERE"
        " record_id = c.record_id AND text_hash = c.text_hash AND status = 'scored')"
        " ORDER BY c.record_id, c.item, c.reviewer"
    )
    for record_id, item, value, reviewer, items in rows:
        scored = orjson.loads(items).get(item)
        if scored is not None:
            pairs.append(RatedPair(record_id, item, int(scored["score"]), int(value), reviewer))
    return pairs


def judged_by_decision(store: Store) -> list[tuple[dict[str, int], bool]]:
    """Current judge scores of records a clinician accepted (True) or rejected (False)."""
    conn = _with_hash(store)
    found = []
    for items, status in conn.execute(
        f"SELECT j.items, r.status FROM judge_scores j JOIN ({_CURRENT}) c ON c.id = j.id"
        " JOIN records r ON r.id = j.record_id WHERE r.status IN ('accepted', 'rejected')"
        " ORDER BY j.record_id"
    ):
        scores = {k: int(v["score"]) for k, v in orjson.loads(items).items()}
        found.append((scores, status == "accepted"))
    return found
