"""Store operations for the synthesis engine: work queues, stage results, staleness, the LLM cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import xxhash

from studio.cbt.techniques import normalize_technique
from studio.errors import StageChanged as StageChanged  # re-exported: its old home
from studio.model import NEEDS_SYNTHESIS, STAGES, RecordStatus, Stage, StageStatus
from studio.store.events import EventAction
from studio.store.stages import StageView, snapshot, write_stage
from studio.store.store import RecordView, Store


@dataclass(frozen=True, slots=True)
class StageResult:
    """One synthesized stage, ready to commit."""

    text: str
    status: StageStatus = StageStatus.GENERATED
    error: str = ""
    model: str = ""
    prompt_hash: str = ""
    template_version: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One answer to keep in the response cache, under the hash of what was asked."""

    key: str
    backend: str
    model: str
    answer: CachedAnswer


def synth_record_key(seed_id: int, mode: str, attempt: int = 1) -> str:
    return f"synth:{seed_id}:{mode}:{attempt}"


def records_to_synthesize(
    store: Store, *, mode: str, attitudes: Sequence[str], limit: int | None
) -> list[int]:
    """Record ids with work to do, oldest first: existing records with pending / stale / failed
    stages (not rejected), then new records for seeds that have none (created here, committed at
    once, so an interrupted run finds them again instead of making duplicates).
    """
    needs = [s.value for s in NEEDS_SYNTHESIS]
    marks = ",".join("?" * len(needs))
    cap = -1 if limit is None else limit
    # A stage needs work unless an earlier stage blocks the chain (invalid or rejected: those wait
    # for a reviewer to edit or regenerate them).
    ids = [
        row[0]
        for row in store.conn.execute(
            f"SELECT DISTINCT s.record_id FROM stages s JOIN records r ON r.id = s.record_id"
            f" WHERE s.status IN ({marks}) AND r.rejected = 0 AND NOT EXISTS ("
            "   SELECT 1 FROM stages b WHERE b.record_id = s.record_id AND b.position < s.position"
            "   AND b.status IN ('invalid', 'rejected'))"
            # A record with a request out in a batch waits for it (never paid for twice).
            " AND NOT EXISTS (SELECT 1 FROM batch_requests q WHERE q.record_id = s.record_id"
            "   AND q.state = 'in_flight')"
            " ORDER BY s.record_id LIMIT ?",
            (*needs, cap),
        )
    ]
    room = None if limit is None else limit - len(ids)
    if room is None or room > 0:
        seeds = [
            row[0]
            for row in store.conn.execute(
                "SELECT id FROM seeds WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.seed_id = seeds.id)"
                " ORDER BY id LIMIT ?",
                (-1 if room is None else room,),
            )
        ]
        ids.extend(create_records(store, seeds, mode=mode, attitudes=attitudes))
    return ids


def create_records(
    store: Store, seed_ids: Sequence[int], *, mode: str, attitudes: Sequence[str]
) -> list[int]:
    """A new record (four pending stages) per seed; the attitude cycles deterministically."""
    now = store.now()
    created = []
    with store.transaction() as conn:
        for seed_id in seed_ids:
            key = synth_record_key(seed_id, mode)
            cur = conn.execute(
                "INSERT OR IGNORE INTO records (seed_id, dedupe_key, mode, status, attitude, source,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'synth', ?, ?)",
                (
                    seed_id,
                    key,
                    mode,
                    RecordStatus.PENDING.value,
                    attitudes[seed_id % len(attitudes)],
                    now,
                    now,
                ),
            )
            if not cur.rowcount:
                continue
            record_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO stages (record_id, name, position, status, updated_at) VALUES (?, ?, ?, ?, ?)",
                [(record_id, s.value, s.position, StageStatus.PENDING.value, now) for s in STAGES],
            )
            created.append(record_id)
    return created


def _fingerprint(view: StageView) -> tuple[object, ...]:
    return (view.status, view.original_text, view.edited_text, view.note, view.updated_at)


def _check_unchanged(
    store: Store, record_id: int, stage: Stage, expected: StageView | None
) -> StageView:
    current = store.stage(record_id, stage)
    if expected is not None and _fingerprint(current) != _fingerprint(expected):
        raise StageChanged(
            f"{stage.label} of record {record_id} changed while it was being generated "
            f"(now {current.status.value}); nothing was overwritten"
        )
    return current


def save_stage_result(
    store: Store,
    record_id: int,
    stage: Stage,
    result: StageResult,
    *,
    reviewer: str = "",
    action: EventAction | str = EventAction.GENERATE,
    expected: StageView | None = None,
) -> StageView:
    """Commit one synthesized stage and its audit event.

    The new text becomes the stage's original text; a reviewer's earlier edit is cleared (it is
    kept in the audit event). A changed technique updates the record's technique column. With
    `expected` (the stage as it was when generation started), a stage that changed meanwhile is
    left alone and `StageChanged` is raised: a slow answer never overwrites a reviewer's work.
    """
    with store.transaction():
        _write_result(store, record_id, stage, result, reviewer, action, expected)
        store.refresh_status(record_id, reviewer)
        return store.stage(record_id, stage)


