"""How far the judge can be trusted: its scores against clinicians' ratings of the same text.

Per item: quadratic-weighted Cohen's kappa (how the CTRS literature reports rater agreement on an
ordinal 0-6 scale), Spearman's rho with a 95% confidence interval by Fisher's z transform
(deterministic, no resampling), the mean bias (judge minus clinician), and the AUC of the judge's
score for telling records clinicians accepted from those they rejected. With fewer than
`MIN_PAIRS` pairs an item says so instead of reporting numbers that mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from studio.cbt.ctrs import CTRS_ITEMS, ITEM_LABELS, RATED_ITEMS, SCORE_MAX, SCORE_MIN
from studio.reliability import confusion, weighted_kappa
from studio.store import Store
from studio.store.judging import judged_by_decision, rated_pairs

MIN_PAIRS = 10
"""Fewer pairs than this and the numbers are noise (a kappa CI at n=10 is already ±0.4 wide)."""
OVERRATE_POINTS = 0.5
"""A judge whose scores run this much above the clinicians' on average (and clearly so) overrates."""
Z_95 = 1.959963984540054
CTRS_MEAN = "ctrs_mean"


def quadratic_weighted_kappa(
    first: Sequence[int], second: Sequence[int], *, low: int = SCORE_MIN, high: int = SCORE_MAX
) -> float | None:
    """Cohen's kappa with quadratic weights; None when it is undefined (no spread at all)."""
    if len(first) != len(second) or not first:
        return None
    scale = range(low, high + 1)
    last = len(scale) - 1
    return weighted_kappa(confusion(first, second, scale), lambda i, j: (i - j) ** 2 / last**2)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def pearson(first: Sequence[float], second: Sequence[float]) -> float | None:
    n = len(first)
    if n < 2:
        return None
    mean_a, mean_b = sum(first) / n, sum(second) / n
    cov = sum((a - mean_a) * (b - mean_b) for a, b in zip(first, second, strict=True))
    var_a = sum((a - mean_a) ** 2 for a in first)
    var_b = sum((b - mean_b) ** 2 for b in second)
    if var_a == 0 or var_b == 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    return pearson(_ranks(first), _ranks(second))


def fisher_interval(rho: float, n: int) -> tuple[float, float] | None:
    """95% interval of a correlation by Fisher's z (needs n > 3)."""
    if n <= 3:
        return None
    if abs(rho) >= 1:
        return (rho, rho)
    z = math.atanh(rho)
    half = Z_95 / math.sqrt(n - 3)
    return (math.tanh(z - half), math.tanh(z + half))


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """The chance that a random accepted record scores above a random rejected one (ties count
    half): the Mann-Whitney U over the product of the group sizes. None without both groups."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@dataclass(frozen=True, slots=True)
class ItemAgreement:
    item: str
    pairs: int
    kappa: float | None = None
    spearman: float | None = None
    spearman_ci: tuple[float, float] | None = None
    bias: float | None = None
    """Mean of judge minus clinician: above 0, the judge is more generous."""
    auc: float | None = None
    auc_records: int = 0
    """Accepted and rejected records with a current judge score that the AUC is computed on."""
    verdict: str = ""

    @property
    def enough(self) -> bool:
        return self.pairs >= MIN_PAIRS


@dataclass(frozen=True, slots=True)
class AgreementReport:
    items: tuple[ItemAgreement, ...]
    pairs: int
    rated_records: int
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "pairs": self.pairs,
            "rated_records": self.rated_records,
            "min_pairs": MIN_PAIRS,
            "items": {a.item: asdict(a) for a in self.items},
            "notes": list(self.notes),
        }


def item_agreement(
    item: str,
    judge: Sequence[int],
    clinician: Sequence[int],
    decided: Sequence[tuple[float, bool]] = (),
) -> ItemAgreement:
    """The numbers for one item from paired scores (and judge scores of decided records)."""
    n = len(judge)
    area = auc([s for s, _ in decided], [p for _, p in decided]) if decided else None
    label = ITEM_LABELS.get(item, "CTRS mean")
    if n < MIN_PAIRS:
        return ItemAgreement(
            item,
            n,
            auc=area,
            auc_records=len(decided),
            verdict=f"{label}: too few ratings to tell ({n} of the {MIN_PAIRS} needed)",
        )
    rho = spearman(judge, clinician)
    differences = [a - b for a, b in zip(judge, clinician, strict=True)]
    bias = sum(differences) / n
    spread = math.sqrt(sum((d - bias) ** 2 for d in differences) / (n - 1))
    kappa = quadratic_weighted_kappa(judge, clinician)
    verdict = f"{label}: kappa {_fmt(kappa)}, bias {bias:+.2f}"
    # "Clearly" above: the mean difference is beyond its own 95% margin of error.
    if bias >= OVERRATE_POINTS and bias > Z_95 * spread / math.sqrt(n):
        verdict += f" — the judge overrates by {bias:.1f} points on average"
    return ItemAgreement(
        item,
        n,
        kappa=kappa,
        spearman=rho,
        spearman_ci=None if rho is None else fisher_interval(rho, n),
        bias=bias,
        auc=area,
        auc_records=len(decided),
        verdict=verdict,
    )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def agreement_report(store: Store) -> AgreementReport:
    """Judge against clinicians on every item, plus the CTRS mean, from what the store holds."""
    pairs = rated_pairs(store)
    decided = judged_by_decision(store)
    items = []
    for item in RATED_ITEMS:
        mine = [p for p in pairs if p.item == item]
        items.append(
            item_agreement(
                item,
                [p.judge for p in mine],
                [p.clinician for p in mine],
                [(scores[item], ok) for scores, ok in decided if item in scores],
            )
        )
    notes = []
    if not pairs:
        notes.append(
            "No record is rated by both the judge and a clinician yet: rate items in the review"
            " app (digit keys) on judged records."
        )
    elif not any(a.enough for a in items):
        notes.append(
            f"Too few ratings to tell: every item has fewer than {MIN_PAIRS} paired ratings."
        )
    over = [ITEM_LABELS[a.item] for a in items if "overrates" in a.verdict]
    if over:
        notes.append(f"The judge overrates: {', '.join(over)}. Do not trust high scores alone.")
    if decided and not any(a.auc is not None for a in items):
        notes.append("The AUC needs both accepted and rejected records with judge scores.")
    ctrs_decided = [
        (sum(s[i] for i in CTRS_ITEMS) / len(CTRS_ITEMS), ok)
        for s, ok in decided
        if all(i in s for i in CTRS_ITEMS)
    ]
    mean_auc = auc([s for s, _ in ctrs_decided], [ok for _, ok in ctrs_decided])
    if mean_auc is not None:
        notes.append(
            f"The CTRS mean separates accepted from rejected records with AUC {mean_auc:.2f}"
            f" ({len(ctrs_decided)} records; 0.5 is chance)."
        )
    return AgreementReport(
        tuple(items), len(pairs), len({p.record_id for p in pairs}), tuple(notes)
    )
