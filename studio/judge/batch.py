"""`studio judge --batch`: judge prompts through the batch machinery of `studio synth --batch`.

`BatchJudge` is a job kind of `studio.synth.batch.BatchRunner`: the same files + batches calls,
the same `batches` / `batch_requests` rows (job `judge`), so the same guarantees (written before
sent, found again after a kill, never submitted twice, unanswered requests returned with the
reason). It supplies one request per record to judge, rendered exactly as a live judge call, and
reads each answer through the live judge's reader (`read_answer`): an unreadable or out-of-range
answer is stored as a failed judgement with the raw text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from studio.judge.answer import AnswerError, judge_schema, parse_answer
from studio.judge.engine import (
    JUDGE_TEMPLATE,
    JudgeInput,
    JudgeSummary,
    judge_input,
    judge_settings,
    read_answer,
)
from studio.store import Store
from studio.store.batches import (
    BatchRequest,
    BatchRow,
    Job,
    JudgeJob,
    PlannedRequest,
    RequestState,
    finish_request,
    record_in_flight,
)
from studio.store.judging import (
    FAILED,
    SCORED,
    JudgeResult,
    records_to_judge,
    save_judgement,
    text_hash,
)
from studio.store.synthesis import CachedAnswer, cache_get, cache_key, cache_put
from studio.synth.batch import Answer, BatchRunner, Listener, Prepared
from studio.synth.batch_api import MAX_BYTES, MAX_REQUESTS, BatchClient
from studio.synth.batch_estimate import CHARS_PER_TOKEN
from studio.synth.engine import _Usage
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages, Template, load_template, prompt_hash

JOBS: frozenset[Job] = frozenset({JudgeJob.JUDGE})


class BatchJudge(BatchRunner):
    """Judges every dialogue without a current score through batches."""

    jobs = JOBS

    def __init__(
        self,
        store: Store,
        client: BatchClient,
        settings: SynthSettings,
        *,
        rejudge: bool = False,
        window: str = "24h",
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_BYTES,
        on_poll: Listener | None = None,
    ) -> None:
        super().__init__(
            store,
            client,
            judge_settings(settings),
            window=window,
            max_requests=max_requests,
            max_bytes=max_bytes,
            on_poll=on_poll,
        )
        self.rejudge = rejudge
        """Judge every dialogue again and ask the model afresh (no answer from the cache)."""
        self._stored: set[int] = set()
        """Records judged by this run: a failed judgement waits for the next run, as a live
        judge's does (`--wait` would otherwise ask a model that answers badly, forever)."""
        self.judged = JudgeSummary()
        """The judgements stored this run, failures per reason (as `studio judge` counts them)."""

    # -- requests -----------------------------------------------------------------------------

    def _ready(self, *, limit: int | None = None) -> Iterator[tuple[Job, Prepared]]:
        template = load_template(JUDGE_TEMPLATE, self.settings.prompts_dir)
        # `--limit N`: at most N records this run, over all its rounds.
        room = None if limit is None else limit - len(self._sent) - self.summary.cache_hits
        for record_id in records_to_judge(self.store, rejudge=self.rejudge):
            if room is not None and room <= 0:
                return
            if record_id in self._stored or (record_id, JudgeJob.JUDGE) in self._sent:
                continue
            if record_in_flight(self.store, record_id, JOBS):
                continue
            prepared = self._prepare(record_id, template)
            if room is not None:
                room -= 1
            if prepared is not None:
                yield JudgeJob.JUDGE, prepared

    def _schema(self) -> dict[str, Any] | None:
        return judge_schema() if self.settings.structured_output else None

    def _prepare(self, record_id: int, template: Template) -> Prepared | None:
        """The record's judge request, as a live call would send it (same template, same cache
        key); None when the cache had a readable answer (stored now)."""
        shown = judge_input(self.store, record_id)
        messages = shown.messages(template)
        schema = self._schema()
        key = cache_key(self.settings.cache_parameters(), messages, schema)
        hashed = prompt_hash(messages)
        cached = None if self.rejudge else cache_get(self.store, key)
        if cached is not None and _readable(cached.text, shown):
            usage = _Usage(tokens_in=cached.tokens_in, tokens_out=cached.tokens_out)
            base = _base(self.settings.model_id, template.label, hashed)
            self._store(record_id, text_hash(shown.dialogue), cached.text, usage, shown, base)
            self.summary.cache_hits += 1
            self.judged.cache_hits += 1
            return None
        planned = PlannedRequest(
            record_id=record_id,
            stage=JudgeJob.JUDGE,
            cache_key=key,
            prompt_hash=hashed,
            template_version=template.label,
            # For the judge: the hash of the dialogue it reads (a score belongs to that text).
            stage_updated_at=text_hash(shown.dialogue),
        )
        return self._prepared(planned, messages, schema)

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, row: BatchRow, request: BatchRequest, answer: Answer) -> None:
        cid = request.custom_id
        shown = judge_input(self.store, request.record_id)
        judged_hash = text_hash(shown.dialogue)
        if judged_hash != request.stage_updated_at:
            # The dialogue changed meanwhile: the answer scores a text that is gone (the
            # tokens were still paid); the next run judges the new text.
            finish_request(
                self.store,
                cid,
                RequestState.SKIPPED,
                error="the dialogue changed meanwhile",
                tokens_in=answer.tokens_in,
                tokens_out=answer.tokens_out,
            )
            self.summary.count("skipped")
            return
        usage = _Usage(
            tokens_in=answer.tokens_in,
            tokens_out=answer.tokens_out,
            finish_reason=answer.finish_reason,
        )
        base = _base(answer.model, request.template_version, request.prompt_hash)
        with self.store.transaction():
            result = self._store(request.record_id, judged_hash, answer.text, usage, shown, base)
            finish_request(
                self.store,
                cid,
                RequestState.ANSWERED,
                error=result.error,
                tokens_in=answer.tokens_in,
                tokens_out=answer.tokens_out,
            )
            if result.status == SCORED:
                cache_put(
                    self.store,
                    request.cache_key,
                    self.settings.backend,
                    row.model,
                    CachedAnswer(answer.text, answer.tokens_in, answer.tokens_out),
                )

    def _store(
        self,
        record_id: int,
        judged_hash: str,
        text: str,
        usage: _Usage,
        shown: JudgeInput,
        base: JudgeResult,
    ) -> JudgeResult:
        """Read an answer like a live one and commit the judgement (a failed one too)."""
        result = read_answer(self.judged, base, text, usage, shown)
        save_judgement(self.store, record_id, judged_hash, result)
        self._stored.add(record_id)
        self.judged.records += 1
        self.judged.tokens += usage.tokens_in + usage.tokens_out
        self.summary.count(result.status)
        return result


