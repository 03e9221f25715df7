"""The evaluation screen: evaluations side by side, sessions lowest score first, a transcript."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from textual.pilot import Pilot
from textual.widgets import DataTable, SelectionList, Static

from studio.cbt.ctrs import CTRS_ITEMS
from studio.evaluate.storage import FINISHED, SessionRow, find_or_create_evaluation, save_session
from studio.store import Store
from studio.tui.screens.evaluation import EvaluationScreen, TranscriptScreen
from tests.conftest import FixedClock
from tests.test_tui_support import demo_db, settle, studio_app

TRANSCRIPT = (
    "Counselor: Hello, what brings you in?\nClient: I will fail.\nCounselor: What tells you so?"
)


def evaluated_db(path: Path) -> Path:
    """The demo database with two evaluations: an adapter and its base model, three sessions each."""
    demo_db(path)
    with Store(path, clock=FixedClock()) as store:
        for n, (label, base) in enumerate((("run 1 (adapter)", 4), ("model (base)", 2))):
            evaluation = find_or_create_evaluation(
                store, key=f"k{n}", run_id=None, label=label, counselor={}, settings={}
            )
            for m, (attitude, bump) in enumerate(
                (("positive", 1), ("negative", 0), ("negative", -1))
            ):
                score = base + bump
                save_session(
                    store,
                    SessionRow(
                        evaluation_id=evaluation.id,
                        client_key=f"record:{m + 1}",
                        record_id=m + 1,
                        attitude=attitude,
                        status=FINISHED,
                        transcript=TRANSCRIPT,
                        turns=3,
                        ended_by="limit",
                        ctrs={
                            i: {"score": score, "explanation": f"{i} was {score}."}
                            for i in CTRS_ITEMS
                        },
                        ctrs_mean=float(score),
                        panas_before={},
                        panas_after={},
                        positive_change=float(bump + n),
                        negative_change=float(-bump - 2),
                    ),
                )
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return evaluated_db(tmp_path / "demo.db")


async def test_evaluations_side_by_side_and_the_worst_session_opens_first(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EvaluationScreen)
        assert [(s["label"], s["sessions"]) for s in screen.summaries] == [
            ("run 1 (adapter)", 3),
            ("model (base)", 3),
        ]
        assert [s["ctrs_mean"]["mean"] for s in screen.summaries] == [4.0, 2.0]
        assert screen.summaries[0]["per_attitude"]["negative"]["sessions"] == 2
        scores = [s.ctrs_mean or 0.0 for _, s in screen.sessions]
        assert scores == sorted(scores) and scores[0] == 1.0  # the base model's worst, first
        assert screen.query_one("#sessions", DataTable).row_count == 6
        await pilot.press("b", "b")  # twice: still one new record
        await settle(pilot)
        with Store(db) as store:
            new = store.conn.execute(
                "SELECT r.id, r.seed_id, r.attitude, r.status, r.source FROM records r"
                " WHERE r.source = 'eval'"
            ).fetchall()
            (seed,) = store.conn.execute("SELECT seed_id FROM records WHERE id = 3").fetchone()
            events = store.conn.execute(
                "SELECT action, reviewer FROM events WHERE action = 'send_back'"
            ).fetchall()
        assert [row[1:] for row in new] == [(seed, "negative", "pending", "eval")]
        assert events == [("send_back", "dr_lee")]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        assert app.screen.session.ctrs_mean == 1.0
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, EvaluationScreen | TranscriptScreen)


def column_headers(screen: EvaluationScreen, panel: str) -> list[str]:
    table = screen.query_one(f"#{panel}", Static).content
    assert isinstance(table, Table)
    return [str(column.header) for column in table.columns]


async def test_the_user_chooses_which_evaluations_to_compare(db: Path) -> None:
    with Store(db, clock=FixedClock()) as store:  # a third: the teacher, one session
        teacher = find_or_create_evaluation(
            store, key="t", run_id=None, label="teacher (api)", counselor={}, settings={}
        )
        save_session(
            store,
            SessionRow(
                evaluation_id=teacher.id,
                client_key="record:1",
                attitude="neutral",
                status=FINISHED,
                transcript=TRANSCRIPT,
                turns=3,
                ctrs={i: {"score": 5, "explanation": ""} for i in CTRS_ITEMS},
                ctrs_mean=5.0,
            ),
        )
    app = studio_app(db)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EvaluationScreen)
        choices = screen.query_one("#chosen", SelectionList)
        assert choices.option_count == 3 and len(choices.selected) == 3  # all, at first
        assert column_headers(screen, "items")[1:] == [
            "run 1 (adapter) (n=3)",
            "model (base) (n=3)",
            "teacher (api) (n=1)",
        ]
        choices.focus()
        choices.highlighted = 1
        await pilot.press("space")  # the base model out: adapter vs teacher
        await pilot.pause()
        assert column_headers(screen, "items")[1:] == [
            "run 1 (adapter) (n=3)",
            "teacher (api) (n=1)",
        ]
        for panel in ("panas", "attitudes"):
            assert column_headers(screen, panel)[1:] == ["run 1 (adapter)", "teacher (api)"]
        assert {label for label, _ in screen.sessions} == {"run 1 (adapter)", "teacher (api)"}
        assert screen.query_one("#sessions", DataTable).row_count == 4
        await pilot.press("ctrl+r")  # a reload keeps the choice
        await settle(pilot)
        assert len(column_headers(screen, "items")) == 3
        assert sorted(choices.selected) == [1, 3]  # the adapter and the teacher
        choices.deselect_all()
        await pilot.pause()
        assert screen.sessions == []
        assert "Choose the evaluations" in str(screen.query_one("#items", Static).render())


async def test_no_evaluation_says_how_to_make_one(tmp_path: Path) -> None:
    app = studio_app(demo_db(tmp_path / "demo.db"))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert "studio eval --run N" in str(app.screen.query_one("#items", Static).render())


def test_snapshot_of_the_comparison(db: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)

    assert snap_compare(studio_app(db), terminal_size=(140, 50), run_before=run_before)
