"""The synthesis engine: many records in flight, each record's stages in order.

Every call goes through one path (`Synthesizer.call`): the response cache (a resumed run never pays
twice), the stage's learned completion budget, the rate limiter, the backend, and the one retry
loop with exponential backoff and jitter (an answer cut by its budget is asked again once with more).
Every finished stage is committed at once, so `kill -9` loses only the calls in flight.

A database locked by another writer (the review app, a batch) never stalls the event loop: store
work is tried at once without waiting for a lock, and work that would wait goes to one thread the
synthesizer owns (`_in_store`), while the calls in flight keep being sent and answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal, ParamSpec, TypeVar

from studio.cbt.dialogue import (
    Role,
    Turn,
    format_dialogue,
)
from studio.errors import CallFailed as CallFailed  # re-exported: its old home
from studio.model import NEEDS_SYNTHESIS, STAGES, BackendName, Stage, StageStatus, SynthMode
from studio.store import RecordView, StageView, Store
from studio.store.balance import save_technique_choice, technique_totals
from studio.store.connect import BUSY_TIMEOUT_S
from studio.store.synthesis import (
    CachedAnswer,
    CacheEntry,
    StageChanged,
    StageResult,
    cache_get,
    cache_key,
    cache_put_many,
    commit_stage,
    mark_failed,
    records_to_synthesize,
    set_attitude,
)
from studio.synth import chain
from studio.synth.backends import (
    Backend,
    BackendError,
    ChatRequest,
    ChatResponse,
    StructuredOutputUnsupported,
    make_backend,
)
from studio.synth.balance import TechniqueBalancer, target_shares
from studio.synth.ratelimit import CompletionBudgets, RateLimiter
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages, Template, load_template, prompt_hash

P = ParamSpec("P")
T = TypeVar("T")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """Progress for the CLI's bar (and anything else that listens)."""

    kind: Literal["record_done", "stage_done", "call", "retry"]
    record_id: int = 0
    stage: Stage | None = None
    status: StageStatus | None = None
    tokens: int = 0
    detail: str = ""


@dataclass(slots=True)
class SynthSummary:
    records: int = 0
    records_finished: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    """Committed stages per resulting status (generated / invalid / failed)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failed stages per reason (`server unreachable`, `timed out`, `HTTP 500`, …)."""
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    rate_limited: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    def count(self, status: StageStatus) -> None:
        self.stages[status.value] = self.stages.get(status.value, 0) + 1

    def count_failure(self, reason: str) -> None:
        self.count(StageStatus.FAILED)
        self.failures[reason] = self.failures.get(reason, 0) + 1


Listener = Callable[[SynthEvent], None]


@dataclass(slots=True)
class _Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    hashes: list[str] = field(default_factory=list)
    finish_reason: str = ""
    """Why the last answer ended (`length`: cut at its token budget, even after the retry)."""
    answers: list[CacheEntry] | None = None
    """Where `call` leaves the answers to cache when the caller commits them with its stage (one
    transaction per stage); None: each answer is cached at once."""


@dataclass(frozen=True, slots=True)
class _Agent:
    """Where one agent's calls go in two-agent mode, when not to the counselor's backend."""

    backend: Backend
    settings: SynthSettings