def _base(model: str, template_version: str, hashed: str) -> JudgeResult:
    return JudgeResult(
        status=FAILED, model=model, template_version=template_version, prompt_hash=hashed
    )


def _readable(text: str, shown: JudgeInput) -> bool:
    try:
        parse_answer(text, turns=shown.turns, steps=shown.steps)
    except AnswerError:
        return False
    return True


# -- the dry run --------------------------------------------------------------------------------

#: Completion tokens of one judgement where the database has none to learn from.
DEFAULT_JUDGE_TOKENS_OUT = 900


@dataclass(frozen=True, slots=True)
class JudgeEstimate:
    requests: int
    tokens_in: int
    tokens_out: int
    in_flight: int
    """Judge requests already out in batches (not counted again)."""
    learned: bool

    def price(self, settings: SynthSettings, *, batch: bool) -> float | None:
        if settings.price_in is None or settings.price_out is None:
            return None
        live = (self.tokens_in * settings.price_in + self.tokens_out * settings.price_out) / 1e6
        return live * settings.batch_price if batch else live


def estimate_judging(
    store: Store, settings: SynthSettings, *, limit: int | None = None, rejudge: bool = False
) -> JudgeEstimate:
    """What `studio judge --batch` would send now, without writing anything."""
    template = load_template(JUDGE_TEMPLATE, settings.prompts_dir)
    ids = [
        i for i in records_to_judge(store, rejudge=rejudge) if not record_in_flight(store, i, JOBS)
    ][:limit]
    chars = sum(_chars(judge_input(store, i).messages(template)) for i in ids)
    row = store.conn.execute(
        "SELECT AVG(tokens_out) FROM judge_scores WHERE status = ? AND tokens_out > 0", (SCORED,)
    ).fetchone()
    per_answer = float(row[0]) if row and row[0] else None
    in_flight = store.conn.execute(
        "SELECT COUNT(*) FROM batch_requests WHERE state = ? AND stage = ?",
        (RequestState.IN_FLIGHT.value, JudgeJob.JUDGE.value),
    ).fetchone()[0]
    return JudgeEstimate(
        requests=len(ids),
        tokens_in=round(chars / CHARS_PER_TOKEN),
        tokens_out=round(len(ids) * (per_answer or DEFAULT_JUDGE_TOKENS_OUT)),
        in_flight=int(in_flight),
        learned=per_answer is not None,
    )


def _chars(messages: Messages) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)
