"""Who reviews which record: the `assignments` table (`studio assign`, docs/team-review.md).

A record without assignments is open to anyone and decided by one person; a record assigned to
two or more is double-reviewed (`studio.store.decisions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from studio.store.store import Store


def already_assigned(store: Store, record_ids: Sequence[int]) -> set[int]:
    """Those of `record_ids` that someone is assigned to already."""
    found: set[int] = set()
    for start in range(0, len(record_ids), 900):
        chunk = record_ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        found.update(
            int(rid)
            for (rid,) in store.conn.execute(
                f"SELECT DISTINCT record_id FROM assignments WHERE record_id IN ({marks})", chunk
            )
        )
    return found


def undecided(store: Store, record_ids: Sequence[int]) -> set[int]:
    """Those of `record_ids` still to review (pending or in review): what `studio assign`
    assigns unless told a status."""
    found: set[int] = set()
    for start in range(0, len(record_ids), 900):
        chunk = record_ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        found.update(
            int(rid)
            for (rid,) in store.conn.execute(
                f"SELECT id FROM records WHERE id IN ({marks})"
                " AND status IN ('pending', 'in_review')",
                chunk,
            )
        )
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
