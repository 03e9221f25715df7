"""Splitting records among reviewers (`studio assign`): pure and deterministic.

The same ids, reviewers, overlap and seed always give the same split. A share `overlap` of the
records (rounded) is reviewed by two reviewers, the rest by one; every record goes to whoever has
the fewest so far, so each reviewer's load differs from another's by at most one record.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from studio.errors import BadInputError


@dataclass(frozen=True, slots=True)
class Split:
    """Who reviews which record."""

    reviewers: tuple[str, ...]
    by_record: dict[int, tuple[str, ...]]
    """Each record's reviewers (one, or two on a double-reviewed record), by record id."""

    def load(self) -> dict[str, int]:
        """How many records each reviewer got (in the order they were named)."""
        counts = dict.fromkeys(self.reviewers, 0)
        for names in self.by_record.values():
            for name in names:
                counts[name] += 1
        return counts

    @property
    def double(self) -> int:
        """How many records two reviewers review."""
        return sum(1 for names in self.by_record.values() if len(names) > 1)


def reviewer_names(text: str) -> tuple[str, ...]:
    """`ana,ben` -> ("ana", "ben"): names stripped, blanks and repeats dropped, order kept."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def split_records(
    record_ids: Sequence[int], reviewers: Sequence[str], *, overlap: float = 0.0, seed: int = 0
) -> Split:
    """Split `record_ids` among `reviewers`, a share `overlap` (0 to 1) reviewed by two.

    The records are shuffled with `seed` before the double-reviewed ones are chosen (the first
    `round(overlap * n)`), so which records overlap does not follow their ids."""
    names = tuple(dict.fromkeys(reviewers))
    if not names:
        raise BadInputError("name at least one reviewer")
    if not 0.0 <= overlap <= 1.0:
        raise BadInputError(f"the overlap is a share from 0 to 1, not {overlap}")
    if overlap > 0 and len(names) < 2:
        raise BadInputError("a share reviewed by two needs at least two reviewers")
    ids = sorted(set(record_ids))
    random.Random(seed).shuffle(ids)
    doubles = round(overlap * len(ids))
    load = dict.fromkeys(names, 0)
    rank = {name: i for i, name in enumerate(names)}
    by_record: dict[int, tuple[str, ...]] = {}
    for i, record_id in enumerate(ids):
        # Fewest records first; on a tie, rotate the start so no reviewer is always first.
        ordered = sorted(names, key=lambda n: (load[n], (rank[n] - i) % len(names)))
        chosen = tuple(sorted(ordered[: 2 if i < doubles else 1], key=rank.__getitem__))
        for name in chosen:
            load[name] += 1
        by_record[record_id] = chosen
    return Split(names, dict(sorted(by_record.items())))