def commit_stage(
    store: Store,
    record_id: int,
    stage: Stage,
    result: StageResult,
    *,
    answers: Sequence[CacheEntry] = (),
    reviewer: str = "",
    action: EventAction | str = EventAction.GENERATE,
    expected: StageView | None = None,
) -> RecordView:
    """The engine's one write per finished stage, in one transaction: the answers it paid for
    (`answers`, into the response cache), the stage and its event (as `save_stage_result`), the
    downstream stages made stale; returns the record as committed (the next stage starts from it).

    One commit instead of three, and no re-reads: a stage's SQLite work is most of the engine's
    own CPU per call. A stage that changed meanwhile raises `StageChanged` and is left alone, but
    the answers are still cached (they were paid for: a later run must not ask again).
    """
    changed: StageChanged | None = None
    with store.transaction():
        cache_put_many(store, answers)
        try:
            _write_result(store, record_id, stage, result, reviewer, action, expected)
        except StageChanged as exc:
            changed = exc  # nothing was written for the stage; the answers still commit
        else:
            _mark_stale(store, record_id, stage, reviewer)
            store.refresh_status(record_id, reviewer)
            return store.record(record_id)
    assert changed is not None
    raise changed


def _write_result(
    store: Store,
    record_id: int,
    stage: Stage,
    result: StageResult,
    reviewer: str,
    action: EventAction | str,
    expected: StageView | None,
) -> None:
    """The body of `save_stage_result`, inside the caller's transaction (no status refresh)."""
    conn = store.conn
    before = _check_unchanged(store, record_id, stage, expected)
    write_stage(
        store,
        record_id,
        stage,
        status=result.status,
        original_text=result.text,
        edited_text=None,
        note="",
        error=result.error,
        model=result.model,
        prompt_hash=result.prompt_hash,
        template_version=result.template_version,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        latency_ms=result.latency_ms,
    )
    if stage is Stage.CBT_TECHNIQUE:
        technique = (
            normalize_technique(result.text) if result.status is StageStatus.GENERATED else None
        )
        conn.execute("UPDATE records SET technique = ? WHERE id = ?", (technique or "", record_id))
    store.log_event(
        EventAction(action),
        reviewer=reviewer,
        record_id=record_id,
        stage=stage,
        before=snapshot(before, ("status", "original_text", "edited_text")),
        after={"status": result.status.value, "error": result.error, "model": result.model},
    )


def mark_failed(
    store: Store, record_id: int, stage: Stage, error: str, *, expected: StageView | None = None
) -> None:
    """A stage whose call failed after the last retry; its text (if any) is left alone, and a
    stage that a reviewer changed meanwhile keeps its status (`StageChanged`)."""
    with store.transaction():
        _check_unchanged(store, record_id, stage, expected)
        write_stage(store, record_id, stage, status=StageStatus.FAILED, error=error)
        store.log_event(
            EventAction.GENERATE,
            record_id=record_id,
            stage=stage,
            after={"status": "failed", "error": error},
        )
        store.refresh_status(record_id)


def mark_downstream_stale(
    store: Store, record_id: int, stage: Stage, *, reviewer: str = ""
) -> list[Stage]:
    """After `stage` changed, the stages generated from it are stale (those that have any text)."""
    with store.transaction():
        stale = _mark_stale(store, record_id, stage, reviewer)
        store.refresh_status(record_id, reviewer)
    return stale


def _mark_stale(store: Store, record_id: int, stage: Stage, reviewer: str) -> list[Stage]:
    """The body of `mark_downstream_stale`, inside the caller's transaction (no status refresh).
    One read of the downstream statuses: in a first run they are all pending, and nothing is
    written."""
    later = stage.downstream()
    if not later:
        return []
    marks = ",".join("?" * len(later))
    statuses = dict(
        store.conn.execute(
            f"SELECT name, status FROM stages WHERE record_id = ? AND name IN ({marks})",
            (record_id, *(s.value for s in later)),
        ).fetchall()
    )
    quiet = (StageStatus.PENDING.value, StageStatus.STALE.value)
    stale = [s for s in later if statuses.get(s.value, StageStatus.PENDING.value) not in quiet]
    for s in stale:
        write_stage(
            store,
            record_id,
            s,
            status=StageStatus.STALE,
            error=f"{stage.label} changed after this was generated",
        )
    if stale:
        store.log_event(
            EventAction.STALE,
            reviewer=reviewer,
            record_id=record_id,
            stage=stage,
            after={"stale": [s.value for s in stale]},
        )
    return stale


def set_attitude(store: Store, record_id: int, attitude: str) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE records SET attitude = ? WHERE id = ?", (attitude, record_id))


# -- the response cache --------------------------------------------------------------------


def cache_get(store: Store, key: str) -> CachedAnswer | None:
    row = store.conn.execute(
        "SELECT response, tokens_in, tokens_out FROM llm_cache WHERE key = ?", (key,)
    ).fetchone()
    return CachedAnswer(row[0], row[1], row[2]) if row else None


def cache_put(store: Store, key: str, backend: str, model: str, answer: CachedAnswer) -> None:
    cache_put_many(store, [CacheEntry(key, backend, model, answer)])


def cache_put_many(store: Store, entries: Sequence[CacheEntry]) -> None:
    """Cache several answers in one statement (joins the caller's transaction, or opens one)."""
    if not entries:
        return
    now = store.now()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO llm_cache (key, backend, model, response, tokens_in, tokens_out,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.key,
                    e.backend,
                    e.model,
                    e.answer.text,
                    e.answer.tokens_in,
                    e.answer.tokens_out,
                    now,
                )
                for e in entries
            ],
        )


def cache_key(parameters: dict[str, Any], messages: Any, schema: Any) -> str:
    return xxhash.xxh3_128_hexdigest(
        orjson.dumps([parameters, messages, schema], option=orjson.OPT_SORT_KEYS)
    )
