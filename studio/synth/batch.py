"""Batch synthesis: the chain stage by stage through a server's files + batches endpoints.

Groq's Batch API (and OpenAI's, and any server that copies it) answers a JSONL file of requests
asynchronously, at half the price and outside the per-minute limits. The chain is sequential per
record, so a record goes one stage per batch: every ready intake form in one batch; once those are
back, the techniques; then plans; then dialogues (script mode). `BatchSynthesizer.step` does what
can be done now: collect finished batches, store their answers through the same stage checks as
live answers (`chain.judge_answer`, the response cache, `save_stage_result`), and submit what is
ready.

Nothing is submitted or paid twice: the batch and its requests are written to the database before
anything is sent, the uploaded file's id as soon as the upload returns, the server's batch id as
soon as the batch is created. A run killed between the upload and the create finds its batch on
the server again (by our label in the batch's metadata, or by the input file) before it would
create another one.

The machinery is `BatchRunner`; a job kind supplies the requests and stores the answers:
`BatchSynthesizer` here (stages), `studio.judge.batch.BatchJudge` (judge scores).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from studio.errors import BadInputError
from studio.model import NEEDS_SYNTHESIS, STAGES, Stage, SynthMode
from studio.store import RecordView, Store
from studio.store.batches import (
    RUNNING,
    BatchRequest,
    BatchRow,
    BatchState,
    Job,
    PlannedRequest,
    RequestState,
    batch_requests,
    create_batch,
    drop_batch,
    finish_request,
    get_request,
    in_flight_records,
    last_request_state,
    open_batches,
    record_in_flight,
    return_request,
    update_batch,
)
from studio.store.synthesis import (
    CachedAnswer,
    StageChanged,
    StageResult,
    cache_get,
    cache_key,
    cache_put,
    mark_downstream_stale,
    records_to_synthesize,
    save_stage_result,
    set_attitude,
)
from studio.synth import chain
from studio.synth.batch_api import (
    ENDPOINT,
    MAX_BYTES,
    MAX_REQUESTS,
    BatchClient,
    BatchError,
    ServerBatch,
)
from studio.synth.batch_estimate import next_stage
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages, prompt_hash

# -- one run ------------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchSummary:
    submitted: int = 0
    """Requests sent in new batches this run."""
    batches_submitted: int = 0
    cache_hits: int = 0
    """Stages answered from the response cache instead of a request."""
    stages: dict[str, int] = field(default_factory=dict)
    """Collected stages per resulting status (generated / invalid), and `skipped`."""
    returned: dict[str, int] = field(default_factory=dict)
    """Requests without an answer, back to pending, per reason."""
    waiting: dict[str, int] = field(default_factory=dict)
    """Of those, the ones not sent again by this run (they wait for the next one), per reason."""
    returned_stages: list[tuple[int, Job, str]] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    """Real usage of the results collected this run."""
    in_flight: list[BatchRow] = field(default_factory=list)
    elapsed_s: float = 0.0
    polls: int = 0

    def count(self, status: str) -> None:
        self.stages[status] = self.stages.get(status, 0) + 1

    def count_returned(self, reason: str) -> None:
        self.returned[reason] = self.returned.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class Prepared:
    planned: PlannedRequest
    line: bytes


Listener = Callable[[BatchSummary], None]


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's answer, as the result file gives it."""

    text: str
    finish_reason: str
    model: str
    tokens_in: int
    tokens_out: int


def _stage(request: BatchRequest) -> Stage:
    if not isinstance(request.stage, Stage):
        raise ValueError(f"request {request.custom_id} is not a synthesis stage")
    return request.stage


