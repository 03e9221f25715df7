"""How far raters agree beyond chance: Cohen's kappa (two raters, nominal or weighted),
Krippendorff's alpha (any number of raters, missing values allowed, nominal), percent agreement,
and a bootstrap confidence interval over items.

One place for these statistics: the judge against clinicians (`studio.judge.agreement`, quadratic
weighted kappa) and reviewers against each other (`studio.team.agreement`) both use them.

Each statistic is computed from a tally of item *patterns* (the pair of labels for kappa, the
multiset of labels for alpha): that tally is all the statistic depends on, and resampling it is
how the bootstrap stays fast (a draw of n items costs one `random.choices`, not n statistics).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

Label = TypeVar("Label", bound=Hashable)
Pattern = TypeVar("Pattern", bound=Hashable)

BOOTSTRAP_RESAMPLES = 1000
"""Resamples of the items for a 95% percentile interval: the interval's ends move by about 0.01
between seeds at 1000 (the CTRS and kappa literature use 1000-2000)."""
BOOTSTRAP_SEED = 14
"""Fixed, so the same decisions always give the same interval."""
LEVEL = 0.95
MIN_DEFINED_SHARE = 0.5
"""With fewer resamples than this share giving a value (e.g. nearly everyone chose one kind), the
interval is not reported: it would describe the few resamples that happened to vary."""

Table = list[list[float]]


def weighted_kappa(
    table: Sequence[Sequence[float]], weight: Callable[[int, int], float]
) -> float | None:
    """Cohen's kappa from a square table of counts (rows: the first rater's category, columns:
    the second's) with disagreement weights `weight(i, j)` (0 on the diagonal). None when chance
    alone would explain every disagreement-free table (no spread at all)."""
    k = len(table)
    n = sum(sum(row) for row in table)
    if n == 0:
        return None
    rows = [sum(row) for row in table]
    cols = [sum(table[i][j] for i in range(k)) for j in range(k)]
    observed = expected = 0.0
    for i in range(k):
        for j in range(k):
            w = weight(i, j)
            observed += w * table[i][j]
            expected += w * rows[i] * cols[j] / n
    return None if expected == 0 else 1 - observed / expected


def nominal(i: int, j: int) -> float:
    """Disagreement weight of nominal categories: any two different ones disagree fully."""
    return 0.0 if i == j else 1.0


def pair_table(pairs: Mapping[tuple[Label, Label], int], categories: Sequence[Label]) -> Table:
    """The square table of counts from a tally of (first rater's, second rater's) labels."""
    index = {c: i for i, c in enumerate(categories)}
    table = [[0.0] * len(categories) for _ in categories]
    for (a, b), count in pairs.items():
        table[index[a]][index[b]] += count
    return table


def confusion(
    first: Sequence[Label], second: Sequence[Label], categories: Sequence[Label]
) -> Table:
    """Counts of (first rater's category, second rater's category) over the same items."""
    if len(first) != len(second):
        raise ValueError("both raters must rate the same items")
    return pair_table(Counter(zip(first, second, strict=True)), categories)


def _categories(labels: Sequence[Label]) -> list[Label]:
    return list(dict.fromkeys(labels))


def cohen_kappa(first: Sequence[Label], second: Sequence[Label]) -> float | None:
    """Cohen's kappa for nominal categories: (p_o - p_e) / (1 - p_e), p_e from each rater's own
    marginals. None without items or when both raters used one and the same category only."""
    return weighted_kappa(confusion(first, second, _categories([*first, *second])), nominal)


def kappa_from_pairs(
    pairs: Mapping[tuple[Label, Label], int], categories: Sequence[Label]
) -> float | None:
    """Nominal Cohen's kappa from a tally of (first, second) label pairs."""
    return weighted_kappa(pair_table(pairs, categories), nominal)


def unit_pattern(unit: Sequence[Label | None]) -> tuple[Label, ...] | None:
    """What alpha needs of one item: its labels without the missing ones, sorted (order and who
    gave which do not matter to alpha); None when fewer than two remain (the item is unpairable)."""
    values = [v for v in unit if v is not None]
    if len(values) < 2:
        return None
    return tuple(sorted(values, key=repr))


