"""The event stream, the log tail that a viewer reattaches with, and the runs tables."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.model import Stage
from studio.store import Store
from studio.store.runs import (
    RunStatus,
    accepted_record_count,
    create_run,
    finish_run,
    get_run,
    list_runs,
    process_alive,
    record_metric,
    reviewers_of,
    run_metrics,
)
from studio.train.control import RunControl, find_live_run
from studio.train.events import (
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    EventWriter,
    StartEvent,
    StepEvent,
    TrainEvent,
    event_to_json,
    finite,
    parse_event,
)
from studio.train.monitor import EventLogTail, RunProgress, replay
from tests.conftest import cactus_row


def start_event(pid: int = 1, run_id: int = 1) -> StartEvent:
    return StartEvent(
        run_id=run_id, pid=pid, output_dir="/runs/1", config={"recipe": "seed"}, dataset={}
    )


def step(n: int, loss: float = 1.0) -> StepEvent:
    return StepEvent(step=n, max_steps=10, loss=loss, lr=1e-4, epoch=n / 10)


def test_every_event_round_trips_and_junk_is_skipped() -> None:
    events: list[TrainEvent] = [
        start_event(),
        step(1),
        EvalEvent(step=1, eval_loss=0.5, metrics={"eval_loss": 0.5}),
        CheckpointEvent(step=1, path="/runs/1/checkpoints/checkpoint-1"),
        ErrorEvent(message="boom", traceback="Traceback…"),
        EndEvent(status=RunStatus.FAILED, adapter_path=None, metrics={"global_step": 1}),
    ]
    for event in events:
        assert parse_event(event_to_json(event)) == event
    assert parse_event(
        '{"event": "step", "step": 1, "max_steps": 2, "loss": null, "lr": null,'
        ' "epoch": null, "from_the_future": 1}'
    ) == StepEvent(1, 2, None, None, None)
    for junk in ("", "not json", "[1]", '{"event": "unknown"}', '{"event": "step"}'):
        assert parse_event(junk) is None
    assert finite(float("nan")) is None and finite("x") is None and finite(2) == 2.0


def test_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    tail = EventLogTail(log)
    assert tail.read_new() == []  # not created yet
    line = event_to_json(step(1)) + "\n"
    log.write_text(line + line[:10])  # the second line is still being written
    assert tail.read_new() == [step(1)]
    assert tail.read_new() == []
    with log.open("a") as fh:
        fh.write(line[10:] + "garbage\n")
    assert tail.read_new() == [step(1)]
    assert tail.skipped_lines == 1


def test_a_viewer_reattaches_mid_run_without_losing_points(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    writer = EventWriter(log)
    writer.emit(start_event(pid=0))
    for n in range(1, 4):
        writer.emit(step(n, loss=2.0 / n))
    progress = replay(log)  # the pane opened after three steps
    assert progress.losses == [(1, 2.0), (2, 1.0), (3, 2.0 / 3)]
    assert progress.status == "running" and progress.fraction_done == 0.3

    def keep_writing() -> None:
        for n in range(4, 6):
            time.sleep(0.05)
            writer.emit(step(n))
        writer.emit(EvalEvent(step=5, eval_loss=0.9))
        writer.emit(CheckpointEvent(step=5, path="ckpt"))
        writer.emit(EndEvent(status=RunStatus.COMPLETED, adapter_path="/runs/1", metrics={"x": 1}))

    thread = threading.Thread(target=keep_writing)
    thread.start()
    followed = RunProgress()
    seen = []
    control = RunControl.attach(tmp_path)
    for batch in control.follow(interval=0.01):
        for event in batch:
            followed.apply(event)
            seen.append(event.kind)
    thread.join()
    writer.close()
    assert seen == ["start", *["step"] * 5, "eval", "checkpoint", "end"]
    assert [s for s, _ in followed.losses] == [1, 2, 3, 4, 5]
    assert followed.eval_losses == [(5, 0.9)] and followed.checkpoints == ["ckpt"]
    assert followed.finished and followed.status == "completed"
    assert followed.adapter_path == "/runs/1" and followed.eta_s == 0.0
    assert all(e.ts for e in EventLogTail(log).read_new())  # the writer stamps every event


def test_follow_stops_when_the_runner_vanishes_without_an_end(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(gone.stdout)
    assert not process_alive(pid)
    log = tmp_path / "events.jsonl"
    writer = EventWriter(log)
    writer.emit(start_event(pid=pid))
    writer.emit(step(1))
    writer.close()
    control = RunControl.attach(tmp_path)
    events = [e for batch in control.follow(interval=0.01) for e in batch]
    assert [e.kind for e in events] == ["start", "step"] and control.finished
    conclusion = control.conclude()
    assert conclusion.status is RunStatus.FAILED and conclusion.end is None
    assert conclusion.problem.startswith("the training process ended without a final event")
    assert list(RunControl.attach(tmp_path).follow(should_stop=lambda: True)) == []


def test_error_and_failure_fold_into_progress() -> None:
    progress = RunProgress()
    for event in (
        start_event(pid=42),
        ErrorEvent(message="CUDA out of memory", traceback="…"),
        EndEvent(status=RunStatus.FAILED, adapter_path=None),
    ):
        progress.apply(event)
    assert progress.pid == 42 and progress.error == "CUDA out of memory"
    assert progress.finished and progress.status == "failed"


@pytest.fixture
def accepted_store(store: Store) -> Store:
    add_rows(store, [parse_cactus(cactus_row(n)) for n in range(2)], accepted_by="ann")
    add_rows(store, [parse_cactus(cactus_row(9))])
    store.edit_stage(1, Stage.CBT_PLAN, "p", reviewer="bo")
    return store


def test_runs_bookkeeping(accepted_store: Store, tmp_path: Path) -> None:
    store = accepted_store
    assert accepted_record_count(store) == (3, 2)
    assert reviewers_of(store, [1, 2]) == ["ann", "bo"]
    assert reviewers_of(store, [3]) == []
    run_id = create_run(
        store,
        config={"recipe": "seed"},
        dataset_hash="h",
        n_records=2,
        n_examples=6,
        reviewers=["ann", "bo"],
        output_dir=str(tmp_path / "run"),
    )
    record_metric(store, run_id, step=1, loss=2.0, lr=1e-4, epoch=0.1, data={"tokens_per_s": 9})
    record_metric(store, run_id, step=1, loss=1.5, lr=1e-4, epoch=0.1)  # logged again: replaced
    record_metric(store, run_id, step=1, kind="eval", loss=1.7)
    record_metric(store, run_id, step=2, loss=1.0)
    assert [r.id for r in list_runs(store, status=RunStatus.RUNNING)] == [run_id]
    finish_run(store, run_id, status=RunStatus.COMPLETED, metrics={"train_loss": 1.2})
    assert list_runs(store, status=RunStatus.RUNNING) == [] and find_live_run(store) is None
    run = get_run(store, run_id)
    assert run.status is RunStatus.COMPLETED and run.metrics == {"train_loss": 1.2}
    assert run.reviewers == ("ann", "bo") and run.n_examples == 6 and run.ended_at
    metrics = run_metrics(store, run_id)
    assert [(m.step, m.kind, m.loss) for m in metrics] == [
        (1, "train", 1.5),
        (1, "eval", 1.7),
        (2, "train", 1.0),
    ]
    assert [m.step for m in run_metrics(store, run_id, kind="eval")] == [1]
    other = create_run(
        store, config={}, dataset_hash="", n_records=0, n_examples=0, reviewers=[], output_dir=""
    )
    assert [r.id for r in list_runs(store)] == [other, run_id]
    assert [r.id for r in list_runs(store, status=RunStatus.COMPLETED)] == [run_id]
    assert len(list_runs(store, limit=1)) == 1
    assert store.stats()["runs"]["completed"] == 1 and store.stats()["runs"]["running"] == 1
    with pytest.raises(ValueError):
        finish_run(store, other, status=RunStatus.RUNNING)
    with pytest.raises(KeyError):
        finish_run(store, 999, status=RunStatus.FAILED)
    with pytest.raises(KeyError):
        get_run(store, 999)