class BatchRunner:
    """The batch machinery, whatever the job: submit, record, recover, collect, cancel. A job kind
    (`BatchSynthesizer`, `studio.judge.batch.BatchJudge`) supplies the requests (`_ready`) and
    stores their answers (`_answer`); it sees only its own batches (`jobs`)."""

    jobs: frozenset[Job] = frozenset()

    def __init__(
        self,
        store: Store,
        client: BatchClient,
        settings: SynthSettings,
        *,
        window: str = "24h",
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_BYTES,
        on_poll: Listener | None = None,
    ) -> None:
        self._check_settings(settings)
        self.store = store
        self.client = client
        self.settings = settings
        self.window = window
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.on_poll = on_poll or (lambda summary: None)
        self.summary = BatchSummary()
        self._sent: set[tuple[int, Job]] = set()
        """Stages submitted by this run: one that came back unanswered waits for the next run
        (`--wait` would otherwise resubmit a request that a server always refuses, forever)."""

    # -- the loop ---------------------------------------------------------------------------

    async def run(
        self,
        *,
        limit: int | None = None,
        wait: bool = False,
        poll_s: float = 5.0,
        poll_max_s: float = 300.0,
    ) -> BatchSummary:
        """Collect, then submit what is ready; with `wait`, poll (backing off from `poll_s` to
        `poll_max_s`, back to `poll_s` whenever something moved) until nothing is in flight."""
        started = time.monotonic()
        delay = poll_s
        try:
            while True:
                moved = await self.step(limit=limit)
                self.on_poll(self.summary)
                if not wait or not self.summary.in_flight:
                    break
                delay = poll_s if moved else min(poll_max_s, delay * 1.5)
                await asyncio.sleep(delay)
        finally:
            self.summary.elapsed_s = time.monotonic() - started
            self.summary.waiting = {}
            for record_id, stage, reason in set(self.summary.returned_stages):
                if last_request_state(self.store, record_id, stage) is RequestState.RETURNED:
                    self.summary.waiting[reason] = self.summary.waiting.get(reason, 0) + 1
        return self.summary

    async def step(self, *, limit: int | None = None) -> bool:
        """One round: finish half-done submissions, collect finished batches, submit what is
        ready. Returns whether anything changed (a batch moved, results stored, a submission)."""
        self.summary.polls += 1
        moved = await self.recover()
        moved = await self.collect() or moved
        moved = await self.submit_ready(limit=limit) > 0 or moved
        self.summary.in_flight = open_batches(self.store, self.jobs)
        return moved

    # -- half-done submissions ----------------------------------------------------------------

    async def recover(self) -> bool:
        """Batches a killed run left between writing and submitting: one never uploaded is
        forgotten (its requests are ready again); one uploaded is looked for on the server and
        adopted, or created now from the uploaded file."""
        moved = False
        for row in open_batches(self.store, self.jobs):
            if row.state is BatchState.PREPARING:
                drop_batch(self.store, row.id)
                moved = True
            elif row.state is BatchState.UPLOADED and not row.batch_id:
                moved = True
                found = await self.client.find(row.label, row.input_file_id)
                if found is None:
                    try:
                        found = await self._create(row)
                    except BatchError as exc:
                        if exc.status is None:
                            raise  # no answer: the row stays, the next run looks again
                        # Refused (the file is gone): `_create` dropped the row, its stages go
                        # in a new batch. A server error: the row stays for the next round.
                        continue
                self._record_status(row, found, batch_id=found.id)
        return moved

    async def _create(self, row: BatchRow) -> ServerBatch:
        """Create the batch from the row's uploaded file. When the server refuses, no batch
        exists (none is paid for): the row is dropped and its requests are ready again."""
        try:
            return await self.client.create(row.input_file_id, self.window, self._metadata(row))
        except (BadInputError, BatchError) as exc:
            refused = isinstance(exc, BadInputError) or (
                exc.status is not None and exc.status < 500 and exc.status != 429
            )
            if refused:
                drop_batch(self.store, row.id)
            raise

    def _metadata(self, row: BatchRow) -> dict[str, str]:
        return {"studio_batch": row.label, "stage": row.stage.value}

    def _record_status(self, row: BatchRow, found: ServerBatch, **extra: object) -> BatchRow:
        state = found.status if found.status in RUNNING else row.state.value
        return update_batch(
            self.store,
            row.id,
            state=state,
            done=found.completed,
            failed=found.failed,
            error=found.errors,
            **extra,
        )

    # -- collecting ---------------------------------------------------------------------------

    async def collect(self) -> bool:
        moved = False
        for row in open_batches(self.store, self.jobs):
            if not row.batch_id:
                continue
            found = await self._retrieve(row)
            if found is None:
                moved = True
                continue
            if found.status in RUNNING:
                before = (row.state.value, row.done, row.failed)
                row = self._record_status(row, found)
                moved = moved or before != (row.state.value, row.done, row.failed)
                continue
            await self.store_results(row, found)
            moved = True
        return moved

    async def _retrieve(self, row: BatchRow) -> ServerBatch | None:
        """The server's view of a batch; None when the server no longer knows its id (a 404: a
        purged or foreign batch, or another base URL): its requests go back to pending at once,
        since asking again would fail the same way on every later run."""
        try:
            return await self.client.retrieve(row.batch_id)
        except BatchError as exc:
            if exc.status != 404:
                raise
            self.forget(row, f"the server no longer knows batch {row.batch_id} (HTTP 404)")
            return None

    def forget(self, row: BatchRow, reason: str) -> None:
        """Close a batch whose results can never come: every request still out goes back to
        pending with `reason`, and the row is collected with outcome `lost`."""
        for request in batch_requests(self.store, row.id):
            self._return(request, reason)
        update_batch(self.store, row.id, state=BatchState.COLLECTED, outcome=LOST, error=reason)

    async def store_results(self, row: BatchRow, found: ServerBatch) -> None:
        """A batch the server finished (completed, expired, cancelled or failed): its answers are
        judged and stored like live ones; every request without one goes back to pending."""
        if found.output_file_id:
            for line in _jsonl(await self.client.content(found.output_file_id)):
                self._take_result(row, line)
        if found.error_file_id:
            for line in _jsonl(await self.client.content(found.error_file_id)):
                self._take_result(row, line)
        reason = {
            "expired": EXPIRED,
            "cancelled": CANCELLED,
            "failed": f"the batch failed{': ' + found.errors if found.errors else ''}",
        }.get(found.status, f"the batch ended ({found.status}) without an answer")
        for request in batch_requests(self.store, row.id):
            self._return(request, reason)
        update_batch(
            self.store,
            row.id,
            state=BatchState.COLLECTED,
            outcome=found.status,
            done=found.completed,
            failed=found.failed,
            error=found.errors,
        )

    def _take_result(self, row: BatchRow, line: dict[str, Any]) -> None:
        cid = str(line.get("custom_id", ""))
        request = get_request(self.store, cid)
        if (
            request is None
            or request.batch != row.id
            or request.state is not RequestState.IN_FLIGHT
        ):
            return  # not ours, or stored already (a run killed while collecting)
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        if line.get("error") or status != 200:
            self._return(request, _line_error(line, status, body))
            return
        choices = body.get("choices") or []
        if not choices:
            self._return(request, "the answer has no choices")
            return
        text = str((choices[0].get("message") or {}).get("content") or "")
        finish_reason = str(choices[0].get("finish_reason") or "")
        usage = body.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        self.summary.tokens_in += tokens_in
        self.summary.tokens_out += tokens_out
        model = str(body.get("model") or row.model)
        self._answer(row, request, Answer(text, finish_reason, model, tokens_in, tokens_out))

    def _return(self, request: BatchRequest, reason: str) -> None:
        return_request(self.store, request, reason)
        self.summary.count_returned(reason)
        self.summary.returned_stages.append((request.record_id, request.stage, reason))

    # -- what a job kind supplies ---------------------------------------------------------------

    @staticmethod
    def _check_settings(settings: SynthSettings) -> None:
        """Refuse settings this job kind cannot run with (`BadInputError`); called first thing."""

    def _ready(self, *, limit: int | None = None) -> Iterator[tuple[Job, Prepared]]:
        """Every request ready to go now, rendered one at a time, with its job."""
        raise NotImplementedError

    def _answer(self, row: BatchRow, request: BatchRequest, answer: Answer) -> None:
        """Check and store one answer, and close its request (`finish_request`)."""
        raise NotImplementedError

    def _prepared(
        self, planned: PlannedRequest, messages: Messages, schema: dict[str, Any] | None
    ) -> Prepared:
        """The batch line of a request: the body a live call sends (the settings' model,
        temperature, token limit and reasoning effort; the JSON schema when there is one)."""
        body: dict[str, Any] = {
            "model": self.settings.model_id,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if self.settings.reasoning_effort:
            body["reasoning_effort"] = self.settings.reasoning_effort
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return Prepared(planned, orjson.dumps(body))

    def ready(self, *, limit: int | None = None) -> dict[Job, list[Prepared]]:
        """Every request ready now, rendered, by job."""
        by_job: dict[Job, list[Prepared]] = {}
        for job, prepared in self._ready(limit=limit):
            by_job.setdefault(job, []).append(prepared)
        return by_job

    # -- submitting ---------------------------------------------------------------------------

    async def submit_ready(self, *, limit: int | None = None) -> int:
        """Submit every ready stage, one batch per stage (more where the size limits say so).
        Returns the number of requests submitted."""
        sent = 0
        # One file per stage fills up as records are rendered and goes when full, so a
        # CACTUS-sized stage (hundreds of MB of prompts) is never in memory all at once.
        chunks: dict[Job, list[Prepared]] = {}
        sizes: dict[Job, int] = {}
        for stage, item in self._ready(limit=limit):
            chunk = chunks.setdefault(stage, [])
            # Room for the envelope ({"custom_id": …, "method": "POST", "url": …, "body": …}).
            length = len(item.line) + 120
            if chunk and (
                len(chunk) >= self.max_requests or sizes[stage] + length > self.max_bytes
            ):
                sent += await self._submit(stage, chunk)
                chunk = chunks[stage] = []
                sizes[stage] = 0
            chunk.append(item)
            sizes[stage] = sizes.get(stage, 0) + length
        for stage, chunk in chunks.items():
            if chunk:
                sent += await self._submit(stage, chunk)
        return sent

    async def _submit(self, stage: Job, chunk: list[Prepared]) -> int:
        row, ids = create_batch(
            self.store,
            stage,
            [p.planned for p in chunk],
            backend=self.settings.backend,
            model=self.settings.model_id,
            base_url=self.settings.base_url or "",
        )
        data = b"".join(
            b'{"custom_id":%s,"method":"POST","url":"%s","body":%s}\n'
            % (orjson.dumps(cid), ENDPOINT.encode(), p.line)
            for cid, p in zip(ids, chunk, strict=True)
        )
        try:
            file_id = await self.client.upload(f"{row.label}.jsonl", data)
        except BaseException:
            drop_batch(self.store, row.id)  # nothing that costs was sent
            raise
        row = update_batch(self.store, row.id, state=BatchState.UPLOADED, input_file_id=file_id)
        # From here a kill leaves an `uploaded` row, found again (or created) by `recover`.
        created = await self._create(row)
        self._record_status(row, created, batch_id=created.id)
        self._sent.update((p.planned.record_id, p.planned.stage) for p in chunk)
        self.summary.submitted += len(chunk)
        self.summary.batches_submitted += 1
        return len(chunk)

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self) -> int:
        """Cancel every batch in flight; what they answered before is collected on the next run
        (or now, where the server cancels at once). Returns the number of batches cancelled."""
        cancelled = 0
        for row in open_batches(self.store, self.jobs):
            if row.state is BatchState.PREPARING:
                drop_batch(self.store, row.id)
                continue
            batch_id = row.batch_id
            if not batch_id:
                found = await self.client.find(row.label, row.input_file_id)
                if found is None:
                    drop_batch(self.store, row.id)  # never created: nothing to cancel
                    continue
                batch_id = found.id
                row = update_batch(self.store, row.id, batch_id=batch_id)
            try:
                if row.state is not BatchState.CANCELLING:
                    found = await self.client.cancel(batch_id)
                    cancelled += 1
                else:
                    found = await self.client.retrieve(batch_id)
            except BatchError as exc:
                if exc.status != 404:
                    raise
                self.forget(row, f"the server no longer knows batch {batch_id} (HTTP 404)")
                continue
            if found.status in RUNNING:
                self._record_status(row, found)
            else:
                await self.store_results(row, found)
        self.summary.in_flight = open_batches(self.store, self.jobs)
        return cancelled


