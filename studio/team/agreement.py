"""How far reviewers agree with each other, per stage, from their own decisions (`decisions`).

An item is a record's stage decided by two or more reviewers; single-reviewed stages are left
out. The categories are the decision kinds: accept (`accepted`), edit (`edited`, and `invalid`:
an edit whose text breaks the stage's rule is still the reviewer deciding to edit), reject
(`rejected`). The `record` level asks whether a reviewer kept the record or rejected it as a
whole: a reviewer counts there once they rejected it (`stage = 'record'`) or decided all four
stages without rejecting it.

With exactly two reviewers on a stage the statistic is Cohen's kappa, with more Krippendorff's
alpha (nominal; a reviewer who did not decide an item is a missing value). The 95% interval is a
percentile bootstrap over items with a fixed seed (`studio.reliability.bootstrap_interval`), for
kappa and alpha alike. Below `MIN_ITEMS` items a stage says "too few items (n=…)" instead of
numbers; the raw table is shown all the same, since counts are not estimates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from studio.model import STAGES
from studio.reliability import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    LEVEL,
    alpha_from_patterns,
    bootstrap_interval,
    coincidences,
    kappa_from_pairs,
    observed_agreement,
    pair_table,
)
from studio.store import Store

MIN_ITEMS = 10
"""Fewer double-reviewed items than this and kappa means little: at n=10 its 95% interval is
already about ±0.4 wide (the same floor as the judge's `MIN_PAIRS`)."""

RECORD = "record"
"""The `decisions.stage` of a rejection of the record as a whole."""
LEVELS: tuple[str, ...] = (*(s.value for s in STAGES), RECORD)
"""The stages agreement is reported for, in chain order, then the record as a whole."""

KINDS = ("accept", "edit", "reject")
"""The categories reviewers are compared on, for a stage."""
RECORD_KINDS = ("keep", "reject")
"""The categories for the record as a whole."""
KIND_OF_STATUS = {"accepted": "accept", "edited": "edit", "invalid": "edit", "rejected": "reject"}


class Statistic(StrEnum):
    KAPPA = "kappa"
    """Cohen's kappa: exactly two reviewers, each decided every item."""
    ALPHA = "alpha"
    """Krippendorff's alpha (nominal): three or more reviewers, not all on every item."""


class TableKind(StrEnum):
    CONFUSION = "confusion"
    """Counts: rows the first reviewer's kind, columns the second's."""
    COINCIDENCE = "coincidence"
    """Krippendorff's coincidence matrix: pairs of kinds within an item, each item weighing as
    much as its number of decisions (symmetric; fractions when items have 3+ decisions)."""


@dataclass(frozen=True, slots=True)
class StageAgreement:
    stage: str
    reviewers: tuple[str, ...]
    """Everyone with a decision on a double-reviewed item of this stage, sorted."""
    items: int
    """Items decided by two or more reviewers."""
    statistic: Statistic | None
    categories: tuple[str, ...]
    table_kind: TableKind | None
    table: tuple[tuple[float, ...], ...]
    value: float | None = None
    ci: tuple[float, float] | None = None
    percent_agreement: float | None = None
    note: str = ""
    """Why there are no numbers (too few items, or no spread to measure), else empty."""

    @property
    def enough(self) -> bool:
        return self.items >= MIN_ITEMS

    def to_json(self) -> dict[str, Any]:
        table: dict[str, Any] = {"kind": self.table_kind, "categories": list(self.categories)}
        if self.table_kind is TableKind.CONFUSION:
            table |= {"rows": self.reviewers[0], "columns": self.reviewers[1]}
        table["counts"] = [[round(v, 4) for v in row] for row in self.table]
        return {
            "stage": self.stage,
            "reviewers": list(self.reviewers),
            "items": self.items,
            "enough": self.enough,
            "statistic": self.statistic,
            "value": _round(self.value),
            "ci": None if self.ci is None else [_round(v) for v in self.ci],
            "percent_agreement": _round(self.percent_agreement),
            "table": table,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class TeamAgreement:
    stages: tuple[StageAgreement, ...]
    double_reviewed: int
    """Records with at least one item decided by two or more reviewers."""

    @property
    def note(self) -> str:
        return "" if self.double_reviewed else "Nobody has double-reviewed a record yet."

    def to_json(self) -> dict[str, Any]:
        return {
            "min_items": MIN_ITEMS,
            "interval": {
                "method": "percentile bootstrap over items",
                "level": LEVEL,
                "resamples": BOOTSTRAP_RESAMPLES,
                "seed": BOOTSTRAP_SEED,
            },
            "double_reviewed_records": self.double_reviewed,
            "stages": [s.to_json() for s in self.stages],
            "note": self.note,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def too_few(items: int) -> str:
    return f"too few items (n={items}; {MIN_ITEMS} needed)"


def stage_agreement(
    stage: str, decided: Mapping[Any, Mapping[str, str]], categories: tuple[str, ...] = KINDS
) -> StageAgreement:
    """Agreement on one stage from each item's {reviewer: kind}; items with fewer than two
    decisions are left out."""
    items = [kinds for kinds in decided.values() if len(kinds) >= 2]
    reviewers = tuple(sorted({r for kinds in items for r in kinds}))
    if not items:
        return StageAgreement(stage, reviewers, 0, None, categories, None, (), note=too_few(0))
    compute: Callable[[Mapping[Any, int]], float | None]
    if len(reviewers) == 2:
        first, second = reviewers
        tally: Counter[Any] = Counter((kinds[first], kinds[second]) for kinds in items)
        statistic, kind = Statistic.KAPPA, TableKind.CONFUSION
        table = pair_table(tally, categories)
        compute = partial(kappa_from_pairs, categories=categories)
    else:
        tally = Counter(tuple(sorted(kinds.values())) for kinds in items)
        statistic, kind = Statistic.ALPHA, TableKind.COINCIDENCE
        table = coincidences(tally, categories)
        compute = partial(alpha_from_patterns, categories=categories)
    frozen = tuple(tuple(row) for row in table)
    base = StageAgreement(stage, reviewers, len(items), statistic, categories, kind, frozen)
    if len(items) < MIN_ITEMS:
        return replace(base, note=too_few(len(items)))
    value = compute(tally)
    return replace(
        base,
        value=value,
        ci=None if value is None else bootstrap_interval(tally, compute),
        percent_agreement=observed_agreement(table),
        note="" if value is not None else "undefined: every decision was of one kind",
    )


def decided_kinds(store: Store) -> dict[str, dict[int, dict[str, str]]]:
    """Every level's {record: {reviewer: kind}} from the `decisions` table."""
    levels: dict[str, dict[int, dict[str, str]]] = {level: defaultdict(dict) for level in LEVELS}
    rows = store.conn.execute(
        "SELECT record_id, stage, reviewer, status FROM decisions ORDER BY record_id, reviewer"
    )
    stages_done: dict[tuple[int, str], int] = Counter()
    rejected: set[tuple[int, str]] = set()
    for record_id, stage, reviewer, status in rows:
        if stage == RECORD:
            rejected.add((record_id, reviewer))
        elif stage in levels and status in KIND_OF_STATUS:
            levels[stage][record_id][reviewer] = KIND_OF_STATUS[status]
            stages_done[record_id, reviewer] += 1
    whole = levels[RECORD]
    for record_id, reviewer in rejected:
        whole[record_id][reviewer] = "reject"
    for (record_id, reviewer), done in stages_done.items():
        if done == len(STAGES) and (record_id, reviewer) not in rejected:
            whole[record_id][reviewer] = "keep"
    return levels


def team_agreement(levels: Mapping[str, Mapping[int, Mapping[str, str]]]) -> TeamAgreement:
    """Agreement on every stage and on the record as a whole, from `decided_kinds`. Pure (no
    database). The bootstrap draws every resample's counts at once (about 0.03 s for all stages
    at 5,000 double-reviewed items); the review app still runs it off the store's thread."""
    stages = tuple(
        stage_agreement(level, levels.get(level, {}), RECORD_KINDS if level == RECORD else KINDS)
        for level in LEVELS
    )
    double = {
        record_id
        for decided in levels.values()
        for record_id, kinds in decided.items()
        if len(kinds) >= 2
    }
    return TeamAgreement(stages, len(double))


def agreement_report(store: Store) -> TeamAgreement:
    """Agreement between reviewers on every stage and on the record as a whole."""
    return team_agreement(decided_kinds(store))
