"""The run-control core: the runner outlives whoever launched it, a dead runner is `failed`.

Real runs on a tiny random Llama, launched exactly as `studio train` and the Training pane do.
Every wait is on a condition (an event in the log, a process exit), bounded by a deadline.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.store import Store
from studio.store.runs import ABANDONED, CONSOLE_LOG_NAME, RunStatus, list_runs, process_alive
from studio.train.control import RunControl
from studio.train.events import EndEvent, StepEvent
from studio.train.launch import RunnerOptions
from tests.conftest import cactus_row
from tests.tiny_model import build_tiny_llama
from tests.waiting import wait_until

pytestmark = pytest.mark.train_extra

RECORDS = 4
LONG_RUN = 100000  # steps: runs until it is stopped


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def training_db(tmp_path: Path) -> Path:
    db = tmp_path / "studio.db"
    with Store(db) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    return db


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.delenv("STUDIO_DB", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_DB"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    yield env


def test_killing_the_launching_studio_train_leaves_the_run_to_complete(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "run"
    argv = [
        sys.executable, "-m", "studio", "train", "--db", str(training_db),
        "--base-model", str(tiny_model_dir), "--output", str(out), "--max-steps", "6", "--events",
    ]  # fmt: skip
    launcher = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=clean_env
    )
    control = RunControl.attach(out)
    try:
        wait_until(lambda: any(isinstance(e, StepEvent) for e in control.poll()), "a first step")
        launcher.kill()  # kill -9 of `studio train`: its pipe to us breaks, the run must not
        assert launcher.wait(30) == -signal.SIGKILL
        for _ in control.follow(interval=0.1):
            pass
    finally:
        if control.pid is not None and not control.finished:
            os.kill(control.pid, signal.SIGKILL)
    end = control.events[-1]
    assert isinstance(end, EndEvent) and end.status is RunStatus.COMPLETED
    assert end.metrics["global_step"] == 6
    assert (out / "adapter_model.safetensors").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o700  # checkpoints hold clinical text
    assert (out / CONSOLE_LOG_NAME).is_file()  # the runner's own console, not a pipe
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.COMPLETED


def test_a_killed_runner_is_listed_as_failed_with_the_reason(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "runs" / "r1"
    options = RunnerOptions(
        db=training_db,
        base_model=str(tiny_model_dir),
        output=out,
        max_steps=LONG_RUN,
        load_in_4bit=False,
    )
    control = RunControl.launch(options)
    try:

        def stepped() -> bool:
            control.poll()
            return control.progress.step >= 1 or control.finished

        wait_until(stepped, "a first step")
        assert not control.finished, control.conclude().problem
        with Store(training_db) as store:
            (running,) = list_runs(store)
            assert running.status is RunStatus.RUNNING  # alive: left alone
            assert store.stats()["runs"]["running"] == 1
    finally:
        assert control.process is not None
        control.process.kill()  # kill -9 of the runner: no end event, no row update
    # Not reaped (a zombie): listing must still see it as gone.
    pid = control.process.pid
    wait_until(lambda: not process_alive(pid), "the kill to land", 30)
    with Store(training_db) as store:
        (row,) = list_runs(store)
        assert store.stats()["runs"] == {"running": 0, "completed": 0, "stopped": 0, "failed": 1}
    assert row.status is RunStatus.FAILED and row.ended_at
    reason = row.metrics["error"]
    assert reason.startswith(ABANDONED + " (last line of its log: ")
    for _ in control.follow(interval=0.1):
        pass
    conclusion = control.conclude()
    assert conclusion.status is RunStatus.FAILED and conclusion.end is None
    assert conclusion.problem.startswith(f"{ABANDONED} (exit code -9)")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
