"""Balancing techniques across a run (`studio synth --balance`).

CACTUS's generator chose Evidence-Based Questioning in almost half its sessions. With balance,
the technique stage ranks its top three and the run takes the highest-ranked technique still
under its share of the records; when all three are at or over their share, the one least over
it (the first of equals), so that the run still moves towards the spread it aims for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from studio.cbt.techniques import TECHNIQUES


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
        under = [t for t in ranking if self.counts[t] < self.shares[t] * total]
        chosen = under[0] if under else min(ranking, key=self._fill)
        self.counts[chosen] += 1
        return chosen

    def _fill(self, technique: str) -> float:
        """How full a technique is against its share (min() keeps the first of equals)."""
        share = self.shares[technique]
        return self.counts[technique] / share if share else math.inf
