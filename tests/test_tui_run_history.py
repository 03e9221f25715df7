"""The Training pane's run history closes the loop: each run's evaluation summary, F6 evaluates
the selected run in the background (`studio eval --run N`), F7 chats with its adapter.

Runs and evaluations are rows written directly: no model is trained here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from studio.cbt.ctrs import CTRS_ITEMS
from studio.evaluate.storage import FINISHED, SessionRow, find_or_create_evaluation, save_session
from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.store import Store
from studio.tui import StudioApp
from studio.tui.evaluating import EvaluationProgress
from studio.tui.messages import RunChosen
from studio.tui.screens.chat import ChatScreen
from studio.tui.screens.training import TrainingScreen
from studio.tui.widgets.loss_plot import LossPlot
from studio.tui.widgets.run_history import HISTORY_COLUMNS
from tests.conftest import FixedClock, cactus_row
from tests.test_tui_support import open_screen, settle
from tests.test_tui_training import (
    RECORDS,
    SIZE,
    fake_run,
    finished_run,
    log_text,
    training_app,
    wait_for,
)
from tests.waiting import pilot_wait_until

WAIT_S = 120.0  # `python -m studio eval` starting on a busy machine


@pytest.fixture
def db(tmp_path: Path) -> Path:
    db = tmp_path / "studio.db"
    with Store(db, clock=FixedClock()) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    finished_run(db, tmp_path / "runs" / "r1")  # run 1, completed; its folder has no adapter
    return db


def evaluate_run_1(db: Path, scores: list[int]) -> None:
    """An evaluation of run 1's adapter with one finished session per score."""
    with Store(db, clock=FixedClock()) as store:
        evaluation = find_or_create_evaluation(
            store,
            key="run1",
            run_id=1,
            label="run 1 (adapter)",
            counselor={"kind": "adapter"},
            settings={},
        )
        for n, score in enumerate(scores):
            save_session(
                store,
                SessionRow(
                    evaluation_id=evaluation.id,
                    client_key=f"record:{n + 1}",
                    attitude="negative",
                    status=FINISHED,
                    transcript="Counselor: Hello.",
                    turns=1,
                    ctrs={i: {"score": score, "explanation": ""} for i in CTRS_ITEMS},
                    ctrs_mean=float(score),
                    positive_change=2.0,
                    negative_change=-3.0,
                ),
            )


async def open_pane(pilot: Pilot[Any]) -> TrainingScreen:
    return await open_screen(pilot, "t", TrainingScreen)


def evaluation_cell(screen: TrainingScreen, run_id: int = 1) -> str:
    table = screen.query_one("#runs", DataTable)
    column = [name for name, _ in HISTORY_COLUMNS].index("Evaluation")
    return str(table.get_row(str(run_id))[column])


async def test_each_run_shows_its_evaluation_summary(db: Path, tmp_path: Path) -> None:
    evaluate_run_1(db, [3, 4, 5])
    async with training_app(db, tmp_path / "runs").run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        line = "CTRS 4.00 [1.52, 6.48] · PANAS +2.0 / -3.0 · 3 sessions"
        assert evaluation_cell(screen) == line
        # The table is wider than the pane: the selected run's line is under it too.
        assert str(screen.query_one("#run-evaluation", Label).render()) == f"Run 1: {line}"


async def test_f6_evaluates_the_selected_run_in_the_background_and_says_how_it_went(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "studio.toml"  # the client simulator and the judge: never called here
    config.write_text(
        '[synth]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "loopback"\n'
    )
    monkeypatch.setenv("STUDIO_CONFIG", str(config))
    async with training_app(db, tmp_path / "runs").run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        assert evaluation_cell(screen) == "—"
        said = str(screen.query_one("#run-evaluation", Label).render())
        assert said == "Run 1: not evaluated yet"
        await pilot.press("f6")
        app = pilot.app
        assert isinstance(app, StudioApp)
        assert app.evaluation is not None and app.evaluation.run_id == 1
        await pilot.press("f6")  # a second while the first goes on: refused
        assert len([w for w in app.workers if w.group == "evaluate"]) <= 1
        await pilot.press("escape")  # leaving the pane stops neither it nor its progress
        await wait_for(
            pilot,
            lambda: app.evaluation is not None and not app.evaluation.running,
            "the evaluation",
            WAIT_S,
        )
        await settle(pilot)
        screen = await open_pane(pilot)
        # The run saved no adapter: `studio eval` says so, and the pane shows its words.
        said = str(screen.query_one("#eval-progress", Label).render())
        assert said.startswith("Evaluating run 1 stopped: ") and "no adapter" in said
        # An evaluation stored meanwhile (as `studio eval` would) shows on the history's reload.
        evaluate_run_1(db, [4, 4])
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert evaluation_cell(screen) == "CTRS 4.00 [4.00, 4.00] · PANAS +2.0 / -3.0 · 2 sessions"


async def test_f7_opens_a_chat_with_the_selected_runs_adapter(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "r1"
    async with training_app(db, tmp_path / "runs").run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("f7")  # no adapter yet: a warning, the pane stays
        await settle(pilot)
        assert pilot.app.screen is screen
        (folder / "adapter_config.json").write_text("{}")  # the adapter is loaded on first answer
        await pilot.press("f7")
        await settle(pilot)
        chat = pilot.app.screen
        assert isinstance(chat, ChatScreen)
        assert chat.session.counselor.label == "run 1 (adapter)"
        assert chat.session.counselor.run_id == 1
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is screen


def test_progress_reads_studio_evals_lines() -> None:
    progress = EvaluationProgress(run_id=2)
    assert progress.describe() == "Evaluating run 2: starting…"
    progress.read("evaluation 5 of run 2 (adapter): 3 sessions")
    progress.read("  record:1 negative: 6 turns, ok")
    progress.read("  record:2 neutral: 2 turns, failed: timeout")
    assert progress.describe() == "Evaluating run 2: 2/3 sessions"
    progress.finished = True
    assert progress.describe() == "Evaluated run 2: 2/3 sessions"


async def test_enter_on_a_run_of_the_history_shows_that_run(db: Path, tmp_path: Path) -> None:
    """The history posts `RunChosen`; the pane shows that run's log, plot and status."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    fake_run(db, tmp_path / "runs" / "r2", gone.pid, steps=2).close()  # run 2: failed, newest
    posted: list[Any] = []
    app = training_app(db, tmp_path / "runs")
    async with app.run_test(size=SIZE, message_hook=posted.append) as pilot:
        screen = await open_pane(pilot)
        plot = screen.query_one(LossPlot)
        assert plot.steps == [1, 2]  # the newest run, shown at once
        table = screen.query_one("#runs", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("1"))
        await pilot.press("enter")
        await pilot_wait_until(pilot, lambda: plot.steps == list(range(1, 9)), "run 1's plot")
        # (a bubbling message passes the hook once for each node it reaches)
        chosen = {id(m): m.run.id for m in posted if isinstance(m, RunChosen)}
        assert list(chosen.values()) == [1]
        assert "Run 1 completed" in str(screen.query_one("#run-status").render())
        assert "end    completed" in log_text(screen)
