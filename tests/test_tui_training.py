"""The Training pane: a real run on a tiny Llama started and stopped from the pane, a run found
running at start-up (the plot keeps its earlier points), and quitting while a run trains.

Every wait is bounded (a deadline, short pauses); a run left behind is killed.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, ProgressBar, RichLog, Select, Static

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.store import Store
from studio.store.runs import RunStatus, create_run, finish_run, list_runs
from studio.train.events import (
    EVENT_LOG_NAME,
    EndEvent,
    EvalEvent,
    EventWriter,
    StartEvent,
    StepEvent,
    TrainEvent,
)
from studio.train.recipes import RECIPES
from studio.tui import StudioApp, make_app
from studio.tui.messages import TrainingEvents
from studio.tui.screens.dialogs import ConfirmScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.training import TrainingScreen
from studio.tui.settings import ReviewSettings
from studio.tui.training import RecipeForm, runner_options
from studio.tui.widgets.loss_plot import LossPlot
from tests.conftest import FixedClock, cactus_row
from tests.test_tui_support import REVIEWER, settle
from tests.tiny_model import build_tiny_llama

RECORDS = 6
SIZE = (120, 40)
RUN_TIMEOUT_S = 300.0  # generous: a busy 2-core machine runs a tiny training slowly
LONG_RUN = "100000"  # steps: trains until it is stopped


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def training_db(tmp_path: Path) -> Path:
    db = tmp_path / "studio.db"
    with Store(db, clock=FixedClock()) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    return db


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand for a run's trainer (its pid goes into the start event).

    SIGINT ends it however pytest was started: a shell starts a background job (`pytest … &`)
    with SIGINT ignored, its children inherit that, and Python then installs no handler. It says
    `ready` once its handler is in, so no stop can come before. It sleeps in short naps: a signal
    that lands just before a sleep starts is only handled when that sleep returns.
    """
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"  # EOF (b"") if it died first
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def training_app(db: Path, runs_dir: Path) -> StudioApp:
    return make_app(
        db,
        reviewer=REVIEWER,
        clock=FixedClock(),
        settings=ReviewSettings(
            reviewer=REVIEWER, cursor_blink=False, refresh_interval=None, draft_interval=60.0
        ),
        runs_dir=runs_dir,
    )


