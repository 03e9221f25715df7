"""Simulated sessions: the CACTUS protocol with the counselor under test.

Each session starts from its client's opening exchange; the counselor under test and the client
simulator (the two-agent client prompt of `studio synth`) take turns until the client ends with
`[/END]` (not before `min_turns` turns) or `max_exchanges` exchanges were spoken. The judge then
scores the transcript (CTRS items, safety flags) and PANAS is rated before (from the intake form)
and after (from the transcript).

Every model call goes through the synthesis engine's one call path (`Synthesizer.call`): the
response cache, the rate limiter and the retry loop. A session is committed when it is finished,
so after `kill -9` a rerun skips the finished ones and replays the calls of the interrupted ones
from the cache: nothing is paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from studio.cbt.ctrs import CTRS_ITEMS
from studio.cbt.dialogue import Role, Turn, format_dialogue, parse_dialogue
from studio.evaluate.clients import EvalClient
from studio.evaluate.panas import (
    PANAS_TEMPLATE,
    PanasError,
    affect,
    panas_messages,
    panas_schema,
    parse_panas,
)
from studio.evaluate.storage import (
    FAILED,
    FINISHED,
    EvaluationRow,
    SessionRow,
    finished_keys,
    save_session,
)
from studio.judge.answer import AnswerError, judge_schema, parse_answer
from studio.judge.engine import JUDGE_TEMPLATE, JudgeInput
from studio.model import BackendName, Seed, Stage
from studio.store import Store
from studio.store.synthesis import CachedAnswer, cache_key, cache_put
from studio.synth import chain
from studio.synth.backends import Backend
from studio.synth.engine import CallFailed, Synthesizer, _Usage, for_each_concurrently
from studio.synth.ratelimit import RateLimiter
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages, load_template

#: A counselor turn the model under test left empty: kept visible, so the judge sees the silence.
SILENCE = "(no answer)"


@dataclass(frozen=True, slots=True)
class Counselor:
    """The counselor under test and how it is prompted."""

    settings: SynthSettings
    label: str
    kind: str
    """`adapter` (a studio run: its own chat template, system prompt and context mode), `base`
    (a local model without adapter) or `api` (a chat-completions model, e.g. the teacher)."""
    context: str = "history"
    system_prompt: str = ""
    run_id: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "backend": self.settings.backend,
            "model": self.settings.model_id,
            "adapter": self.settings.adapter or "",
            "context": self.context,
        }


@dataclass(frozen=True, slots=True)
class EvalPlan:
    """What decides an evaluation's sessions (its key is a hash of this and the counselor)."""

    clients: tuple[EvalClient, ...]
    max_exchanges: int = 20
    min_turns: int = 20
    source: str = "held-out"

    def describe(self, client: SynthSettings, judge: SynthSettings) -> dict[str, Any]:
        return {
            "clients": self.source,
            "sessions": len(self.clients),
            "attitudes": sorted({c.attitude for c in self.clients}),
            "max_exchanges": self.max_exchanges,
            "min_turns": self.min_turns,
            "client": {"backend": client.backend, "model": client.model_id},
            "judge": {"backend": judge.backend, "model": judge.model_id},
        }


