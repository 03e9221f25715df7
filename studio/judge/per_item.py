"""The judge's per-item mode (`studio judge --per-item`): one call per CTRS item, as the CACTUS
evaluation asked, and one more for technique fidelity and the safety flags.

Each call has its own prompt (`prompts/judge_<item>.md`, `prompts/judge_fidelity.md`), so the
model attends to one rubric at a time; whether that agrees better with a clinician than the one
structured call is what `bench/judge_modes.py` measures. The seven answers make one judgement,
stored like the one call's: it is `scored` only when every answer is readable, else `failed`
with the first reason and every raw answer, and its `template_version` starts with `per-item:`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from studio.cbt.ctrs import CTRS_ITEMS, FIDELITY
from studio.judge.answer import (
    AnswerError,
    item_schema,
    parse_item_answer,
    parse_rest_answer,
    rest_schema,
)
from studio.judge.engine import CUT_OFF, Judge, JudgeInput, judge_input
from studio.store.judging import FAILED, SCORED, ItemScore, JudgeResult, save_judgement, text_hash
from studio.synth.engine import CallFailed, _Usage
from studio.synth.templates import Messages, load_template, prompt_hash

PER_ITEM = "per-item"
ONE_CALL = "one-call"
MODES = (ONE_CALL, PER_ITEM)
REST = FIDELITY
"""The last call's name: fidelity, with the plan steps covered and the safety flags."""


def item_template(part: str) -> str:
    return f"judge_{part}"


@dataclass(slots=True)
class _Answer:
    part: str
    raw: str = ""
    error: str = ""
    reason: str = ""
    usage: _Usage | None = None


class PerItemJudge(Judge):
    """`Judge` with one call per item; everything else (the run, the cache, storage) is shared."""

    async def judge_record(self, record_id: int) -> JudgeResult:
        shown = judge_input(self.store, record_id)
        judged_hash = text_hash(shown.dialogue)
        parts = (*CTRS_ITEMS, REST)
        templates = {p: load_template(item_template(p), self.settings.prompts_dir) for p in parts}
        messages = {p: shown.messages(templates[p]) for p in parts}
        try:
            answers = await asyncio.gather(*(self._ask(p, messages[p], shown) for p in parts))
        finally:
            # The engine is this judge's own: its totals are the run's (a difference taken around
            # the await would count the calls of records judged meanwhile twice).
            self.summary.calls = self.engine.summary.calls
            self.summary.cache_hits = self.engine.summary.cache_hits
            self.summary.retries = self.engine.summary.retries
        usages = [a.usage for a in answers if a.usage is not None]
        self.summary.tokens += sum(u.tokens_in + u.tokens_out for u in usages)
        all_messages: Messages = [m for p in parts for m in messages[p]]
        result = JudgeResult(
            status=FAILED,
            model=self.engine.backend.model,
            template_version=f"{PER_ITEM}:"
            + ",".join(f"{item_template(p)}@{templates[p].version}" for p in parts),
            prompt_hash=prompt_hash(all_messages),
            raw="\n\n".join(f"--- {a.part} ---\n{a.raw}" for a in answers if a.raw),
            tokens_in=sum(u.tokens_in for u in usages),
            tokens_out=sum(u.tokens_out for u in usages),
            latency_ms=sum(u.latency_ms for u in usages),
        )
        failed = next((a for a in answers if a.error), None)
        if failed is not None:
            self.summary.fail(failed.reason)
            result = replace(result, error=f"{failed.part}: {failed.error}")
        else:
            result = self._combine(result, {a.part: a.raw for a in answers}, shown)
        save_judgement(self.store, record_id, judged_hash, result)
        self.on_done(record_id, result)
        return result

    async def _ask(self, part: str, messages: Messages, shown: JudgeInput) -> _Answer:
        usage = _Usage()

        def readable(text: str) -> bool:
            try:
                self._parse(part, text, shown)
            except AnswerError:
                return False
            return True

        schema = rest_schema() if part == REST else item_schema(part)
        try:
            raw = await self.engine.call(
                messages, kind="judge", schema=schema, usage=usage, passes=readable
            )
        except CallFailed as exc:
            return _Answer(part, error=str(exc), reason=exc.reason, usage=usage)
        if usage.finish_reason == "length":
            return _Answer(part, raw, error=CUT_OFF, reason="cut off", usage=usage)
        try:
            self._parse(part, raw, shown)
        except AnswerError as exc:
            reason = "unreadable answer"
            return _Answer(part, raw, error=f"{reason}: {exc}", reason=reason, usage=usage)
        return _Answer(part, raw, usage=usage)

    @staticmethod
    def _parse(part: str, text: str, shown: JudgeInput) -> object:
        if part == REST:
            return parse_rest_answer(text, turns=shown.turns, steps=shown.steps)
        return parse_item_answer(text, part)

    def _combine(self, result: JudgeResult, raws: dict[str, str], shown: JudgeInput) -> JudgeResult:
        items: dict[str, ItemScore] = {i: parse_item_answer(raws[i], i) for i in CTRS_ITEMS}
        fidelity, steps, flags = parse_rest_answer(raws[REST], turns=shown.turns, steps=shown.steps)
        items[FIDELITY] = fidelity
        self.summary.scored += 1
        self.summary.flagged += bool(flags)
        return replace(result, status=SCORED, items=items, plan_steps=steps, flags=flags)


def judge_class(mode: str) -> type[Judge]:
    """The judge of a mode (`one-call`, the default, or `per-item`)."""
    return PerItemJudge if mode == PER_ITEM else Judge
