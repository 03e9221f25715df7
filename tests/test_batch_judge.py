"""`studio judge --batch`: judge prompts through the batch machinery, against the loopback
files + batches server, through the real SDKs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from studio.cli import cli
from studio.judge.batch import BatchJudge, estimate_judging
from studio.model import Stage
from studio.store import Store
from studio.store.batches import (
    BatchState,
    JudgeJob,
    RequestState,
    all_batches,
    batch_requests,
    open_batches,
)
from studio.store.judging import latest_judgement, records_to_judge
from studio.store.review import save_edit
from studio.synth import SynthSettings
from studio.synth.batch import BatchSummary
from studio.synth.batch_api import BatchClient
from studio.synth.batch_estimate import estimate
from tests.batch_server import BatchServer
from tests.chat_server import ChatServer
from tests.judge_server import JudgeResponder
from tests.test_batch import batch_settings, batch_step
from tests.test_judge import add_records, dialogue, judge_all, settings_for


async def judge_batch(
    store: Store, settings: SynthSettings, *, wait: bool = False, **options: Any
) -> BatchJudge:
    """One `studio judge --batch` (`--wait`): collect, submit, maybe poll until done."""
    client = BatchClient(settings)
    try:
        judge = BatchJudge(store, client, settings, **options)
        await judge.run(wait=wait, poll_s=0.001, poll_max_s=0.01)
        return judge
    finally:
        await client.aclose()


async def test_judge_batches_store_answers_through_the_live_judges_checks(store: Store) -> None:
    ids = add_records(
        store,
        [
            dialogue("SCORE=2"),
            dialogue("SCORE=5", risk=True),
            dialogue("UNREADABLE"),
            dialogue("OUT_OF_RANGE"),
        ],
    )
    responder = JudgeResponder()
    with BatchServer(responder) as server:
        settings = batch_settings(server)
        first = await judge_batch(store, settings)
        # Submitted and returned: one batch of four, job `judge`, in flight.
        assert [(b.stage, b.requests) for b in first.summary.in_flight] == [(JudgeJob.JUDGE, 4)]
        assert [b.metadata["stage"] for b in server.batches.values()] == ["judge"]
        body = server.requests_seen[0]["body"]
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["temperature"] == 0.0
        assert "1. Counselor: Hi Sam" in body["messages"][-1]["content"]
        done = await judge_batch(store, settings, wait=True)
        assert done.summary.stages == {"scored": 2, "failed": 2}
        assert (done.judged.scored, done.judged.flagged, done.judged.failed) == (2, 1, 2)
        assert done.judged.failures == {"unreadable answer": 2}
        low = latest_judgement(store, ids[0])
        assert low is not None and low.current and low.result.ctrs_mean == 2.0
        assert low.result.template_version == "judge@1" and low.result.tokens_out > 0
        risky = latest_judgement(store, ids[1])
        assert risky is not None and risky.flagged
        bad = latest_judgement(store, ids[2])
        assert bad is not None and bad.result.status == "failed"
        assert bad.result.raw.startswith("I would rate this session")
        assert bad.result.error.startswith("unreadable answer: not JSON")
        out = latest_judgement(store, ids[3])
        assert out is not None and "score is 9" in out.result.error
        # The failed ones go again (their answers were not cached); the scored ones do not.
        assert records_to_judge(store) == ids[2:]
        responder.fixed = True
        again = await judge_batch(store, settings, wait=True)
    assert again.summary.submitted == 2 and again.judged.scored == 2
    assert records_to_judge(store) == []
    assert server.stats.creates == 2
    assert [len(batch_requests(store, b.id, None)) for b in all_batches(store)] == [4, 2]


async def test_a_judge_batch_in_flight_is_collected_not_submitted_again(store: Store) -> None:
    add_records(store, [dialogue(), dialogue()])
    with BatchServer(JudgeResponder()) as server:
        settings = batch_settings(server)
        server.hold.set()
        await judge_batch(store, settings)
        second = await judge_batch(store, settings)  # a new run (a new process, say)
        assert second.summary.submitted == 0 and server.stats.creates == 1
        # Synthesis runs leave the judge's batches alone (and the other way round).
        synth = await batch_step(store, settings)
        assert synth.in_flight == [] and synth.submitted == 0
        server.hold.clear()
        done = await judge_batch(store, settings, wait=True)
    assert done.judged.scored == 2 and server.stats.creates == 1
    assert {b.outcome for b in all_batches(store)} == {"completed"}


async def test_a_failed_or_forgotten_judge_batch_leaves_the_records_to_judge(
    store: Store,
) -> None:
    ids = add_records(store, [dialogue(), dialogue()])
    with BatchServer(JudgeResponder()) as server:
        settings = batch_settings(server)
        server.fail_next = "the model does not exist"
        await judge_batch(store, settings)
        summary = BatchSummary()
        judge: BatchJudge | None = None
        while not summary.returned:
            judge = await judge_batch(store, settings)
            summary = judge.summary
        assert summary.returned == {"the batch failed: the model does not exist": 2}
        assert judge is not None and judge.summary.waiting == {}  # the same round sent them again
        assert all(latest_judgement(store, i) is None for i in ids)
        failed = all_batches(store)[0]
        assert (failed.state, failed.outcome) == (BatchState.COLLECTED, "failed")
        assert {r.state for r in batch_requests(store, failed.id, None)} == {RequestState.RETURNED}
        # The server forgets the batch that replaced it: back to pending, not an error.
        [resent] = open_batches(store)
        server.forgotten.add(resent.batch_id)
        lost = await judge_batch(store, settings)
        reason = f"the server no longer knows batch {resent.batch_id} (HTTP 404)"
        assert lost.summary.returned == {reason: 2}
        done = await judge_batch(store, settings, wait=True)
    assert done.judged.scored == 2 and records_to_judge(store) == []


async def test_an_answer_for_a_dialogue_edited_meanwhile_is_not_stored(store: Store) -> None:
    [record_id] = add_records(store, [dialogue()])
    with BatchServer(JudgeResponder()) as server:
        settings = batch_settings(server)
        server.hold.set()
        await judge_batch(store, settings)
        save_edit(store, record_id, Stage.DIALOGUE, dialogue("edited"), reviewer="ana")
        server.hold.clear()
        done = await judge_batch(store, settings, wait=True)
        assert done.summary.stages == {"skipped": 1, "scored": 1}
    # The answer for the old text was dropped; the edited text went in a batch of its own.
    assert len(all_batches(store)) == 2
    judged = latest_judgement(store, record_id)
    assert judged is not None and judged.current and done.judged.records == 1
    [request] = batch_requests(store, all_batches(store)[0].id, None)
    assert (request.state, request.error) == (
        RequestState.SKIPPED,
        "the dialogue changed meanwhile",
    )


def test_the_command_judges_through_batches_and_dry_runs_without_writing(
    db_path: Path,
) -> None:
    with Store(db_path) as store:
        add_records(store, [dialogue(), dialogue(risk=True), dialogue("UNREADABLE")])
    with BatchServer(JudgeResponder()) as server:
        argv = [
            "judge", "--db", str(db_path), "--backend", "openai", "--base-url",
            server.openai_base_url, "--model", "judge-model",
        ]  # fmt: skip
        dry = CliRunner().invoke(cli, [*argv, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "dry run: 3 judge requests" in dry.output
        assert server.stats.uploads == 0
        result = CliRunner().invoke(cli, [*argv, "--batch", "--wait", "--poll-interval", "0.01"])
    assert result.exit_code == 1, result.output
    assert "judged 3 records: 2 scored (1 flagged), 1 failed (1 unreadable answer)" in (
        result.output
    )
    assert "1 judgement failed" in result.output
    with Store(db_path) as store:
        assert records_to_judge(store) == [3]
        assert not open_batches(store)


async def test_a_live_judge_leaves_records_with_a_judge_request_in_flight_alone(
    store: Store,
) -> None:
    ids = add_records(store, [dialogue()])
    with BatchServer(JudgeResponder()) as server:
        settings = batch_settings(server)
        server.hold.set()
        await judge_batch(store, settings)
        ids += add_records(store, [dialogue("SCORE=3")])
        with ChatServer(JudgeResponder()) as chat:
            live = await judge_all(store, settings_for(chat))
        assert live.records == 1  # the second record only: the first is paid for already
        server.hold.clear()
        done = await judge_batch(store, settings, wait=True)
    assert done.judged.records == 1 and records_to_judge(store) == []


async def test_the_dry_runs_count_their_own_requests_in_flight(store: Store) -> None:
    add_records(store, [dialogue(), dialogue()])
    with BatchServer(JudgeResponder()) as server:
        settings = batch_settings(server)
        server.hold.set()
        await judge_batch(store, settings)
        assert estimate(store, settings).in_flight == 0  # synthesis: none of its own
        judging = estimate_judging(store, settings)
        assert (judging.requests, judging.in_flight) == (0, 2)


def test_the_command_submits_returns_and_cancels_judge_batches(db_path: Path) -> None:
    with Store(db_path) as store:
        add_records(store, [dialogue(), dialogue()])
    with BatchServer(JudgeResponder()) as server:
        argv = [
            "judge", "--db", str(db_path), "--backend", "openai", "--base-url",
            server.openai_base_url, "--model", "judge-model",
        ]  # fmt: skip
        server.hold.set()
        submitted = CliRunner().invoke(cli, [*argv, "--batch"])
        assert submitted.exit_code == 0, submitted.output
        assert "in flight: batch 1, judge, 2 requests" in submitted.output
        assert "run `studio judge --batch` again" in submitted.output
        cancelled = CliRunner().invoke(cli, [*argv, "--cancel"])
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled 1 batch" in cancelled.output
    assert server.stats.cancels == 1
    with Store(db_path) as store:
        # Cancelling on the server; the next run collects what it answered and returns the rest.
        assert [b.state for b in open_batches(store)] == [BatchState.CANCELLING]
        assert records_to_judge(store) == [1, 2]


def test_per_item_is_refused_with_batch(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from studio.cli import cli

    Store(tmp_path / "j.db").close()
    args = ["judge", "--db", str(tmp_path / "j.db"), "--per-item", "--batch"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--per-item runs live only" in result.stderr
