"""Store reads for `studio export`: accepted records as flat rows, streamed by one SELECT.

`Store.accepted_records` builds a `RecordView` per record (a `Seed`, a `StageView` per stage,
a second query per batch of 500); an export of 100k records needs only the current text of some
stages, so it reads them here in one pass (measured in docs/benchmarks.md, "Export"). The
current text is `StageView.text`: the reviewer's edit wins, else the original, else ''. Call
inside `Store.read_snapshot` when several reads must see one state of the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import orjson

from studio.model import RecordStatus, Seed, Stage
from studio.store.store import Store


class AcceptedRow(NamedTuple):
    """One accepted record, flat: what an export reads of it."""

    id: int
    seed: Seed
    attitude: str
    note: str
    """The reviewer's note on the whole record."""
    texts: tuple[str | None, ...]
    """The current text of each stage asked for, in that order; None: the record has no such
    stage."""
    notes: tuple[str | None, ...]
    """With `notes=True`, the reviewer's note of each stage asked for (None: no such stage)."""


def accepted_rows(
    store: Store, stages: Sequence[Stage], *, notes: bool = False
) -> Iterator[AcceptedRow]:
    """Accepted records in id order with the current texts of `stages` (and their notes)."""
    joins = "".join(
        f" LEFT JOIN stages t{n} ON t{n}.record_id = r.id AND t{n}.name = ?"
        for n in range(len(stages))
    )
    texts = [
        f"CASE WHEN t{n}.id IS NULL THEN NULL"
        f" ELSE coalesce(t{n}.edited_text, t{n}.original_text, '') END"
        for n in range(len(stages))
    ]
    stage_notes = [f"t{n}.note" for n in range(len(stages))] if notes else []
    sql = (
        "SELECT r.id, s.persona, s.thought, s.patterns, s.reframes, r.attitude, r.note"
        + "".join(f", {column}" for column in (*texts, *stage_notes))
        + " FROM records r JOIN seeds s ON s.id = r.seed_id"
        + joins
        + " WHERE r.status = ? ORDER BY r.id"
    )
    params = (*(stage.value for stage in stages), RecordStatus.ACCEPTED.value)
    count = len(stages)
    for row in store.conn.execute(sql, params):
        seed = Seed(
            persona=row[1],
            thought=row[2],
            patterns=tuple(orjson.loads(row[3])),
            reframes=tuple(orjson.loads(row[4])),
        )
        yield AcceptedRow(
            row[0], seed, row[5], row[6], row[7 : 7 + count], row[7 + count : 7 + 2 * count]
        )


def accepted_seed_keys(store: Store) -> list[str]:
    """The seed key (`Seed.content_hash`) of every accepted record, in id order."""
    sql = (
        "SELECT s.persona, s.thought, s.patterns, s.reframes FROM records r"
        " JOIN seeds s ON s.id = r.seed_id WHERE r.status = ? ORDER BY r.id"
    )
    return [
        Seed(
            persona=persona,
            thought=thought,
            patterns=tuple(orjson.loads(patterns)),
            reframes=tuple(orjson.loads(reframes)),
        ).content_hash
        for persona, thought, patterns, reframes in store.conn.execute(
            sql, (RecordStatus.ACCEPTED.value,)
        )
    ]