class BatchSynthesizer(BatchRunner):
    """Synthesis: the next stage of every ready record, checked and stored like a live answer."""

    jobs: frozenset[Job] = frozenset(STAGES)

    _chosen: list[int] | None = None
    """With a limit: the records this run works on (picked in its first round)."""

    @staticmethod
    def _check_settings(settings: SynthSettings) -> None:
        if settings.mode is not SynthMode.SCRIPT:
            raise BadInputError(
                "--batch writes dialogues in script mode (two-agent turns depend on each other)"
            )

    def _answer(self, row: BatchRow, request: BatchRequest, answer: Answer) -> None:
        stage = _stage(request)
        cid = request.custom_id
        text, finish_reason = answer.text, answer.finish_reason
        tokens_in, tokens_out = answer.tokens_in, answer.tokens_out
        current = self.store.stage(request.record_id, stage)
        if current.updated_at != request.stage_updated_at or current.status not in NEEDS_SYNTHESIS:
            # A reviewer edited or regenerated it meanwhile; the tokens were still paid.
            finish_request(
                self.store,
                cid,
                RequestState.SKIPPED,
                error=f"the stage changed meanwhile (now {current.status.value})",
                tokens_in=tokens_in,
                tokens_out=tokens_out,
            )
            self.summary.count("skipped")
            return
        judged = self.settings.judge(stage, text, finish_reason)
        result = StageResult(
            text=judged.text,
            status=judged.status,
            error=judged.error or judged.note,
            model=answer.model,
            prompt_hash=request.prompt_hash,
            template_version=request.template_version,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        with self.store.transaction():
            try:
                save_stage_result(self.store, request.record_id, stage, result, expected=current)
            except StageChanged as exc:
                finish_request(self.store, cid, RequestState.SKIPPED, error=str(exc))
                self.summary.count("skipped")
                return
            mark_downstream_stale(self.store, request.record_id, stage)
            finish_request(
                self.store,
                cid,
                RequestState.ANSWERED,
                error=result.error,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
            )
            if judged.ok and finish_reason != "length":
                cache_put(
                    self.store,
                    request.cache_key,
                    self.settings.backend,
                    row.model,
                    CachedAnswer(text, tokens_in, tokens_out),
                )
        self.summary.count(result.status.value)

    def _ready(self, *, limit: int | None = None) -> Iterator[tuple[Job, Prepared]]:
        """The next stage of every record that has one ready (its earlier stages generated or
        reviewed, nothing of it in flight), rendered one at a time; answers already in the
        response cache are stored at once instead."""
        if limit is None:
            ids = self._records_to_synthesize(None)
        else:
            # `--limit N`: this run works on N records, those still in flight from an earlier
            # run first, and goes on with the same records from stage to stage.
            if self._chosen is None:
                self._chosen = in_flight_records(self.store, self.jobs)
                room = limit - len(self._chosen)
                self._chosen += self._records_to_synthesize(room) if room > 0 else []
            ids = [i for i in self._chosen if not record_in_flight(self.store, i, self.jobs)]
        for record_id in ids:
            record = self.store.record(record_id)
            if not record.attitude:
                set_attitude(
                    self.store, record_id, chain.ATTITUDES[record.seed_id % len(chain.ATTITUDES)]
                )
                record = self.store.record(record_id)
            stage = next_stage(record)
            if stage is None or (record_id, stage) in self._sent:
                continue
            if stage is Stage.DIALOGUE and record.mode == SynthMode.TWO_AGENT:
                continue  # written turn by turn, by `studio synth` without --batch
            prepared = self._prepare(record, stage)
            if prepared is not None:
                yield stage, prepared

    def _records_to_synthesize(self, limit: int | None) -> list[int]:
        return records_to_synthesize(
            self.store, mode=self.settings.mode, attitudes=chain.ATTITUDES, limit=limit
        )

    def _prepare(self, record: RecordView, stage: Stage) -> Prepared | None:
        """The request for one stage, exactly as a live call would send it (same template, same
        cache key); None when the cache already had an answer that passes (stored now)."""
        inputs = chain.StageInputs(
            seed=record.seed,
            texts={s: record.text(s) for s in STAGES},
            attitude=record.attitude or "neutral",
            min_turns=self.settings.min_turns,
            max_turns=self.settings.max_turns,
        )
        template = chain.stage_template(stage, self.settings.prompts_dir)
        messages = chain.stage_messages(template, inputs)
        schema = (
            chain.technique_schema()
            if stage is Stage.CBT_TECHNIQUE and self.settings.structured_output
            else None
        )
        key = cache_key(self.settings.cache_parameters(), messages, schema)
        hashed = prompt_hash(messages)
        expected = record.stages[stage]
        cached = cache_get(self.store, key)
        if cached is not None:
            judged = self.settings.judge(stage, cached.text, "")
            if judged.ok:
                result = StageResult(
                    text=judged.text,
                    status=judged.status,
                    error=judged.note,
                    model=self.settings.model_id,
                    prompt_hash=hashed,
                    template_version=template.label,
                    tokens_in=cached.tokens_in,
                    tokens_out=cached.tokens_out,
                )
                try:
                    save_stage_result(self.store, record.id, stage, result, expected=expected)
                    mark_downstream_stale(self.store, record.id, stage)
                except StageChanged:
                    return None
                self.summary.cache_hits += 1
                self.summary.count(result.status.value)
                return None
        planned = PlannedRequest(
            record_id=record.id,
            stage=stage,
            cache_key=key,
            prompt_hash=hashed,
            template_version=template.label,
            stage_updated_at=expected.updated_at,
        )
        return self._prepared(planned, messages, schema)


def _jsonl(data: bytes) -> Iterable[dict[str, Any]]:
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # a broken line answers nothing; its request is returned below
        if isinstance(line, dict):
            yield line


#: Why a request has no answer, by the batch's fate (the error file's codes say the same).
EXPIRED = "the batch expired before this request was answered"
CANCELLED = "the batch was cancelled"
#: A batch's outcome when the server answered 404 for its id (its results can never come).
LOST = "lost"
_LINE_CODES = {"batch_expired": EXPIRED, "batch_cancelled": CANCELLED}


def _line_error(line: dict[str, Any], status: int, body: dict[str, Any]) -> str:
    error = line.get("error") or body.get("error") or {}
    if isinstance(error, dict) and error.get("code") in _LINE_CODES:
        return _LINE_CODES[str(error["code"])]
    message = (
        str(error.get("message") or error.get("code") or "")
        if isinstance(error, dict)
        else str(error)
    )
    head = f"HTTP {status}" if status else "no answer"
    return f"{head}: {message}" if message else head