def evaluation_key(counselor: Counselor, plan: EvalPlan, settings: dict[str, Any]) -> str:
    data = {
        "counselor": counselor.describe() | {"temperature": counselor.settings.temperature},
        "settings": settings,
        "clients": [
            (c.key, c.attitude, c.intake_form, [tuple(t) for t in c.opening]) for c in plan.clients
        ],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def counselor_system(counselor: Counselor, client: EvalClient) -> str:
    """The system text the counselor under test gets, as `studio.train.dataset.system_message`
    built it in training. For an adapter, `LocalBackend` puts the run's own system prompt in
    front (and drops this context when the run trained on the history alone)."""
    from studio.train.dataset import SYSTEM_PROMPT

    context = ""
    if counselor.context == "plan":
        context = (
            f"Client intake:\n{client.intake_form.strip()}\n\n"
            f"CBT technique: {client.technique.strip()}\n\n"
            f"Counseling plan:\n{client.plan.strip()}"
        )
    if counselor.kind == "adapter":
        return context
    head = counselor.system_prompt or SYSTEM_PROMPT
    return f"{head}\n\n{context}" if context else head


def counselor_messages(counselor: Counselor, client: EvalClient, turns: Sequence[Turn]) -> Messages:
    """System message plus the dialogue so far: counselor → assistant, client → user (training's
    `dialogue_messages`)."""
    from studio.train.dataset import dialogue_messages

    system = counselor_system(counselor, client)
    history = [
        {"role": m["role"], "content": m["content"]}
        for m in dialogue_messages(format_dialogue(list(turns)))
    ]
    return [{"role": "system", "content": system}, *history]


@dataclass(slots=True)
class EvalProgress:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    calls: int = 0
    cache_hits: int = 0
    elapsed_s: float = 0.0


Listener = Callable[[SessionRow], None]


def shared_limiter(engine: Synthesizer, settings: SynthSettings) -> RateLimiter | None:
    """`engine`'s rate limiter when `settings` call the same model at the same server."""
    mine = engine.settings
    same = (mine.backend, mine.base_url or "", mine.model_id) == (
        settings.backend,
        settings.base_url or "",
        settings.model_id,
    )
    return engine.limiter if same and settings.backend is not BackendName.LOCAL else None


class Evaluator:
    def __init__(
        self,
        store: Store,
        evaluation: EvaluationRow,
        plan: EvalPlan,
        counselor: Counselor,
        backends: tuple[Backend, Backend, Backend],
        settings: tuple[SynthSettings, SynthSettings],
        *,
        concurrency: int = 8,
        on_session: Listener | None = None,
    ) -> None:
        """`backends`: counselor, client, judge; `settings`: client's, judge's."""
        self.store = store
        self.evaluation = evaluation
        self.plan = plan
        self.counselor = counselor
        client_settings, judge_settings = settings
        turn_limit = (
            len(max((c.opening for c in plan.clients), key=len, default=()))
            + 2 * plan.max_exchanges
        )
        # The client prompt says "at least {agent_min_turns} turns", capped by the turn limit.
        client_settings = replace(
            client_settings,
            agent_min_turns=max(1, plan.min_turns),
            max_turns=max(turn_limit, plan.min_turns, 1),
            min_turns=1,
        )
        self.speaker = Synthesizer(store, backends[0], counselor.settings)
        # Providers limit each model of an account: agents on the same model share one limiter
        # (the client simulator and the judge are often the same API model, or the teacher).
        self.client = Synthesizer(
            store,
            backends[1],
            client_settings,
            limiter=shared_limiter(self.speaker, client_settings),
        )
        judge = replace(judge_settings, temperature=0.0)
        limiter = shared_limiter(self.speaker, judge) or shared_limiter(self.client, judge)
        self.judge = Synthesizer(store, backends[2], judge, limiter=limiter)
        self.concurrency = max(1, concurrency)
        self.on_session = on_session or (lambda session: None)
        self.progress = EvalProgress()

    async def run(self) -> EvalProgress:
        started = time.monotonic()
        done = finished_keys(self.store, self.evaluation.id)
        todo = [c for c in self.plan.clients if (c.key, c.attitude) not in done]
        self.progress.total = len(self.plan.clients)
        self.progress.skipped = len(self.plan.clients) - len(todo)

        async def one(client: EvalClient) -> None:
            session = await self.run_session(client)
            save_session(self.store, session)
            self.progress.done += 1
            self.progress.failed += session.status == FAILED
            self.on_session(session)

        try:
            await for_each_concurrently(todo, one, self.concurrency)
        finally:
            self.progress.elapsed_s = time.monotonic() - started
            engines = (self.speaker, self.client, self.judge)
            self.progress.calls = sum(e.summary.calls for e in engines)
            self.progress.cache_hits = sum(e.summary.cache_hits for e in engines)
        return self.progress

    async def run_session(self, client: EvalClient) -> SessionRow:
        """One session, judged; a failed call makes the session `failed` with the reason."""
        started = time.monotonic()
        usage = _Usage()
        base = SessionRow(
            evaluation_id=self.evaluation.id,
            client_key=client.key,
            attitude=client.attitude,
            status=FAILED,
            record_id=client.record_id,
        )
        try:
            turns, ended_by = await self.converse(client, usage)
            transcript = format_dialogue(turns)
            ctrs, flags = await self.score(client, transcript, usage)
            before = await self.panas(client, "before", client.intake_form, usage)
            after = await self.panas(client, "after", transcript, usage)
        except (CallFailed, AnswerError, PanasError) as exc:
            return replace(base, error=str(exc), elapsed_s=time.monotonic() - started)
        pos_before, neg_before = affect(before)
        pos_after, neg_after = affect(after)
        scores = [ctrs[item]["score"] for item in CTRS_ITEMS]
        return replace(
            base,
            status=FINISHED,
            transcript=transcript,
            turns=len(turns),
            ended_by=ended_by,
            ctrs=ctrs,
            ctrs_mean=sum(scores) / len(scores),
            flags=flags,
            panas_before=before,
            panas_after=after,
            positive_change=float(pos_after - pos_before),
            negative_change=float(neg_after - neg_before),
            tokens=usage.tokens_in + usage.tokens_out,
            elapsed_s=time.monotonic() - started,
        )

    async def converse(self, client: EvalClient, usage: _Usage) -> tuple[list[Turn], str]:
        turns = list(client.opening)
        template = load_template(chain.CLIENT_TEMPLATE, self.client.settings.prompts_dir)
        seed = Seed(persona="", thought=client.thought or "(see the intake form)")
        inputs = chain.StageInputs(
            seed, {Stage.INTAKE_FORM: client.intake_form}, client.attitude, 1, 1
        )
        limit = len(client.opening) + 2 * self.plan.max_exchanges
        while len(turns) < limit:
            if not turns or turns[-1].role is Role.CLIENT:
                turns.append(Turn(Role.COUNSELOR, await self.counselor_turn(client, turns, usage)))
                continue
            said = await self.client._agent_turn(template, Role.CLIENT, inputs, turns, usage)
            turns.append(Turn(Role.CLIENT, said.text))
            if said.ended and len(turns) >= self.plan.min_turns:
                return turns, "client"
        return turns, "limit"

    async def counselor_turn(self, client: EvalClient, turns: list[Turn], usage: _Usage) -> str:
        """The model under test says what it says: its answer is not nudged or retried (that
        is what is measured); a role label it adds is dropped, an empty answer kept as silence."""
        messages = counselor_messages(self.counselor, client, turns)
        before = usage.tokens_in, usage.tokens_out
        answer = await self.speaker.call(messages, kind="eval:counselor", schema=None, usage=usage)
        if usage.finish_reason == "length":
            # The engine never caches a cut answer (synthesis asks again); a counselor under
            # test that talks to its token limit said exactly that, and a resumed session must
            # replay it, or every later turn of the session would be asked (and paid) again.
            key = cache_key(self.counselor.settings.cache_parameters(), messages, None)
            spent = CachedAnswer(answer, usage.tokens_in - before[0], usage.tokens_out - before[1])
            cache_put(self.store, key, self.speaker.backend.name, self.speaker.backend.model, spent)
        text, _ended = chain.clean_turn(answer)
        return text or SILENCE

    async def score(
        self, client: EvalClient, transcript: str, usage: _Usage
    ) -> tuple[dict[str, Any], list[Any]]:
        return await score_transcript(self.judge, client, transcript, usage)

    async def panas(
        self, client: EvalClient, moment: str, material: str, usage: _Usage
    ) -> dict[str, int]:
        template = load_template(PANAS_TEMPLATE, self.judge.settings.prompts_dir)
        messages = panas_messages(
            template, moment=moment, attitude=client.attitude, material=material
        )

        def readable(text: str) -> bool:
            try:
                parse_panas(text)
            except PanasError:
                return False
            return True

        answer = await self.judge.call(
            messages, kind=f"panas:{moment}", schema=panas_schema(), usage=usage, passes=readable
        )
        return parse_panas(answer)

    async def aclose(self) -> None:
        for engine in (self.speaker, self.client, self.judge):
            await engine.aclose()


async def score_transcript(
    judge: Synthesizer, client: EvalClient, transcript: str, usage: _Usage
) -> tuple[dict[str, Any], list[Any]]:
    """The judge's CTRS items and safety flags (its prompt and answer format as `studio judge`)."""
    import re

    shown = JudgeInput(
        technique=client.technique,
        plan=client.plan,
        dialogue=transcript,
        turns=len(parse_dialogue(transcript).turns),
        steps=len(re.findall(r"^\s*(\d+)[.)]", client.plan, re.M)),
    )
    template = load_template(JUDGE_TEMPLATE, judge.settings.prompts_dir)

    def readable(text: str) -> bool:
        try:
            parse_answer(text, turns=shown.turns, steps=shown.steps)
        except AnswerError:
            return False
        return True

    answer = await judge.call(
        shown.messages(template), kind="judge", schema=judge_schema(), usage=usage, passes=readable
    )
    items, _steps, flags = parse_answer(answer, turns=shown.turns, steps=shown.steps)
    ctrs = {
        item: {"score": items[item].score, "explanation": items[item].explanation}
        for item in CTRS_ITEMS
    }
    return ctrs, [f.to_json() for f in flags]
