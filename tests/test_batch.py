"""Batch synthesis against a loopback files + batches server, through the real SDKs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from studio.ingest.load import add_rows
from studio.model import Seed, Stage, StageStatus, SynthMode
from studio.store import Store
from studio.store.batches import (
    BatchState,
    PlannedRequest,
    RequestState,
    all_batches,
    batch_requests,
    create_batch,
    open_batches,
    update_batch,
)
from studio.synth import Synthesizer, SynthSettings, make_backend
from studio.synth.batch import BatchSummary, BatchSynthesizer
from studio.synth.batch_api import BatchClient
from studio.synth.batch_estimate import estimate
from tests.batch_server import BatchServer
from tests.chat_server import ChatServer, Reply, cbt_reply, detect_stage

SEEDS = [
    Seed(
        f"I am a nurse on night shifts, client {n}.",
        f"If I make one mistake at work, someone will get hurt ({n}).",
        ("Catastrophizing",),
        ("Checks exist for a reason.",),
    )
    for n in range(50)
]


def batch_settings(
    server: BatchServer | ChatServer, backend: str = "openai", **overrides: Any
) -> SynthSettings:
    base_url = server.groq_base_url if backend == "groq" else server.openai_base_url
    values: dict[str, Any] = {
        "backend": backend,
        "model": "test-model",
        "base_url": base_url,
        "api_key": SecretStr("test-key"),
        "timeout_s": 10.0,
    }
    return SynthSettings(**(values | overrides)).validate()


async def batch_step(
    store: Store, settings: SynthSettings, limit: int | None = None, **options: Any
) -> BatchSummary:
    """One `studio synth --batch`: collect what finished, submit what is ready, return."""
    client = BatchClient(settings)
    try:
        return await BatchSynthesizer(store, client, settings, **options).run(limit=limit)
    finally:
        await client.aclose()


async def batch_until_done(
    store: Store, settings: SynthSettings, limit: int | None = None, **options: Any
) -> BatchSummary:
    client = BatchClient(settings)
    try:
        synthesizer = BatchSynthesizer(store, client, settings, **options)
        return await synthesizer.run(limit=limit, wait=True, poll_s=0.001, poll_max_s=0.01)
    finally:
        await client.aclose()


def stage_statuses(store: Store) -> dict[str, int]:
    rows = store.conn.execute("SELECT status, COUNT(*) FROM stages GROUP BY status").fetchall()
    return dict(rows)


def server_stages(server: BatchServer) -> list[str]:
    """The stage of every batch the server was asked to create, in order."""
    return [b.metadata["stage"] for b in server.batches.values()]


# -- the chain, stage by stage -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openai", "groq"])
async def test_a_four_stage_run_over_50_seeds_completes_stage_by_stage(
    store: Store, backend: str
) -> None:
    add_rows(store, SEEDS)
    with BatchServer() as server:
        settings = batch_settings(server, backend)
        first = await batch_step(store, settings)
        # Only intake forms are ready: one batch of 50, in flight, and the command returned.
        assert first.submitted == 50 and first.batches_submitted == 1
        assert [(b.stage, b.requests) for b in first.in_flight] == [(Stage.INTAKE_FORM, 50)]
        assert stage_statuses(store) == {"pending": 200}
        steps = 1
        while open_batches(store):
            await batch_step(store, settings)
            steps += 1
            assert steps < 50, "the batches never finished"
    assert server_stages(server) == ["intake_form", "cbt_technique", "cbt_plan", "dialogue"]
    assert [b.total for b in server.batches.values()] == [50, 50, 50, 50]
    assert server.stats.creates == 4 and server.stats.uploads == 4
    assert stage_statuses(store) == {"generated": 200}
    custom_ids = [line["custom_id"] for line in server.requests_seen]
    assert len(custom_ids) == len(set(custom_ids)) == 200
    # The requests are the live ones: same model, limits and structured output for the technique.
    technique = [r["body"] for r in server.requests_seen if "cbt_technique" in r["custom_id"]]
    assert technique[0]["response_format"]["json_schema"]["name"] == "cbt_technique"
    assert {r["url"] for r in server.requests_seen} == {"/v1/chat/completions"}
    for record in store.records():
        assert record.technique and record.stages[Stage.DIALOGUE].template_version
        assert record.stages[Stage.INTAKE_FORM].tokens_out > 0
    batches = all_batches(store)
    assert {b.outcome for b in batches} == {"completed"}
    assert sum(b.tokens_in for b in batches) > 0 and sum(b.tokens_out for b in batches) > 0


async def test_wait_polls_until_every_stage_is_collected(store: Store) -> None:
    add_rows(store, SEEDS[:5])
    with BatchServer() as server:
        summary = await batch_until_done(store, batch_settings(server))
    assert summary.submitted == 20 and summary.batches_submitted == 4
    assert summary.stages == {"generated": 20} and not summary.in_flight
    assert stage_statuses(store) == {"generated": 20}


async def test_limit_counts_the_records_in_flight(store: Store) -> None:
    add_rows(store, SEEDS[:5])
    with BatchServer() as server:
        server.hold.set()
        settings = batch_settings(server)
        for _ in range(3):  # the batch stays in progress: later runs start nothing new
            await batch_step(store, settings, limit=2)
        assert server.stats.creates == 1 and server.batches["batch_1"].total == 2
        server.hold.clear()
        summary = await batch_until_done(store, settings, limit=2)
    assert summary.stages == {"generated": 8}
    assert store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2


async def test_the_size_limits_split_a_stage_into_several_batches(store: Store) -> None:
    add_rows(store, SEEDS[:12])
    with BatchServer() as server:
        summary = await batch_step(store, batch_settings(server), max_requests=5)
    assert summary.batches_submitted == 3
    assert [b.total for b in server.batches.values()] == [5, 5, 2]


async def test_the_byte_limit_splits_a_stage_too(store: Store) -> None:
    add_rows(store, SEEDS[:6])
    with BatchServer() as server:
        # An intake request line is a few KB: room for a few per file, not for six.
        await batch_step(store, batch_settings(server), max_bytes=12_000)
    sizes = [len(server.files[b.input_file_id][1]) for b in server.batches.values()]
    assert len(sizes) >= 2 and max(sizes) <= 12_000
    assert sum(b.total for b in server.batches.values()) == 6


# -- the same checks as live answers -------------------------------------------------------------


def _flawed(body: dict[str, Any]) -> Reply:
    """A cut-off intake form for client 0, a refusal for client 1, good answers elsewhere."""
    user = str(body["messages"][-1]["content"])
    if detect_stage(body) == "intake_form" and "hurt (0)" in user:
        return Reply(content=cbt_reply(body).content, finish_reason="length")
    if detect_stage(body) == "intake_form" and "hurt (1)" in user:
        return Reply(content="I'm sorry, I can't help with that.")
    return cbt_reply(body)


async def test_batch_answers_pass_the_stage_checks_like_live_answers(
    store: Store, tmp_path: Path
) -> None:
    add_rows(store, SEEDS[:4])
    with BatchServer(_flawed) as server:
        await batch_until_done(store, batch_settings(server))
    with Store(tmp_path / "live.db") as live, ChatServer(_flawed) as chat:
        add_rows(live, SEEDS[:4])
        settings = batch_settings(chat, max_attempts=1)
        backend = make_backend(settings)
        try:
            await Synthesizer(live, backend, settings).run()
        finally:
            await backend.aclose()

        def verdicts(s: Store) -> list[tuple[str, str, str]]:
            return [
                (view.stage.value, view.status.value, view.error)
                for record in s.records()
                for view in record.stages.values()
            ]

        assert verdicts(store) == verdicts(live)
    intake = [r.stages[Stage.INTAKE_FORM] for r in store.records()]
    assert (intake[0].status, intake[0].error) == (
        StageStatus.INVALID,
        "cut off at the token limit",
    )
    assert intake[1].status is StageStatus.INVALID and "refusal" in intake[1].error
    # A record whose intake form is invalid waits for a reviewer: nothing more was submitted.
    assert sum("-r1-" in line["custom_id"] for line in server.requests_seen) == 1
    # Only answers that passed are cached (a cut-off answer is asked again, never reused).
    cached = store.conn.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0]
    assert cached == 2 * 4  # the two whole records; nothing of the two invalid ones


async def test_a_request_the_server_refuses_goes_back_to_pending_with_the_reason(
    store: Store,
) -> None:
    add_rows(store, SEEDS[:3])

    def respond(body: dict[str, Any]) -> Reply:
        if detect_stage(body) == "cbt_plan" and "hurt (2)" in str(body["messages"][-1]):
            return Reply(status=400, error="context length exceeded")
        return cbt_reply(body)

    with BatchServer(respond) as server:
        summary = await batch_until_done(store, batch_settings(server))
        # Within one run a refused request is not sent again (it would be refused forever).
        assert server_stages(server) == ["intake_form", "cbt_technique", "cbt_plan", "dialogue"]
    plan = store.stage(3, Stage.CBT_PLAN)
    assert plan.status is StageStatus.PENDING
    assert plan.error == "HTTP 400: context length exceeded"
    assert summary.returned == summary.waiting == {"HTTP 400: context length exceeded": 1}
    assert store.stage(3, Stage.DIALOGUE).status is StageStatus.PENDING
    assert stage_statuses(store) == {"generated": 10, "pending": 2}


# -- expiry, cancelling ------------------------------------------------------------------------


async def test_an_expired_batch_returns_its_unanswered_requests_to_pending(store: Store) -> None:
    add_rows(store, SEEDS[:10])
    with BatchServer() as server:
        settings = batch_settings(server)
        server.expire_next = 3  # the intake batch answers 3 requests, then expires
        await batch_step(store, settings)
        summary = BatchSummary()
        while open_batches(store) and not summary.returned:
            summary = await batch_step(store, settings)
        intake = [r.stages[Stage.INTAKE_FORM] for r in store.records()]
        assert [v.status for v in intake] == [StageStatus.GENERATED] * 3 + [StageStatus.PENDING] * 7
        assert {v.error for v in intake[3:]} == {
            "the batch expired before this request was answered"
        }
        assert summary.returned == {"the batch expired before this request was answered": 7}
        assert summary.waiting == {}  # the same round sent them again
        expired = all_batches(store)[0]
        assert (expired.state, expired.outcome) == (BatchState.COLLECTED, "expired")
        assert [r.state for r in batch_requests(store, expired.id, None)] == [
            RequestState.ANSWERED
        ] * 3 + [RequestState.RETURNED] * 7
        # The round that collected sent the seven again, and the three on to their techniques.
        await batch_until_done(store, settings)
    assert stage_statuses(store) == {"generated": 40}
    intake_lines = [r for r in server.requests_seen if r["custom_id"].endswith("intake_form")]
    assert len(intake_lines) == 10 + 7


async def test_a_failed_batch_returns_its_requests_to_pending_with_the_reason(
    store: Store,
) -> None:
    add_rows(store, SEEDS[:4])
    with BatchServer() as server:
        settings = batch_settings(server)
        server.fail_next = "line 1: the model does not exist"
        await batch_step(store, settings)
        summary = BatchSummary()
        while open_batches(store) and not summary.returned:
            summary = await batch_step(store, settings)
        reason = "the batch failed: line 1: the model does not exist"
        assert summary.returned == {reason: 4}
        failed = all_batches(store)[0]
        assert (failed.state, failed.outcome) == (BatchState.COLLECTED, "failed")
        assert failed.error == "line 1: the model does not exist"
        assert [r.state for r in batch_requests(store, failed.id, None)] == [
            RequestState.RETURNED
        ] * 4
        intake = [r.stages[Stage.INTAKE_FORM] for r in store.records()]
        assert {(v.status, v.error) for v in intake} == {(StageStatus.PENDING, reason)}
        # The next batch (not failing) answers them.
        await batch_until_done(store, settings)
    assert stage_statuses(store) == {"generated": 16}


async def test_a_batch_the_server_forgot_returns_its_requests_instead_of_failing_every_run(
    store: Store,
) -> None:
    add_rows(store, SEEDS[:3])
    with BatchServer() as server:
        settings = batch_settings(server)
        server.hold.set()
        first = await batch_step(store, settings)
        lost_id = first.in_flight[0].batch_id
        server.forgotten.add(lost_id)
        summary = await batch_step(store, settings)  # no exception: the run goes on
        reason = f"the server no longer knows batch {lost_id} (HTTP 404)"
        assert summary.returned == {reason: 3}
        lost = all_batches(store)[0]
        assert (lost.state, lost.outcome, lost.error) == (BatchState.COLLECTED, "lost", reason)
        intake = [r.stages[Stage.INTAKE_FORM] for r in store.records()]
        assert {(v.status, v.error) for v in intake} == {(StageStatus.PENDING, reason)}
        # The same round sent them again in a new batch; cancelling one the server forgot
        # returns its requests too, instead of raising.
        assert [b.batch_id for b in open_batches(store)] != [lost_id]
        server.forgotten.update(server.batches)
        client = BatchClient(settings)
        try:
            synthesizer = BatchSynthesizer(store, client, settings)
            assert await synthesizer.cancel() == 0
        finally:
            await client.aclose()
        assert not open_batches(store)
        assert {b.outcome for b in all_batches(store)} == {"lost"}
        server.forgotten.clear()
        server.hold.clear()
        await batch_until_done(store, settings)
    assert stage_statuses(store) == {"generated": 12}


async def test_cancel_stops_what_is_in_flight_and_returns_its_requests(store: Store) -> None:
    add_rows(store, SEEDS[:4])
    with BatchServer() as server:
        server.hold.set()  # the batch stays in progress
        settings = batch_settings(server)
        await batch_step(store, settings)
        await batch_step(store, settings)  # validating -> in_progress
        client = BatchClient(settings)
        try:
            synthesizer = BatchSynthesizer(store, client, settings)
            assert await synthesizer.cancel() == 1
            # The server cancels in two steps (cancelling, then cancelled): the next run collects.
            for _ in range(10):
                if not open_batches(store):
                    break
                await synthesizer.collect()
        finally:
            await client.aclose()
        assert server.stats.cancels == 1
    (row,) = all_batches(store)
    assert row.outcome == "cancelled"
    assert {r.stages[Stage.INTAKE_FORM].error for r in store.records()} == {
        "the batch was cancelled"
    }
    assert server.stats.creates == 1 and not open_batches(store)


# -- resuming without paying twice ---------------------------------------------------------------


def studio_synth(db: Path, server: BatchServer, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "studio", "synth", "--db", str(db), "--backend", "openai",
        "--base-url", server.openai_base_url, "--model", "test-model", *extra,
    ]  # fmt: skip


def test_a_kill_between_submitting_and_recording_resumes_without_a_second_batch(
    db_path: Path,
) -> None:
    """The worst moment: the server made the batch, the client was killed before it heard the
    batch's id. The next run finds that batch (by its file and label) instead of creating one."""
    with Store(db_path) as store:
        add_rows(store, SEEDS[:6])
    with BatchServer() as server:
        server.hold_create = threading_event()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        proc = subprocess.Popen(
            studio_synth(db_path, server, "--batch"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert server.create_arrived.wait(120), "the batch was never submitted"
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        server.hold_create.set()
        assert server.stats.creates == 1
        with Store(db_path) as store:
            (row,) = open_batches(store)
            assert row.state is BatchState.UPLOADED and not row.batch_id
        done = subprocess.run(
            studio_synth(db_path, server, "--wait", "--poll-interval", "0.01"),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert server_stages(server) == ["intake_form", "cbt_technique", "cbt_plan", "dialogue"]
    assert server.stats.uploads == 4 and server.stats.creates == 4
    with Store(db_path) as store:
        assert stage_statuses(store) == {"generated": 24}
        assert all_batches(store)[0].batch_id == "batch_1"


def threading_event() -> Any:
    import threading

    return threading.Event()


async def test_a_batch_never_uploaded_is_forgotten_and_its_requests_are_ready_again(
    store: Store,
) -> None:
    """Killed after writing the batch but before the upload: nothing reached the server that
    could be charged, so the next run forgets the row and submits those stages anew."""
    add_rows(store, SEEDS[:2])
    store.conn.execute("SELECT 1")
    from studio.store.synthesis import records_to_synthesize

    ids = records_to_synthesize(store, mode=SynthMode.SCRIPT, attitudes=("neutral",), limit=None)
    create_batch(
        store,
        Stage.INTAKE_FORM,
        [
            PlannedRequest(
                i, Stage.INTAKE_FORM, "k", "h", "t", store.stage(i, Stage.INTAKE_FORM).updated_at
            )
            for i in ids
        ],
        backend="openai",
        model="test-model",
        base_url="",
    )
    with BatchServer() as server:
        summary = await batch_step(store, batch_settings(server))
    assert summary.submitted == 2 and server.stats.creates == 1
    assert [b.state for b in all_batches(store)] == [BatchState.VALIDATING]


@pytest.mark.parametrize("file_on_server", [True, False])
async def test_a_batch_uploaded_but_never_created_is_created_from_its_file(
    store: Store, file_on_server: bool
) -> None:
    """Killed after the upload, before the create reached the server: the next run creates the
    batch from the uploaded file; a file the server no longer has means a fresh submission."""
    add_rows(store, SEEDS[:3])
    with BatchServer() as server:
        settings = batch_settings(server)
        client = BatchClient(settings)
        try:
            synthesizer = BatchSynthesizer(store, client, settings)
            prepared = synthesizer.ready()[Stage.INTAKE_FORM]
            row, _ = create_batch(
                store,
                Stage.INTAKE_FORM,
                [p.planned for p in prepared],
                backend="openai",
                model="test-model",
                base_url="",
            )
            file_id = await client.upload("x.jsonl", b"") if file_on_server else "file-gone"
            update_batch(store, row.id, state=BatchState.UPLOADED, input_file_id=file_id)
        finally:
            await client.aclose()
        uploads = server.stats.uploads
        summary = await batch_step(store, settings)
        assert server.stats.creates == 1
        (batch,) = server.batches.values()
        if file_on_server:
            assert server.stats.uploads == uploads and batch.input_file_id == file_id
            assert summary.submitted == 0 and open_batches(store)[0].batch_id == batch.id
        else:
            assert server.stats.uploads == uploads + 1 and summary.submitted == 3
            assert [b.id for b in all_batches(store)] == [row.id + 1]


async def test_live_synthesis_leaves_records_with_requests_in_flight_alone(store: Store) -> None:
    add_rows(store, SEEDS[:3])
    with BatchServer() as server:
        server.hold.set()
        await batch_step(store, batch_settings(server))
    add_rows(store, SEEDS[3:4])
    with ChatServer() as chat:
        settings = batch_settings(chat)
        backend = make_backend(settings)
        try:
            summary = await Synthesizer(store, backend, settings).run()
        finally:
            await backend.aclose()
    assert summary.records == 1  # only the new seed; the three in flight wait for their batch
    assert {json.dumps(b["messages"]).count("(3)") > 0 for b in chat.bodies} == {True}


async def test_an_answer_for_a_stage_a_reviewer_changed_meanwhile_is_not_stored(
    store: Store,
) -> None:
    add_rows(store, SEEDS[:2])
    with BatchServer() as server:
        server.hold.set()
        settings = batch_settings(server)
        await batch_step(store, settings)
        store.edit_stage(1, Stage.INTAKE_FORM, "1. Basic Information\nName: Sam", reviewer="ana")
        edited = store.stage(1, Stage.INTAKE_FORM)
        server.hold.clear()
        while open_batches(store):
            await batch_step(store, settings)
    assert store.stage(1, Stage.INTAKE_FORM).edited_text == edited.edited_text
    assert store.stage(1, Stage.INTAKE_FORM).original_text == edited.original_text
    first = batch_requests(store, all_batches(store)[0].id, None)
    assert [(r.record_id, r.state) for r in first] == [
        (1, RequestState.SKIPPED),
        (2, RequestState.ANSWERED),
    ]
    assert first[0].error == f"the stage changed meanwhile (now {edited.status.value})"


# -- estimates and the command line --------------------------------------------------------------


def test_dry_run_counts_requests_tokens_and_price_without_writing(
    store: Store, tmp_path: Path, run: Callable[..., Any]
) -> None:
    add_rows(store, SEEDS[:10])
    config = tmp_path / "studio.toml"
    config.write_text(
        '[synth]\nplan = "team"\n[plans.team]\nrpm = 1000\ntpm = 250000\n'
        "price_in = 0.15\nprice_out = 0.60\n"
    )
    settings = SynthSettings.load(config, backend="openai", model="m")
    found = estimate(store, settings)
    assert found.total_requests == 40 and found.tokens_in > 0 and found.tokens_out > 0
    live, batch = found.price(settings, batch=False), found.price(settings, batch=True)
    assert live is not None and batch == pytest.approx(live / 2)
    result = run("synth", "--dry-run", "--config", str(config), "--backend", "openai")
    assert result.exit_code == 0, result.output
    assert "dry run: 40 requests (10 intake form, 10 cbt technique" in result.output
    assert f"${batch:,.2f} as batches (${live:,.2f} live)" in result.output
    assert store.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_the_command_submits_returns_and_collects_on_the_next_run(
    store: Store, run: Callable[..., Any]
) -> None:
    add_rows(store, SEEDS[:3])
    with BatchServer() as server:
        args = ("synth", "--backend", "openai", "--base-url", server.openai_base_url)
        first = run(*args, "--model", "m", "--batch")
        assert first.exit_code == 0, first.output
        assert "submitted 3 requests in 1 batch" in first.output
        assert "in flight: batch 1, intake form, 3 requests, validating 0/3" in first.output
        done = run(*args, "--model", "m", "--wait", "--poll-interval", "0.001")
        assert done.exit_code == 0, done.output
        assert "collected 12 generated" in done.output
        assert "usage of all batches so far" in done.output
    assert stage_statuses(store) == {"generated": 12}


def test_batch_mode_refuses_two_agent_dialogues_and_the_local_backend(
    store: Store, run: Callable[..., Any]
) -> None:
    result = run("synth", "--batch", "--backend", "openai", "--model", "m", "--mode", "two-agent")
    assert result.exit_code == 2 and "script mode" in result.output
    result = run("synth", "--batch", "--backend", "local", "--model", "m")
    assert result.exit_code == 2 and "--backend groq or openai" in result.output


def test_the_command_cancels_and_says_what_waits(store: Store, run: Callable[..., Any]) -> None:
    add_rows(store, SEEDS[:2])

    def refuse_plans(body: dict[str, Any]) -> Reply:
        if detect_stage(body) == "cbt_plan":
            return Reply(status=400, error="context length exceeded")
        return cbt_reply(body)

    with BatchServer(refuse_plans) as server:
        args = ("synth", "--backend", "openai", "--base-url", server.openai_base_url, "--model")
        server.hold.set()
        assert run(*args, "m", "--batch").exit_code == 0
        cancelled = run(*args, "m", "--cancel")
        assert cancelled.exit_code == 0, cancelled.output
        assert "cancelled 1 batch" in cancelled.output
        assert "in flight: batch 1, intake form, 2 requests, cancelling" in cancelled.output
        server.hold.clear()
        done = run(*args, "m", "--wait", "--poll-interval", "0.001")
    # The cancelled intake forms went again, then the plans were refused: exit 1, and why.
    assert done.exit_code == 1
    assert (
        "error: 2 requests came back without an answer (2 HTTP 400: context length exceeded)"
        in done.output
    )
    assert {r.stages[Stage.CBT_PLAN].error for r in store.records()} == {
        "HTTP 400: context length exceeded"
    }


def test_batch_and_live_runs_share_the_one_run_lock(
    store: Store, db_path: Path, run: Callable[..., Any]
) -> None:
    from studio.commands.synth import one_run_per_database

    with one_run_per_database(db_path):  # as a live `studio synth` holds it
        result = run("synth", "--batch", "--backend", "openai", "--model", "m")
    assert result.exit_code == 2 and "already running" in result.output
    assert not all_batches(store)