async def wait_for(
    pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = RUN_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        await pilot.pause(0.2)


async def open_pane(pilot: Pilot[Any]) -> TrainingScreen:
    await pilot.press("t")
    screen = pilot.app.screen
    assert isinstance(screen, TrainingScreen)
    await wait_for(pilot, lambda: screen.summary is not None, "the dataset summary")
    return screen


async def fill_recipe(pilot: Pilot[Any], model: Path, max_steps: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#base-model", Input).value = str(model)
    screen.query_one("#field-max_steps", Input).value = max_steps
    screen.query_one("#four-bit", Select).value = "off"
    await pilot.pause()  # the form's errors go away: the buttons move up


def kill_run(app: StudioApp) -> None:
    """A test that failed mid-run must not leave a trainer behind."""
    process = app.training.process if app.training is not None else None
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def history_statuses(screen: TrainingScreen) -> dict[str, str]:
    table = screen.query_one("#runs", DataTable)
    return {str(key.value): str(table.get_row(key)[1]) for key in table.rows}


def log_text(screen: TrainingScreen) -> str:
    return "\n".join(line.text for line in screen.query_one("#log", RichLog).lines)


# -- real runs ----------------------------------------------------------------------------------


@pytest.mark.train_extra
async def test_a_run_started_from_the_pane_streams_its_loss_and_completes(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    app = training_app(training_db, tmp_path / "runs")
    posted: list[Any] = []
    async with app.run_test(size=SIZE, message_hook=posted.append) as pilot:
        try:
            await settle(pilot)
            screen = await open_pane(pilot)
            await fill_recipe(pilot, tiny_model_dir, "4")
            await wait_for(
                pilot,
                lambda: (
                    screen.summary is not None
                    and screen.summary.lengths is not None
                    and screen.summary.lengths.exact
                ),
                "token lengths from the tiny model's tokenizer",
                30,
            )
            assert screen.summary is not None
            assert (screen.summary.records, screen.summary.examples) == (RECORDS, RECORDS * 3)
            await pilot.press("f5")
            training = app.training
            assert training is not None and training.active
            assert screen.query_one("#start").disabled
            plot = screen.query_one(LossPlot)
            bar = screen.query_one(ProgressBar)
            await wait_for(pilot, lambda: len(plot.steps) >= 1, "the first loss point")
            assert bar.progress >= 1 and bar.total == 4
            await wait_for(pilot, lambda: training.ended, "the end of the run")
            await wait_for(
                pilot,
                lambda: history_statuses(screen).get(str(training.progress.run_id)) == "completed",
                "the run in the history",
                10,
            )
        finally:
            kill_run(app)
        assert plot.steps == [1, 2, 3, 4] and all(loss > 0 for loss in plot.losses)
        assert plot.eval_steps == [4]
        assert bar.progress == 4
        assert "end    completed" in log_text(screen)
        assert "completed" in str(screen.query_one("#run-status").render())
    assert training.progress.status == "completed" and training.exit_code == 0
    assert training.options is not None
    args = training.options.args()
    assert args[args.index("--max-steps") + 1] == "4" and "--no-4bit" in args
    assert training.output_dir is not None and training.output_dir.parent == tmp_path / "runs"
    assert (training.output_dir / "adapter_model.safetensors").is_file()
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.COMPLETED and row.metrics["global_step"] == 4
    assert row.output_dir == str(training.output_dir.resolve())
    # The follower posts the events so far each time: the last message holds the whole run.
    batches = [m for m in posted if isinstance(m, TrainingEvents)]
    assert batches and isinstance(batches[-1].events[-1], EndEvent)
    assert [e.step for e in batches[-1].events if isinstance(e, StepEvent)] == [1, 2, 3, 4]


@pytest.mark.train_extra
async def test_stop_ends_the_run_stopped_with_its_adapter(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        try:
            await settle(pilot)
            screen = await open_pane(pilot)
            await fill_recipe(pilot, tiny_model_dir, LONG_RUN)
            await pilot.click("#start")
            training = app.training
            assert training is not None
            await wait_for(pilot, lambda: training.progress.step >= 1, "the first step")
            await pilot.click("#stop")
            assert training.stop_requested
            assert "Stop requested" in log_text(screen)
            await wait_for(pilot, lambda: training.ended, "the stopped run")
            await wait_for(
                pilot,
                lambda: history_statuses(screen).get(str(training.progress.run_id)) == "stopped",
                "the stopped run in the history",
                10,
            )
        finally:
            kill_run(app)
        assert screen.query_one("#stop").disabled and not screen.query_one("#start").disabled
    assert training.progress.status == "stopped" and training.exit_code == 0
    assert 1 <= training.progress.step < int(LONG_RUN)
    assert training.output_dir is not None
    assert (training.output_dir / "adapter_model.safetensors").is_file()
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.STOPPED


@pytest.mark.train_extra
async def test_bad_input_shows_the_runners_own_message(training_db: Path, tmp_path: Path) -> None:
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        try:
            await settle(pilot)
            screen = await open_pane(pilot)
            await fill_recipe(pilot, tmp_path / "no-such-model", "4")
            await pilot.click("#start")
            training = app.training
            assert training is not None
            await wait_for(pilot, lambda: training.ended, "the runner to give up")
        finally:
            kill_run(app)
        status = str(screen.query_one("#run-status").render())
        assert not screen.query_one("#start").disabled
    assert training.exit_code == 2
    assert training.problem.startswith("The runner refused to start: --base-model")
    assert "no such model folder" in status
    assert any("no such model folder" in n.message for n in app._notifications)


@pytest.mark.train_extra
async def test_the_pane_follows_and_stops_a_run_started_from_the_cli(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`studio train` in a terminal, the pane already open: it follows the run and stops it."""
    out = tmp_path / "runs" / "cli"
    argv = [
        sys.executable, "-m", "studio", "train", "--db", str(training_db),
        "--base-model", str(tiny_model_dir), "--output", str(out), "--max-steps", LONG_RUN,
        "--no-4bit", "--events",
    ]  # fmt: skip
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_pane(pilot)
        assert not app.training
        cli = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await wait_for(pilot, lambda: app.training is not None, "the pane to find the run")
            training = app.training
            assert training is not None and training.output_dir == out.resolve()
            plot = screen.query_one(LossPlot)
            await wait_for(pilot, lambda: len(plot.steps) >= 1, "a loss point on the pane")
            assert screen.query_one("#start").disabled
            await wait_for(pilot, lambda: training.can_stop, "the run to be stoppable")
            await pilot.click("#stop")
            assert training.stop_requested
            await wait_for(pilot, lambda: training.ended, "the stopped run")
            assert cli.wait(RUN_TIMEOUT_S) == 0  # `studio train` saw the same end
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert training.progress.status is RunStatus.STOPPED
        assert "stopped" in str(screen.query_one("#run-status").render())
    assert (out / "adapter_model.safetensors").is_file()
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.STOPPED


# -- a run found at start-up --------------------------------------------------------------------


def fake_run(db: Path, folder: Path, pid: int, steps: int) -> EventWriter:
    """A run in the middle of training, as its trainer leaves it: a `running` row and a log."""
    config = dataclasses.replace(RECIPES["seed"], base_model="models/llama-2-7b").to_dict()
    with Store(db, clock=FixedClock()) as store:
        run_id = create_run(
            store,
            config=config,
            dataset_hash="abc",
            n_records=RECORDS,
            n_examples=RECORDS * 3,
            reviewers=["ann"],
            output_dir=str(folder),
        )
    writer = EventWriter(folder / EVENT_LOG_NAME)
    writer.emit(
        StartEvent(run_id=run_id, pid=pid, output_dir=str(folder), config=config, dataset={})
    )
    for step in range(1, steps + 1):
        writer.emit(step_event(step))
    return writer


def step_event(step: int, max_steps: int = 10) -> StepEvent:
    return StepEvent(
        step=step, max_steps=max_steps, loss=3.0 - step / 10, lr=2e-4, epoch=step / 10, eta_s=5.0
    )


async def test_a_reopened_studio_follows_a_running_run_without_dropping_points(
    training_db: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    writer = fake_run(training_db, tmp_path / "runs" / "r1", sleeper.pid, steps=3)
    app = training_app(training_db, tmp_path / "runs")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.training is not None, "the running run")
            training = app.training
            assert training is not None and training.process is None  # not ours: only its pid
            await wait_for(pilot, lambda: training.progress.step == 3, "its first 3 steps")
            await pilot.press("t")
            screen = app.screen
            assert isinstance(screen, TrainingScreen)
            plot = screen.query_one(LossPlot)
            assert plot.steps == [1, 2, 3]  # at once: the app has followed it since start-up
            assert screen.query_one("#start").disabled and not screen.query_one("#stop").disabled
            writer.emit(step_event(4))
            await wait_for(pilot, lambda: plot.steps == [1, 2, 3, 4], "the next step")
            await pilot.press("escape")  # leaving the pane...
            assert isinstance(app.screen, QueueScreen)
            writer.emit(step_event(5))
            writer.emit(EvalEvent(step=5, eval_loss=2.6))
            await wait_for(pilot, lambda: training.progress.step == 5, "a step while away")
            await pilot.press("t")  # ...and coming back: nothing missed
            again = app.screen
            assert isinstance(again, TrainingScreen) and again is not screen
            plot = again.query_one(LossPlot)
            assert plot.steps == [1, 2, 3, 4, 5] and plot.eval_steps == [5]
            assert again.query_one(ProgressBar).progress == 5
            writer.emit(
                EndEvent(status=RunStatus.COMPLETED, adapter_path=str(tmp_path / "runs" / "r1"))
            )
            await wait_for(pilot, lambda: training.ended, "the end of the run")
            assert not again.query_one("#start").disabled
    finally:
        writer.close()


async def test_stop_reaches_a_run_found_at_start_up(
    training_db: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    fake_run(training_db, tmp_path / "runs" / "r1", sleeper.pid, steps=2).close()
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.training is not None, "the running run")
        training = app.training
        assert training is not None
        screen = await open_pane(pilot)
        await wait_for(pilot, lambda: training.can_stop, "the run to be stoppable")
        await pilot.pause()  # (not settle: the follower of a live run is a worker that never ends)
        await pilot.press("shift+f5")  # SIGINT to the pid of its start event
        assert training.stop_requested
        await wait_for(pilot, lambda: training.ended, "the follower to notice")
        status = str(screen.query_one("#run-status").render())
        assert "the training process ended without a final event" in status
    assert sleeper.wait(30) != 0  # the stand-in has no handler: SIGINT ended it


async def test_a_run_whose_process_died_is_not_followed(training_db: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    fake_run(training_db, tmp_path / "runs" / "r1", gone.pid, steps=2).close()
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.training is None
        screen = await open_pane(pilot)
        await settle(pilot)
        assert history_statuses(screen) == {"1": "failed"}  # concluded by listing it
        assert screen.query_one(LossPlot).steps == [1, 2]  # its log, shown from the history
        status = str(screen.query_one("#run-status").render())
        assert "failed: the training process ended without a final event" in status
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.FAILED


async def test_quitting_while_a_run_trains_asks_first_and_leaves_it_running(
    training_db: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    fake_run(training_db, tmp_path / "runs" / "r1", sleeper.pid, steps=2).close()
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.training is not None, "the running run")
        await pilot.press("ctrl+q")
        question = app.screen
        assert isinstance(question, ConfirmScreen)
        assert "keeps running after you quit" in question.question
        await pilot.press("n")
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("ctrl+q", "y")
        await wait_for(pilot, lambda: app._exit, "the app to quit")
    assert sleeper.poll() is None  # quitting never stops a run


async def test_t_opens_the_pane_from_anywhere_and_help_and_palette_list_it(
    training_db: Path, tmp_path: Path
) -> None:
    from studio.tui.commands import StudioCommands
    from studio.tui.screens.help import HelpScreen
    from studio.tui.screens.review import ReviewScreen

    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "Training" in {c.name for c in StudioCommands(app.screen).commands()}
        await pilot.press("enter")  # a record...
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        screen = await open_pane(pilot)  # ...and t from there
        names = {c.name for c in StudioCommands(screen).commands()}
        assert {"Start", "Reload", "Back"} <= names and "Training" not in names
        assert "Stop" not in names  # nothing to stop: hidden, like its key
        screen.query_one("#base-model", Input).value = "meta-llama/Llama-2-7b-hf"
        screen.query_one("#gpus", Input).value = "4"
        screen.query_one("#field-learning_rate", Input).value = "1e-4"
        await pilot.pause()
        await pilot.click("#copy-command")
        assert app.clipboard.startswith("accelerate launch --multi_gpu --num_processes 4 -m")
        assert "--base-model meta-llama/Llama-2-7b-hf" in app.clipboard
        assert app.clipboard.endswith("--set learning_rate=0.0001")
        screen.query_one("#field-lora_r", Input).value = "0"
        await pilot.pause()
        errors = str(screen.query_one("#form-errors").render())
        assert "LoRA r: must be at least 1" in errors
        assert "Fix the recipe" in str(screen.query_one("#accelerate").render())
        await pilot.press("f1")  # (? would go into the focused field)
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        console = Console(width=200, record=True, file=io.StringIO())
        for table in help_screen.query(".keys").results(Static):
            console.print(table.content)
        text = console.export_text()
        for binding_id in ("training.start", "training.stop", "app.training"):
            assert binding_id in text
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, ReviewScreen)


# -- the recipe form ------------------------------------------------------------------------------


def test_the_form_builds_runner_options_with_only_the_changes_as_overrides(tmp_path: Path) -> None:
    values = dict(RecipeForm().values, learning_rate="1e-4", lora_r="16", max_steps="20")
    form = RecipeForm(base_model="models/x", values=values, four_bit="off", context="plan")
    options = runner_options(form, db=tmp_path / "s.db", output=tmp_path / "r")
    assert options.overrides == ("learning_rate=0.0001",)  # lora_r is the preset's: not repeated
    assert (options.max_steps, options.epochs, options.load_in_4bit) == (20, None, False)
    assert options.context == "plan" and options.recipe == "seed"


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("max_steps", "2.5", "Max steps: '2.5' is not a whole number"),
        ("learning_rate", "0", "Learning rate: must be more than 0"),
        ("lora_r", "", "LoRA r: required"),
        ("num_train_epochs", "nan", "Epochs: 'nan' is not a number"),
    ],
)
def test_the_form_says_what_is_wrong(tmp_path: Path, field: str, raw: str, message: str) -> None:
    from studio.tui.training import FormInvalid

    form = RecipeForm(base_model="", values=dict(RecipeForm().values, **{field: raw}))
    with pytest.raises(FormInvalid) as caught:
        runner_options(form, db=tmp_path / "s.db")
    assert caught.value.problems == [
        "Base model: give a local model folder or a hub id (owner/name)",
        message,
    ]


def test_events_are_formatted_for_the_log() -> None:
    from studio.tui.training_text import format_event

    events: list[TrainEvent] = [
        StepEvent(step=3, max_steps=10, loss=2.5, lr=1e-4, epoch=0.3, eta_s=75, ts="T09:00:01"),
        EndEvent(status=RunStatus.STOPPED, adapter_path=None, ts="2026-01-05T09:00:02.000+00:00"),
    ]
    lines = [format_event(event).plain for event in events]
    assert lines[0].endswith("step 3/10  loss 2.5000  lr 1.00e-04  epoch 0.30  ETA 1:15")
    assert lines[1] == "09:00:02 end    stopped · no adapter saved"


def test_finished_runs_stay_out_of_the_live_view(training_db: Path, tmp_path: Path) -> None:
    """`finish_run` rows are history: `find_live_run` only reattaches to `running` ones."""
    from studio.train.control import find_live_run

    folder = tmp_path / "runs" / "r1"
    fake_run(training_db, folder, pid=1, steps=1).close()
    with Store(training_db) as store:
        finish_run(store, 1, status=RunStatus.COMPLETED)
        assert find_live_run(store) is None


# -- what a person sees ---------------------------------------------------------------------------


def finished_run(db: Path, folder: Path) -> None:
    """A completed 8-step run with fixed times: its `runs` row and its event log."""
    config = dataclasses.replace(
        RECIPES["seed"],
        base_model="models/llama-2-7b",
        optim="adamw_torch",
        notes=("optim: paged_adamw_8bit -> adamw_torch (no CUDA)",),
    ).to_dict()

    def ts(second: int) -> str:
        return f"2026-01-05T08:00:{second:02d}.000+00:00"

    losses = [2.91, 2.74, 2.52, 2.41, 2.30, 2.26, 2.19, 2.15]
    events: list[TrainEvent] = [
        StartEvent(
            run_id=1,
            pid=4242,
            output_dir=str(folder),
            config=config,
            dataset={"train_examples": 15, "validation_examples": 3},
            ts=ts(0),
        ),
        *(
            StepEvent(
                step=n,
                max_steps=8,
                loss=loss,
                lr=2e-4 * n / 8,
                epoch=n / 8,
                tokens_per_s=812.0,
                eta_s=float(8 - n),
                ts=ts(n),
            )
            for n, loss in enumerate(losses, 1)
        ),
        EvalEvent(step=8, eval_loss=2.33, ts=ts(9)),
        EndEvent(
            status=RunStatus.COMPLETED,
            adapter_path=str(folder),
            metrics={"global_step": 8, "train_loss": 2.44, "eval_loss": 2.33},
            ts=ts(10),
        ),
    ]
    writer = EventWriter(folder / EVENT_LOG_NAME)
    for event in events:
        writer.emit(event)
    writer.close()
    with Store(db, clock=FixedClock()) as store:
        run_id = create_run(
            store,
            config=config,
            dataset_hash="abc",
            n_records=RECORDS,
            n_examples=RECORDS * 3,
            reviewers=["ann"],
            output_dir=str(folder),
        )
        finish_run(
            store,
            run_id,
            status=RunStatus.COMPLETED,
            metrics={"global_step": 8, "train_loss": 2.44, "eval_loss": 2.33},
        )


def test_snapshot_of_the_pane_after_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snap_compare: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths: the same command line on every machine
    db = Path("studio.db")
    with Store(db, clock=FixedClock()) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    finished_run(db, Path("runs") / "20260105-080000-seed")

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        await pilot.pause()
        await settle(pilot)

    app = training_app(db, Path("runs"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_the_base_model_filled_from_the_newest_run_is_never_shown_selected(
    training_db: Path, tmp_path: Path
) -> None:
    # The pane focuses the empty field at once; the newest run's model arrives later from a
    # worker. On a busy machine the focus was handled after the fill and selected the model
    # (typing replaced it, the snapshot differed). Focusing the filled field is that order.
    finished_run(training_db, tmp_path / "runs" / "r1")
    app = training_app(training_db, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await settle(pilot)
        field = screen.query_one("#base-model", Input)
        assert field.value == "models/llama-2-7b"
        screen.query_one("#start").focus()
        await pilot.pause()
        field.focus()
        await wait_for(pilot, lambda: app.focused is field, "the base model to have focus")
        await pilot.pause()
        assert field.selection.is_empty
        assert field.cursor_position == len(field.value)
