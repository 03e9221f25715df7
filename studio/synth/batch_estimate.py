"""What a batch synthesis would send and cost (`studio synth --dry-run`), without writing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from studio.model import NEEDS_SYNTHESIS, STAGES, Stage, StageStatus
from studio.store import RecordView, Store
from studio.store.batches import record_in_flight, stage_token_averages
from studio.synth import chain
from studio.synth.settings import SynthSettings

#: Completion tokens a stage answer takes where the database has no finished stage to learn from
#: (the loopback answers and the CACTUS texts are of this size; reasoning tokens not included).
DEFAULT_TOKENS_OUT = {
    Stage.INTAKE_FORM: 450,
    Stage.CBT_TECHNIQUE: 60,
    Stage.CBT_PLAN: 250,
    Stage.DIALOGUE: 2200,
}
CHARS_PER_TOKEN = 4


def next_stage(record: RecordView) -> Stage | None:
    """The record's first stage that needs synthesis, unless an earlier one blocks the chain
    (invalid or rejected: those wait for a reviewer), as in live synthesis."""
    for stage in STAGES:
        status = record.stages[stage].status
        if status in (StageStatus.INVALID, StageStatus.REJECTED):
            return None
        if status in NEEDS_SYNTHESIS:
            return stage
    return None


@dataclass(frozen=True, slots=True)
class Estimate:
    requests: dict[Stage, int]
    tokens_in: int
    tokens_out: int
    in_flight: int
    """Requests already out in batches (not counted again)."""
    learned: bool = False
    """Token sizes come from stages generated so far (else from typical stage sizes)."""
    stage_tokens_in: dict[Stage, int] = field(default_factory=dict)
    """Prompt tokens per stage (what decides how many batch files a stage needs)."""

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def price(self, settings: SynthSettings, *, batch: bool) -> float | None:
        """USD at the plan's rates (None when the plan gives no prices)."""
        if settings.price_in is None or settings.price_out is None:
            return None
        live = (self.tokens_in * settings.price_in + self.tokens_out * settings.price_out) / 1e6
        return live * settings.batch_price if batch else live


def estimate(store: Store, settings: SynthSettings, *, limit: int | None = None) -> Estimate:
    """Requests and tokens for the rest of the chain of every record and seed waiting for
    synthesis, without writing anything: prompt tokens from the templates and the seed (plus the
    upstream answers they quote), completion tokens from the stages generated so far (else
    `DEFAULT_TOKENS_OUT`)."""
    averages = stage_token_averages(store)
    out = {s: averages[s][1] if s in averages else float(DEFAULT_TOKENS_OUT[s]) for s in STAGES}
    fixed = {s: _template_tokens(s, settings) for s in STAGES}
    requests = dict.fromkeys(STAGES, 0)
    stage_in = dict.fromkeys(STAGES, 0.0)
    tokens_in = 0.0
    tokens_out = 0.0

    def chain_from(first: Stage, seed_tokens: float) -> None:
        nonlocal tokens_in, tokens_out
        for stage in STAGES[STAGES.index(first) :]:
            requests[stage] += 1
            upstream = sum(out[s] for s in STAGES[: STAGES.index(stage)])
            prompt = (
                averages[stage][0] if stage in averages else fixed[stage] + seed_tokens + upstream
            )
            tokens_in += prompt
            stage_in[stage] += prompt
            tokens_out += out[stage]

    cap = limit
    for record in store.records("r.rejected = 0"):
        if cap is not None and cap <= 0:
            break
        stage = next_stage(record)
        if stage is None or record_in_flight(store, record.id, STAGES):
            continue
        chain_from(stage, _seed_tokens(record.seed))
        cap = None if cap is None else cap - 1
    seeds = store.conn.execute(
        "SELECT persona, thought, patterns, reframes FROM seeds WHERE NOT EXISTS"
        " (SELECT 1 FROM records r WHERE r.seed_id = seeds.id) ORDER BY id LIMIT ?",
        (-1 if cap is None else max(cap, 0),),
    )
    for row in seeds:
        chain_from(Stage.INTAKE_FORM, sum(len(str(v)) for v in row) / CHARS_PER_TOKEN)
    in_flight = store.conn.execute(
        # Synthesis requests only (the judge's are `studio judge --dry-run`'s).
        "SELECT COUNT(*) FROM batch_requests WHERE state = 'in_flight' AND stage != 'judge'"
    ).fetchone()[0]
    return Estimate(
        {s: n for s, n in requests.items() if n},
        round(tokens_in),
        round(tokens_out),
        int(in_flight),
        learned=bool(averages),
        stage_tokens_in={s: round(t) for s, t in stage_in.items() if t},
    )


def _seed_tokens(seed: Any) -> float:
    text = seed.persona + seed.thought + "".join(seed.patterns) + "".join(seed.reframes)
    return len(text) / CHARS_PER_TOKEN


def _template_tokens(stage: Stage, settings: SynthSettings) -> float:
    template = chain.stage_template(stage, settings.prompts_dir)
    return (len(template.system) + len(template.user)) / CHARS_PER_TOKEN
