"""Balancing techniques across a run (`studio synth --balance`).

CACTUS's generator chose Evidence-Based Questioning in almost half its sessions. With balance,
the technique stage ranks its top three and the run takes the highest-ranked technique still
under its share of the records; when all three are at or over their share, the one least over
it (the first of equals), so that the run still moves towards the spread it aims for.

The spread is even unless a target gives some techniques their own share
(`--balance-target "Evidence-Based Questioning=0.3,Reality Testing=0.1"`); the techniques it does
not name share the rest evenly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from studio.cbt.techniques import TECHNIQUES
from studio.errors import BadInputError

_BY_NAME = {t.lower(): t for t in TECHNIQUES}


def target_shares(target: str | None) -> dict[str, float] | None:
    """The share of each of the twelve techniques from a target such as
    `"Evidence-Based Questioning=0.3,Reality Testing=0.1"` (fractions of the records; the
    techniques not named share the rest evenly); None for an even spread."""
    if not target or not target.strip():
        return None
    named: dict[str, float] = {}
    for part in target.split(","):
        name, sep, value = part.partition("=")
        where = f"balance target {part.strip()!r}"
        technique = _BY_NAME.get(name.strip().lower())
        if not sep or technique is None:
            raise BadInputError(
                f"{where}: expected Technique=share with one of the twelve techniques"
                f" ({', '.join(TECHNIQUES)})"
            )
        try:
            share = float(value)
        except ValueError:
            raise BadInputError(f"{where}: the share is not a number") from None
        if not 0.0 <= share <= 1.0:
            raise BadInputError(f"{where}: the share is a fraction from 0 to 1")
        if technique in named:
            raise BadInputError(f"{where}: {technique} is named twice")
        named[technique] = share
    total = sum(named.values())
    if total > 1.0 + 1e-9:
        raise BadInputError(f"balance target: the shares add up to {total:g}, more than 1")
    rest = [t for t in TECHNIQUES if t not in named]
    if not rest and abs(total - 1.0) > 1e-9:
        raise BadInputError(f"balance target: all twelve named, but the shares add up to {total:g}")
    each = (1.0 - total) / len(rest) if rest else 0.0
    return {t: named.get(t, each) for t in TECHNIQUES}


class TechniqueBalancer:
    """Counts per technique (from the database at the start, then every choice of this run) and
    the share each should reach (even unless `shares` weighs them)."""

    def __init__(self, counts: Mapping[str, int], shares: Mapping[str, float] | None = None):
        self.counts = {t: int(counts.get(t, 0)) for t in TECHNIQUES}
        weights = dict(shares) if shares else dict.fromkeys(TECHNIQUES, 1.0)
        total = sum(weights.values()) or 1.0
        self.shares = {t: weights.get(t, 0.0) / total for t in TECHNIQUES}

    def choose(self, ranking: tuple[str, ...]) -> str:
        """The highest-ranked technique still under its share once this record counts; chosen
        and counted at once (no await in between, so concurrent records see each other)."""
        total = sum(self.counts.values()) + 1
        # Less a hair: 0.3 * 50 is 15.000000000000002 in floats, and 15 is not under it.
        under = [t for t in ranking if self.counts[t] < self.shares[t] * total - 1e-9]
        chosen = under[0] if under else min(ranking, key=self._fill)
        self.counts[chosen] += 1
        return chosen

    def _fill(self, technique: str) -> float:
        """How full a technique is against its share (min() keeps the first of equals)."""
        share = self.shares[technique]
        return self.counts[technique] / share if share else math.inf