def coincidences(patterns: Mapping[tuple[Label, ...], int], categories: Sequence[Label]) -> Table:
    """Krippendorff's coincidence matrix: each ordered pair of labels within an item, from
    different raters, counts 1/(m-1) where m is how many labels the item has. Symmetric; its
    total is the number of pairable labels."""
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    matrix = [[0.0] * k for _ in range(k)]
    for values, count in patterns.items():
        m = len(values)
        for a_pos, a in enumerate(values):
            for b_pos, b in enumerate(values):
                if a_pos != b_pos:
                    matrix[index[a]][index[b]] += count / (m - 1)
    return matrix


def alpha_from_coincidences(matrix: Sequence[Sequence[float]]) -> float | None:
    """Nominal alpha = 1 - D_o / D_e = 1 - (n - 1) * sum(o_ck, c != k) / sum(n_c * n_k, c != k).
    None when there is nothing to compare or only one category was ever used."""
    k = len(matrix)
    margins = [sum(row) for row in matrix]
    n = sum(margins)
    if n <= 1:
        return None
    observed = sum(matrix[c][d] for c in range(k) for d in range(k) if c != d)
    expected = sum(margins[c] * margins[d] for c in range(k) for d in range(k) if c != d)
    return None if expected == 0 else 1 - (n - 1) * observed / expected


def alpha_from_patterns(
    patterns: Mapping[tuple[Label, ...], int], categories: Sequence[Label]
) -> float | None:
    return alpha_from_coincidences(coincidences(patterns, categories))


def pattern_tally(units: Sequence[Sequence[Label | None]]) -> Counter[tuple[Label, ...]]:
    """How many items have each pattern (pairable items only)."""
    tally: Counter[tuple[Label, ...]] = Counter()
    for unit in units:
        pattern = unit_pattern(unit)
        if pattern is not None:
            tally[pattern] += 1
    return tally


def krippendorff_alpha(units: Sequence[Sequence[Label | None]]) -> float | None:
    """Krippendorff's alpha for nominal data: `units` holds one list per item with each rater's
    label, None where a rater gave none. Items with fewer than two labels are left out (they
    cannot be compared), as Krippendorff prescribes. For two raters and no missing labels it is
    Scott's pi with a small-sample correction: 1 - alpha = (2n - 1) / 2n * (1 - pi)."""
    patterns = pattern_tally(units)
    categories = _categories([v for p in patterns for v in p])
    return alpha_from_patterns(patterns, categories)


def observed_agreement(matrix: Sequence[Sequence[float]]) -> float | None:
    """The share of pairable label pairs that agree (the diagonal of a confusion or coincidence
    matrix over its total): for two raters without missing labels, the share of items they agree
    on; for more, the mean agreement over every pair of raters on every item."""
    total = sum(sum(row) for row in matrix)
    return None if total == 0 else sum(matrix[i][i] for i in range(len(matrix))) / total


def bootstrap_interval(
    tally: Mapping[Pattern, int],
    statistic: Callable[[Mapping[Pattern, int]], float | None],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap over items: draw as many items as there are, with replacement, and
    recompute; the interval holds the middle `level` of the values. Resampling the items (not
    the single labels) is what Zapf et al. (2016) recommend for kappa and alpha alike. None when
    too few resamples give a value (see `MIN_DEFINED_SHARE`)."""
    keys = sorted(tally, key=repr)  # the same draws whatever order the tally was built in
    n = sum(tally.values())
    if n == 0:
        return None
    import numpy as np

    # Drawing n items with replacement gives each pattern a multinomial count: one vectorized
    # draw of every resample's counts, instead of n draws per resample (5,000 items: 3-4 s).
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n, [tally[k] / n for k in keys], size=resamples)
    values: list[float] = []
    for counts in drawn.tolist():
        value = statistic({keys[i]: c for i, c in enumerate(counts) if c})
        if value is not None:
            values.append(value)
    if len(values) < MIN_DEFINED_SHARE * resamples:
        return None
    values.sort()
    tail = (1 - level) / 2
    last = len(values) - 1
    return (values[math.floor(tail * last)], values[math.ceil((1 - tail) * last)])