class Synthesizer:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        settings: SynthSettings,
        *,
        on_event: Listener | None = None,
        limiter: RateLimiter | None = None,
        fresh: bool = False,
    ) -> None:
        self.store = store
        self.backend = backend
        self.settings = settings
        self.on_event = on_event or (lambda event: None)
        self.limiter = limiter or RateLimiter(
            rpm=settings.rpm,
            tpm=settings.tpm,
            max_in_flight=settings.concurrency,
            burst_s=settings.burst_s,
            requests_header_per_day=backend.name == BackendName.GROQ,
        )
        self.budgets = CompletionBudgets()
        """Per-stage completion budgets (`max_tokens` asked for), learned from the answers."""
        self._probes: dict[str, asyncio.Event] = {}
        self.summary = SynthSummary()
        self.fresh = fresh
        """Skip cached answers (regenerating asks the model again); answers are still cached."""
        self._client: _Agent | None = None
        self._balancer: TechniqueBalancer | None = None
        """`--balance`: technique counts, read from the database on the first choice."""
        self._store_thread: ThreadPoolExecutor | None = None
        """The one thread that runs this synthesizer's SQLite work that must wait for a lock."""
        self._queued = 0
        """Store jobs on that thread, not yet finished (under `_queued_lock`)."""
        self._queued_lock = threading.Lock()
        self._prompts = settings.prompts_dir

    async def _in_store(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` (SQLite reads and writes, each write one transaction) without stalling the
        event loop on a lock. Tried here first with no busy wait: unlocked, a stage's store work
        takes well under a millisecond, and handing every call to a thread cost a third more CPU
        per call (GIL hand-overs on each statement). Locked by another writer, SQLite refuses at
        once (`BEGIN IMMEDIATE` takes the write lock before anything is written, so nothing was
        done) and the work waits on the synthesizer's store thread instead; while that thread
        has work, everything goes there, in order."""
        job = functools.partial(work, *args, **kwargs)
        with self._queued_lock:
            fast = self._queued == 0
        if fast:
            try:
                with _no_busy_wait(self.store.conn):
                    return job()
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
        with self._queued_lock:
            self._queued += 1
        if self._store_thread is None:
            self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="synth-store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_thread, self._queued_job, job)

    def _queued_job(self, job: Callable[[], T]) -> T:
        """On the store thread: `job` with the connection's full busy timeout."""
        try:
            return job()
        finally:
            with self._queued_lock:
                self._queued -= 1

    # -- a whole run ----------------------------------------------------------------------

    async def run(self, *, limit: int | None = None) -> SynthSummary:
        started = time.monotonic()
        record_ids = await self._in_store(
            records_to_synthesize,
            self.store,
            mode=self.settings.mode,
            attitudes=chain.ATTITUDES,
            limit=limit,
        )
        self.summary.records = len(record_ids)

        async def one(record_id: int) -> None:
            await self.synthesize_record(record_id)
            self.summary.records_finished += 1
            self.on_event(SynthEvent("record_done", record_id))

        try:
            await for_each_concurrently(record_ids, one, self.settings.concurrency)
        finally:
            self.summary.elapsed_s = time.monotonic() - started
            self.summary.rate_limited = self.limiter.stats.rate_limited
            await self.aclose()
        return self.summary

    async def synthesize_record(self, record_id: int) -> None:
        """Run the record's chain from its first stage that needs work; stop at a blocked stage."""
        record = await self._in_store(self.store.record, record_id)
        if not record.attitude:
            attitude = chain.ATTITUDES[record.seed_id % len(chain.ATTITUDES)]
            await self._in_store(set_attitude, self.store, record_id, attitude)
            record = await self._in_store(self.store.record, record_id)
        for stage in STAGES:
            status = record.stages[stage].status
            if status in (StageStatus.INVALID, StageStatus.REJECTED):
                return  # blocked until a reviewer regenerates or edits it
            if status not in NEEDS_SYNTHESIS:
                continue
            try:
                saved = await self._generate_and_commit(record, stage)
            except StageChanged as exc:
                # A reviewer (or another run) got there first; their work wins.
                self.summary.stages["skipped"] = self.summary.stages.get("skipped", 0) + 1
                self.on_event(SynthEvent("stage_done", record_id, stage, detail=str(exc)))
                return
            if saved is None or saved.stages[stage].status is not StageStatus.GENERATED:
                return
            record = saved  # as committed: the next stage's `expected` is exact

    async def generate_and_save(
        self, record: RecordView, stage: Stage, *, reviewer: str = "", action: str = "generate"
    ) -> StageView | None:
        """Generate and commit one stage; downstream stages that had text become stale.
        Returns None when the call failed (the stage is then `failed` with the reason)."""
        saved = await self._generate_and_commit(record, stage, reviewer=reviewer, action=action)
        return None if saved is None else saved.stages[stage]

    async def _generate_and_commit(
        self, record: RecordView, stage: Stage, *, reviewer: str = "", action: str = "generate"
    ) -> RecordView | None:
        """`generate_and_save`, returning the whole record as committed."""
        expected = record.stages[stage]
        answers: list[CacheEntry] = []
        try:
            result = await self.generate_stage(record, stage, answers=answers)
        except CallFailed as exc:
            await self._in_store(
                mark_failed, self.store, record.id, stage, str(exc), expected=expected
            )
            self.summary.count_failure(exc.reason)
            self.on_event(
                SynthEvent("stage_done", record.id, stage, StageStatus.FAILED, detail=str(exc))
            )
            return None
        saved = await self._in_store(
            commit_stage,
            self.store,
            record.id,
            stage,
            result,
            answers=answers,
            reviewer=reviewer,
            action=action,
            expected=expected,
        )
        self.summary.count(result.status)
        self.on_event(
            SynthEvent(
                "stage_done",
                record.id,
                stage,
                result.status,
                result.tokens_in + result.tokens_out,
                result.error,
            )
        )
        return saved

    # -- one stage ------------------------------------------------------------------------

    async def generate_stage(
        self, record: RecordView, stage: Stage, *, answers: list[CacheEntry] | None = None
    ) -> StageResult:
        """Generate one stage from the record's current upstream text (edits win); no commit.
        `answers`: where the stage's single call leaves its answer to cache, for the caller to
        commit with the stage (None: cached at once). Two-agent turns are always cached at once:
        a dialogue is many calls, and a resumed one must not pay for its turns again."""
        inputs = chain.StageInputs(
            seed=record.seed,
            texts={s: record.text(s) for s in STAGES},
            attitude=record.attitude or "neutral",
            min_turns=self.settings.min_turns,
            max_turns=self.settings.max_turns,
        )
        if stage is Stage.DIALOGUE and self._mode(record) is SynthMode.TWO_AGENT:
            return await self._two_agent_dialogue(inputs)
        template = chain.stage_template(stage, self._prompts)
        messages = chain.stage_messages(template, inputs)
        if stage is Stage.CBT_TECHNIQUE and self.settings.balance:
            return await self._balanced_technique(record.id, template, messages)
        schema = chain.technique_schema() if stage is Stage.CBT_TECHNIQUE else None
        usage = _Usage(answers=answers)
        judged: dict[str, chain.Judgement] = {}

        def passes(text: str) -> bool:
            judged[text] = self.settings.judge(stage, text, "")
            return judged[text].ok

        answer = await self.call(
            messages, kind=stage.value, schema=schema, usage=usage, passes=passes
        )
        # The check `call` ran is the verdict, unless the answer was cut (then judged again).
        verdict = judged.get(answer) if usage.finish_reason != "length" else None
        return self._result(
            stage, answer, usage, prompt_hash(messages), template.label, judged=verdict
        )

    async def _balanced_technique(
        self, record_id: int, template: Template, messages: Messages
    ) -> StageResult:
        """`--balance`: ask for a ranked top three and take the highest-ranked technique still
        under its share; the ranking and the choice are stored with the stage."""
        ask = [*messages[:-1], {**messages[-1]}]
        ask[-1]["content"] += "\n\n" + chain.RANKED_NOTE
        usage = _Usage()
        answer = await self.call(
            ask,
            kind=Stage.CBT_TECHNIQUE.value,
            schema=chain.ranked_technique_schema(),
            usage=usage,
            passes=lambda text: chain.read_ranking(text) is not None,
        )
        label = f"{template.label}+ranked"
        ranking = chain.read_ranking(answer)
        if ranking is None or usage.finish_reason == "length":
            result = self._result(Stage.CBT_TECHNIQUE, "", usage, prompt_hash(ask), label)
            error = (
                chain.CUT_AT_TOKEN_LIMIT
                if usage.finish_reason == "length"
                else "no ranked top three of the twelve techniques"
            )
            return replace(result, text=answer, error=error)
        if self._balancer is None:
            shares = target_shares(self.settings.balance_target)
            totals = await self._in_store(technique_totals, self.store)
            self._balancer = TechniqueBalancer(totals, shares)
        chosen = self._balancer.choose(ranking)
        await self._in_store(save_technique_choice, self.store, record_id, ranking, chosen)
        return self._result(Stage.CBT_TECHNIQUE, chosen, usage, prompt_hash(ask), label)

    def _result(
        self,
        stage: Stage,
        answer: str,
        usage: _Usage,
        hashed: str,
        template_version: str,
        *,
        judged: chain.Judgement | None = None,
    ) -> StageResult:
        """Judge an answer (the one rule in `chain.judge_answer`; `judged`: already judged) and
        record what it cost."""
        judged = judged or self.settings.judge(stage, answer, usage.finish_reason)
        return StageResult(
            text=judged.text,
            status=judged.status,
            # A valid text that was cleaned keeps the note of what was removed (also in the event).
            error=judged.error or judged.note,
            model=self.backend.model,
            prompt_hash=hashed,
            template_version=template_version,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            latency_ms=usage.latency_ms,
        )

    def _mode(self, record: RecordView) -> SynthMode:
        try:
            return SynthMode(record.mode)
        except ValueError:  # a record not yet written (no mode): the run's own
            return self.settings.mode

    async def _two_agent_dialogue(self, inputs: chain.StageInputs) -> StageResult:
        """The CACTUS protocol: a fixed opening exchange, then counselor and client take turns
        until the client ends the session with `[/END]` (not before `agent_min_turns`) or the
        turn limit; the counselor then closes the session in one last turn."""
        folder = self._prompts
        counselor = load_template(chain.COUNSELOR_TEMPLATE, folder)
        client = load_template(chain.CLIENT_TEMPLATE, folder)
        usage = _Usage()
        turns = chain.opening_exchange(inputs)
        may_end = min(self.settings.agent_min_turns, self.settings.max_turns)
        # Room for a counselor turn, a client turn and the closing turn.
        while len(turns) + 3 <= self.settings.max_turns:
            said = await self._agent_turn(counselor, Role.COUNSELOR, inputs, turns, usage)
            turns.append(Turn(Role.COUNSELOR, said.text))
            said = await self._agent_turn(client, Role.CLIENT, inputs, turns, usage)
            turns.append(Turn(Role.CLIENT, said.text))
            if said.ended and len(turns) + 1 >= may_end:
                break
        said = await self._agent_turn(
            counselor, Role.COUNSELOR, inputs, turns, usage, note=chain.CLOSING_NOTE
        )
        turns.append(Turn(Role.COUNSELOR, said.text))
        usage.finish_reason = ""  # each turn was checked on its own; the whole is judged below
        # Judged like a script-mode dialogue: the same checks, the same normalized text.
        return self._result(
            Stage.DIALOGUE,
            format_dialogue(turns),
            usage,
            prompt_hash([{"role": "calls", "content": "".join(usage.hashes)}]),
            f"{counselor.label}+{client.label}",
        )

    async def _agent_turn(
        self,
        template: Template,
        role: Role,
        inputs: chain.StageInputs,
        turns: list[Turn],
        usage: _Usage,
        *,
        note: str = "",
    ) -> chain.TurnVerdict:
        """One agent turn; an unusable answer (empty, a bare marker or label, a turn for the other
        role, cut at the token limit) is asked again with a nudge, then the stage fails."""
        agent = self._client_agent() if role is Role.CLIENT else None
        error = ""
        for _ in range(chain.AGENT_TURN_ATTEMPTS):
            turn_note = " ".join(filter(None, [note, chain.nudge(role, error) if error else ""]))
            messages = chain.stage_messages(
                template,
                inputs,
                dialogue_history=chain.history_text(turns),
                agent_min_turns=str(min(self.settings.agent_min_turns, self.settings.max_turns)),
                turn_note=turn_note,
            )

            def usable(answer: str) -> bool:
                return not chain.judge_turn(role, answer).error

            answer = await self.call(
                messages,
                kind=f"turn:{role.value}",
                schema=None,
                usage=usage,
                passes=usable,
                agent=agent,
            )
            verdict = chain.judge_turn(role, answer)
            if usage.finish_reason == "length":
                verdict = chain.TurnVerdict("", error=chain.CUT_AT_TOKEN_LIMIT)
            if not verdict.error:
                return verdict
            error = verdict.error
            self.on_event(SynthEvent("retry", detail=f"{role.label} agent: {error}"))
        raise CallFailed(
            f"the {role.label.lower()} agent gave no usable turn after"
            f" {chain.AGENT_TURN_ATTEMPTS} tries: {error}"
        )

    def _client_agent(self) -> _Agent | None:
        """The client agent's own backend, where `client_backend` / `client_model` set one."""
        client = self.settings.client_settings()
        if client is self.settings:
            return None
        if self._client is None:
            self._client = _Agent(make_backend(client), client)
        return self._client

    async def aclose(self) -> None:
        """Close what this synthesizer opened itself (the client agent's backend, the store
        thread; a later call starts a new one)."""
        if self._client is not None:
            await self._client.backend.aclose()
            self._client = None
        if self._store_thread is not None:
            self._store_thread.shutdown(wait=False)  # idle: every store call was awaited
            self._store_thread = None

    # -- one call: cache, limiter, backend, retries ----------------------------------------

    async def call(
        self,
        messages: Messages,
        *,
        kind: str,
        schema: dict[str, object] | None,
        usage: _Usage,
        passes: Callable[[str], bool] | None = None,
        agent: _Agent | None = None,
    ) -> str:
        """One answer. Only an answer that `passes` its check and was not cut at the token limit
        is cached: a prompt whose answer failed is asked again, never answered from the cache.
        `agent` sends the call to another backend (two-agent mode's client)."""
        backend = agent.backend if agent else self.backend
        settings = agent.settings if agent else self.settings
        if not backend.supports_json_schema:
            schema = None
        key = cache_key(settings.cache_parameters(), messages, schema)
        usage.hashes.append(key)
        cached = await self._from_cache(key, usage, passes)
        if cached is not None:
            return cached
        maximum = settings.max_tokens
        # A local model charges nothing up front: it may always have the stage's maximum.
        learn = settings.token_budgets and backend.name != BackendName.LOCAL
        probe = None
        if learn and self.limiter.tpm and not self.budgets.known(kind):
            # Under a token limit the first call of a kind goes alone: the others would each
            # reserve the initial guess against the limit, and one answer teaches the budget.
            probe = await self._first_of_kind(kind)
        budget = self.budgets.budget(kind, maximum) if learn else maximum
        request = ChatRequest(
            messages=messages,
            max_tokens=budget,
            temperature=settings.temperature,
            json_schema=schema,
        )
        prompt_chars = sum(len(m["content"]) for m in messages)
        try:
            return await self._attempts(
                request, kind, key, prompt_chars, maximum, learn, usage, backend, passes
            )
        finally:
            if probe is not None:
                probe.set()

    async def _from_cache(
        self, key: str, usage: _Usage, passes: Callable[[str], bool] | None
    ) -> str | None:
        """The cached answer to `key`, counted into `usage`, if there is one that still passes
        its check (and this run does not ask afresh)."""
        if self.fresh:
            return None
        cached = await self._in_store(cache_get, self.store, key)
        if cached is None or (passes is not None and not passes(cached.text)):
            return None
        self.summary.cache_hits += 1
        usage.tokens_in += cached.tokens_in
        usage.tokens_out += cached.tokens_out
        usage.finish_reason = ""
        return cached.text

    async def _keep(
        self, key: str, backend: Backend, response: ChatResponse, usage: _Usage
    ) -> None:
        """Cache an answer: with the caller's stage commit when it collects them, else at once."""
        entry = CacheEntry(
            key,
            backend.name,
            backend.model,
            CachedAnswer(response.text, response.tokens_in, response.tokens_out),
        )
        if usage.answers is not None:
            usage.answers.append(entry)
        else:
            await self._in_store(cache_put_many, self.store, [entry])

    async def _first_of_kind(self, kind: str) -> asyncio.Event | None:
        """Wait for the first answer of `kind` if one is on its way; else return the event this
        call sets when its answer arrives."""
        pending = self._probes.get(kind)
        if pending is not None:
            await pending.wait()
            return None
        self._probes[kind] = asyncio.Event()
        return self._probes[kind]

    async def _attempts(
        self,
        request: ChatRequest,
        kind: str,
        key: str,
        prompt_chars: int,
        maximum: int,
        learn: bool,
        usage: _Usage,
        backend: Backend,
        passes: Callable[[str], bool] | None,
    ) -> str:
        """Send `request` through the limiter until an answer comes (retries, one larger budget
        for an answer cut short); count it, cache it unless it was cut, return its text."""
        attempt = 0
        cut_retried = False
        while True:
            attempt += 1
            estimate = self.limiter.estimate(prompt_chars, request.max_tokens)
            permit = await self.limiter.acquire(estimate, kind)
            started = time.monotonic()
            try:
                response = await backend.complete(request)
            except StructuredOutputUnsupported:
                self.limiter.release(permit, tokens=0)
                request = replace(request, json_schema=None)
                attempt -= 1
                continue
            except BackendError as exc:
                self.limiter.release(
                    permit,
                    headers=exc.headers,
                    rate_limited=exc.rate_limited,
                    retry_after=exc.retry_after,
                )
                if not exc.retryable or attempt >= self.settings.max_attempts:
                    raise CallFailed(
                        f"{exc} (after {attempt} attempt{'s' * (attempt > 1)})",
                        failure_reason(exc),
                    ) from exc
                self.summary.retries += 1
                self.on_event(SynthEvent("retry", detail=str(exc)))
                if not exc.rate_limited:  # the limiter already pauses everyone after a 429
                    await asyncio.sleep(backoff_delay(attempt, exc.retry_after))
                continue
            except BaseException:
                self.limiter.release(permit, tokens=estimate)
                raise
            # Counted the way providers count: the prompt plus the completion asked for.
            spent = response.tokens_in + max(request.max_tokens, response.tokens_out)
            self.limiter.release(
                permit, tokens=spent if response.tokens_in else estimate, headers=response.headers
            )
            self.limiter.learn(prompt_chars, response.tokens_in)
            self._count(response, usage)
            if response.finish_reason == "length" and learn:
                self.budgets.cut(kind, request.max_tokens)
                if request.max_tokens < maximum and not cut_retried:
                    # Cut by a budget that was too small: ask once more with room, never keep
                    # the short answer. A second cut is passed on (the stage is then invalid).
                    cut_retried = True
                    cut_at = request.max_tokens
                    larger = self.budgets.larger(kind, cut_at, maximum)
                    request = replace(request, max_tokens=larger)
                    self.summary.retries += 1
                    self.on_event(SynthEvent("retry", detail=f"cut at {cut_at} tokens"))
                    continue
            elif learn:
                self.budgets.observe(kind, response.tokens_out)
            break
        usage.latency_ms += int((time.monotonic() - started) * 1000)
        usage.finish_reason = response.finish_reason
        # A cut answer, or one that failed its check, is never served from the cache.
        if response.finish_reason != "length" and (passes is None or passes(response.text)):
            await self._keep(key, backend, response, usage)
        return response.text

    def _count(self, response: ChatResponse, usage: _Usage) -> None:
        """Every answer received costs, the cut ones retried included."""
        self.summary.calls += 1
        self.summary.tokens_in += response.tokens_in
        self.summary.tokens_out += response.tokens_out
        usage.tokens_in += response.tokens_in
        usage.tokens_out += response.tokens_out
        self.on_event(SynthEvent("call", tokens=response.tokens_in + response.tokens_out))


@contextlib.contextmanager
def _no_busy_wait(conn: sqlite3.Connection) -> Iterator[None]:
    """SQLite answers "database is locked" at once instead of waiting out the busy timeout."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _locked(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    ) or ("locked" in str(exc))


Item = TypeVar("Item")


async def for_each_concurrently(
    ids: Sequence[Item], job: Callable[[Item], Awaitable[object]], concurrency: int
) -> None:
    """Run `job` on every item with at most `concurrency` in flight. A failure (or Ctrl-C)
    cancels the others and is raised once they have stopped, so no task outlives the run."""
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in ids:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await job(item)

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(ids)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


def failure_reason(exc: BackendError) -> str:
    """Group a backend's error for the summary: what to fix differs per group (start the server,
    wait out a quota, raise the timeout, look at the server's logs)."""
    if exc.status == 429:
        return "rate-limited"
    if exc.status is not None:
        return f"HTTP {exc.status}"
    message = str(exc)
    if message.startswith("cannot reach"):
        return "server unreachable"
    if "timed out" in message:
        return "timed out"
    if message.startswith("malformed") or "no choices" in message:
        return "malformed answer"
    return "other"


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's retry-after is a floor."""
    delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
    return max(delay, retry_after) if retry_after is not None else delay


async def regenerate_stage(
    store: Store,
    backend: Backend,
    record_id: int,
    stage: Stage,
    *,
    settings: SynthSettings | None = None,
    reviewer: str = "",
) -> StageView:
    """Regenerate one stage from its current (possibly edited) upstream text and commit it;
    the stages generated from it become `stale`. Raises `CallFailed` if the backend gives no answer
    (the stage is then `failed` with the reason) or if the stage changed while the answer was
    on its way (then nothing is written).
    """
    settings = settings or SynthSettings(backend=backend.name, model=backend.model)
    synthesizer = Synthesizer(store, backend, settings, fresh=True)
    try:
        record = await synthesizer._in_store(store.record, record_id)
        view = await synthesizer.generate_and_save(
            record, stage, reviewer=reviewer, action="regenerate"
        )
    except StageChanged as exc:
        raise CallFailed(str(exc)) from exc
    finally:
        await synthesizer.aclose()
    if view is None:
        raise CallFailed(store.stage(record_id, stage).error)
    return view
