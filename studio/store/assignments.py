"""Who reviews which record: the `assignments` table (`studio assign`, docs/team-review.md).

A record without assignments is open to anyone and decided by one person; a record assigned to
two or more is double-reviewed (`studio.store.decisions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from studio.store.records import chunks

if TYPE_CHECKING:
    from studio.store.store import Store


def already_assigned(store: Store, record_ids: Sequence[int]) -> set[int]:
    """Those of `record_ids` that someone is assigned to already."""
    return _ids_among(
        store, "SELECT DISTINCT record_id FROM assignments WHERE record_id", record_ids
    )


def undecided(store: Store, record_ids: Sequence[int]) -> set[int]:
    """Those of `record_ids` still to review (pending or in review): what `studio assign`
    assigns unless told a status."""
    return _ids_among(
        store, "SELECT id FROM records WHERE status IN ('pending', 'in_review') AND id", record_ids
    )


def _ids_among(store: Store, select: str, record_ids: Sequence[int]) -> set[int]:
    """The ids `select … IN (record_ids)` returns, asked in chunks SQLite's limits allow."""
    found: set[int] = set()
    for chunk in chunks(record_ids):
        marks = ",".join("?" * len(chunk))
        found.update(int(rid) for (rid,) in store.conn.execute(f"{select} IN ({marks})", chunk))
    return found


def assign(store: Store, by_record: Mapping[int, Sequence[str]], *, plan: Any) -> int:
    """Write the assignments (`plan`: the call that made them, kept as JSON beside each);
    returns how many rows were new (an existing (record, reviewer) pair is left as it is)."""
    text = orjson.dumps(plan).decode()
    now = store.now()
    with store.transaction() as conn:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO assignments (record_id, reviewer, assigned_at, plan)"
            " VALUES (?, ?, ?, ?)",
            [(rid, name, now, text) for rid, names in by_record.items() for name in names],
        )
        return conn.total_changes - before


def has_assignments(store: Store, reviewer: str) -> bool:
    """Whether `reviewer` has any records assigned (their queue shows those first)."""
    found = store.conn.execute(
        "SELECT 1 FROM assignments WHERE reviewer = ? LIMIT 1", (reviewer,)
    ).fetchone()
    return found is not None


def assign_counts(store: Store) -> dict[str, int]:
    """Records assigned per reviewer."""
    return {
        name: int(n)
        for name, n in store.conn.execute(
            "SELECT reviewer, COUNT(*) FROM assignments GROUP BY reviewer ORDER BY reviewer"
        )
    }
