"""Coverage: how the accepted records spread over techniques, attitudes, distortion patterns and
judge score bands, against all records (a training set skewed to one technique teaches one)."""

from __future__ import annotations

from dataclasses import dataclass

from studio.cbt.techniques import TECHNIQUES
from studio.store import Store
from studio.store.judging import current_scores_sql, register_hash

#: CTRS-mean bands: below 2 poor, 2-4 adequate, 4 and up good (the scale's anchors).
SCORE_BANDS = ("0–2", "2–4", "4–6", "not judged")


@dataclass(frozen=True, slots=True)
class Spread:
    """One dimension: per value, the accepted records and all records."""

    dimension: str
    rows: tuple[tuple[str, int, int], ...]

    @property
    def accepted(self) -> int:
        return sum(accepted for _, accepted, _ in self.rows)


def _grouped(store: Store, sql: str) -> dict[str, tuple[int, int]]:
    return {str(key): (int(acc), int(n)) for key, acc, n in store.conn.execute(sql)}


def coverage(store: Store) -> list[Spread]:
    register_hash(store)
    accepted = "SUM(r.status = 'accepted')"
    techniques = _grouped(
        store, f"SELECT r.technique, {accepted}, COUNT(*) FROM records r GROUP BY r.technique"
    )
    attitudes = _grouped(
        store, f"SELECT r.attitude, {accepted}, COUNT(*) FROM records r GROUP BY r.attitude"
    )
    patterns = _grouped(
        store,
        f"SELECT LOWER(TRIM(p.value)), {accepted}, COUNT(*) FROM records r"
        " JOIN seeds s ON s.id = r.seed_id, json_each(s.patterns) p"
        " GROUP BY LOWER(TRIM(p.value)) ORDER BY COUNT(*) DESC",
    )
    bands = _grouped(
        store,
        "SELECT CASE WHEN js.ctrs_mean IS NULL THEN 'not judged'"
        " WHEN js.ctrs_mean < 2 THEN '0–2' WHEN js.ctrs_mean < 4 THEN '2–4' ELSE '4–6' END,"
        f" {accepted}, COUNT(*) FROM records r"
        f" LEFT JOIN ({current_scores_sql()}) js ON js.record_id = r.id GROUP BY 1",
    )

    def rows(
        found: dict[str, tuple[int, int]], order: tuple[str, ...]
    ) -> tuple[tuple[str, int, int], ...]:
        keys = [*order, *(k for k in found if k not in order)]
        return tuple((k or "(none)", *found.get(k, (0, 0))) for k in keys)

    return [
        Spread("technique", rows(techniques, TECHNIQUES)),
        Spread("attitude", rows(attitudes, ("positive", "neutral", "negative"))),
        Spread("distortion pattern", rows(patterns, ())),
        Spread("judge score band", rows(bands, SCORE_BANDS)),
    ]
