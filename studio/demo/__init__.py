"""The demo database: hand-written seeds and complete records that ship with CBT Studio.

All demo text was written for CBT Studio (no third-party dataset text). Complete records arrive
awaiting review, except two that a reviewer named "demo" already accepted (one with an edit), so
export and training have something to work on from the start.
"""

from __future__ import annotations

from importlib.resources import files

import orjson

from studio.ingest.formats import parse_cactus, parse_seed
from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage, StageStatus
from studio.store import Store

DEMO_REVIEWER = "demo"
DEMO_SOURCE = "demo"


def demo_rows() -> list[Seed | CactusRow]:
    text = files("studio.demo").joinpath("demo_records.jsonl").read_text(encoding="utf-8")
    rows: list[Seed | CactusRow] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        data = orjson.loads(line)
        rows.append(
            parse_cactus(data, DEMO_SOURCE) if "dialogue" in data else parse_seed(data, DEMO_SOURCE)
        )
    return rows


def build_demo(store: Store) -> bool:
    """Fill an empty database with the demo content; returns False if it already had seeds."""
    if store.stats()["seeds"]:
        return False
    with store.transaction():
        result = add_rows(store, demo_rows(), source=DEMO_SOURCE)
        first, second = result.record_ids[:2]
        for stage in Stage:
            store.decide_stage(first, stage, StageStatus.ACCEPTED, reviewer=DEMO_REVIEWER)
        plan = store.stage(second, Stage.CBT_PLAN).text
        store.edit_stage(
            second,
            Stage.CBT_PLAN,
            plan + "\nNote for next session: review the homework together before starting.",
            reviewer=DEMO_REVIEWER,
            note="Added a homework review step.",
        )
        for stage in (Stage.INTAKE_FORM, Stage.CBT_TECHNIQUE, Stage.DIALOGUE):
            store.decide_stage(second, stage, StageStatus.ACCEPTED, reviewer=DEMO_REVIEWER)
    return True
