"""The judge: reads every dialogue that has no current score and stores what it thinks.

It goes through the synthesis engine's one call path (`Synthesizer.call`): the response cache,
the rate limiter, the backend and the retry loop. Every judgement is committed as soon as it
arrives, so `kill -9` loses only the calls in flight, and the next run asks only for those (an
answer that was received and readable is in the cache).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from studio.cbt.dialogue import parse_dialogue
from studio.judge.answer import AnswerError, judge_schema, parse_answer
from studio.model import Stage
from studio.store import Store
from studio.store.batches import JudgeJob, record_in_flight
from studio.store.judging import (
    FAILED,
    SCORED,
    JudgeResult,
    records_to_judge,
    save_judgement,
    text_hash,
)
from studio.synth.backends import Backend
from studio.synth.engine import CallFailed, Synthesizer, _Usage, for_each_concurrently
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages, Template, load_template, prompt_hash

JUDGE_TEMPLATE = "judge"
CUT_OFF = "cut off at the token limit"
_STEP = re.compile(r"^\s*(\d+)[.)]", re.M)


@dataclass(slots=True)
class JudgeSummary:
    records: int = 0
    scored: int = 0
    flagged: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    """Failed judgements per reason (`unreadable answer`, `server unreachable`, …)."""
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def to_json(self) -> dict[str, object]:
        return {
            "records": self.records,
            "scored": self.scored,
            "flagged": self.flagged,
            "failed": self.failed,
            "failures": self.failures,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "tokens": self.tokens,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def judge_settings(settings: SynthSettings) -> SynthSettings:
    """A judge reads, it does not write: temperature 0 (the same text gets the same scores)."""
    return replace(settings, temperature=0.0)


@dataclass(frozen=True, slots=True)
class JudgeInput:
    """What the judge is shown of one record."""

    technique: str
    plan: str
    dialogue: str
    turns: int
    steps: int

    def messages(self, template: Template) -> Messages:
        parsed = parse_dialogue(self.dialogue).turns
        numbered = "\n".join(
            f"{n}. {t.role.label}: {t.text}" for n, t in enumerate(parsed, start=1)
        )
        return template.render(
            {
                "cbt_technique": self.technique or "(none chosen)",
                "cbt_plan": self.plan or "(no plan)",
                "dialogue": numbered or self.dialogue,
                "turn_count": str(self.turns),
                "step_count": str(self.steps),
            }
        )


def judge_input(store: Store, record_id: int) -> JudgeInput:
    record = store.record(record_id)
    dialogue = record.text(Stage.DIALOGUE)
    plan = record.text(Stage.CBT_PLAN)
    return JudgeInput(
        technique=record.technique or record.text(Stage.CBT_TECHNIQUE),
        plan=plan,
        dialogue=dialogue,
        turns=len(parse_dialogue(dialogue).turns),
        steps=len(_STEP.findall(plan)),
    )


class Judge:
    """Scores dialogues over a backend, through the synthesis engine's call path."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        settings: SynthSettings,
        *,
        fresh: bool = False,
        on_done: Callable[[int, JudgeResult], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = judge_settings(settings)
        self.engine = Synthesizer(store, backend, self.settings, fresh=fresh)
        self.summary = JudgeSummary()
        self.on_done = on_done or (lambda record_id, result: None)

    async def run(self, *, limit: int | None = None, rejudge: bool = False) -> JudgeSummary:
        started = time.monotonic()
        ids = records_to_judge(self.store, limit=limit, rejudge=rejudge)
        # A record whose judge request is out in a batch waits for it (never paid for twice).
        ids = [i for i in ids if not record_in_flight(self.store, i, (JudgeJob.JUDGE,))]
        self.summary.records = len(ids)
        try:
            await for_each_concurrently(ids, self.judge_record, self.settings.concurrency)
        finally:
            self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    async def judge_record(self, record_id: int) -> JudgeResult:
        """Judge one record's current dialogue and commit the judgement (failed ones too)."""
        shown = judge_input(self.store, record_id)
        judged_hash = text_hash(shown.dialogue)
        template = load_template(JUDGE_TEMPLATE, self.settings.prompts_dir)
        messages = shown.messages(template)
        usage = _Usage()
        base = JudgeResult(
            status=FAILED,
            model=self.engine.backend.model,
            template_version=template.label,
            prompt_hash=prompt_hash(messages),
        )

        def readable(text: str) -> bool:
            try:
                parse_answer(text, turns=shown.turns, steps=shown.steps)
            except AnswerError:
                return False
            return True

        try:
            answer = await self.engine.call(
                messages, kind="judge", schema=judge_schema(), usage=usage, passes=readable
            )
        except CallFailed as exc:
            result = replace(base, error=str(exc))
            self.summary.fail(exc.reason)
        else:
            result = self._read(base, answer, usage, shown)
        finally:
            # The engine is this judge's own, so its totals are the run's; a difference taken
            # around the await counted the calls of records judged meanwhile twice.
            self.summary.calls = self.engine.summary.calls
            self.summary.cache_hits = self.engine.summary.cache_hits
            self.summary.retries = self.engine.summary.retries
            self.summary.tokens += usage.tokens_in + usage.tokens_out
        save_judgement(self.store, record_id, judged_hash, result)
        self.on_done(record_id, result)
        return result

    def _read(
        self, base: JudgeResult, answer: str, usage: _Usage, shown: JudgeInput
    ) -> JudgeResult:
        return read_answer(self.summary, base, answer, usage, shown)

    async def aclose(self) -> None:
        await self.engine.aclose()


def read_answer(
    summary: JudgeSummary, base: JudgeResult, answer: str, usage: _Usage, shown: JudgeInput
) -> JudgeResult:
    """One answer (live or from a batch) as a judgement: cut off or unreadable → failed, with the
    raw text kept."""
    costs = replace(
        base,
        raw=answer,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        latency_ms=usage.latency_ms,
    )
    if usage.finish_reason == "length":
        summary.fail("cut off")
        return replace(costs, error=CUT_OFF)
    try:
        items, steps, flags = parse_answer(answer, turns=shown.turns, steps=shown.steps)
    except AnswerError as exc:
        summary.fail("unreadable answer")
        return replace(costs, error=f"unreadable answer: {exc}")
    summary.scored += 1
    summary.flagged += bool(flags)
    return replace(costs, status=SCORED, items=items, plan_steps=steps, flags=flags)


async def rejudge_record(
    store: Store, backend: Backend, record_id: int, *, settings: SynthSettings | None = None
) -> JudgeResult:
    """Judge one record again, asking the model afresh (the review app's re-judge key)."""
    settings = settings or SynthSettings(backend=backend.name, model=backend.model)
    judge = Judge(store, backend, settings, fresh=True)
    try:
        return await judge.judge_record(record_id)
    finally:
        await judge.aclose()
