"""Store operations for `studio synth --balance`: how many records each technique has, and the
ranking behind each balanced choice."""

from __future__ import annotations

import orjson

from studio.cbt.techniques import TECHNIQUES
from studio.store.store import Store


def technique_totals(store: Store) -> dict[str, int]:
    """Records per technique (of the twelve), rejected records left out: they will not be used."""
    found = dict(
        store.conn.execute(
            "SELECT technique, COUNT(*) FROM records WHERE rejected = 0 AND technique != ''"
            " GROUP BY technique"
        ).fetchall()
    )
    return {t: int(found.get(t, 0)) for t in TECHNIQUES}


def save_technique_choice(
    store: Store, record_id: int, ranking: tuple[str, ...], chosen: str
) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO technique_choices (record_id, ranking, chosen, created_at)"
            " VALUES (?, ?, ?, ?)",
            (record_id, orjson.dumps(list(ranking)).decode(), chosen, store.now()),
        )


def technique_choice(store: Store, record_id: int) -> tuple[tuple[str, ...], str] | None:
    row = store.conn.execute(
        "SELECT ranking, chosen FROM technique_choices WHERE record_id = ?", (record_id,)
    ).fetchone()
    return None if row is None else (tuple(orjson.loads(row[0])), str(row[1]))
