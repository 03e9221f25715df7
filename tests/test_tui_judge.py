"""Pilot tests: the judge's scores in the queue and on the review screen, the clinician's digit
ratings, and re-judging in the background against a loopback chat-completions server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from studio.cbt.ctrs import RATED_ITEMS
from studio.model import Stage
from studio.store import Store
from studio.store.judging import (
    SCORED,
    ItemScore,
    JudgeResult,
    SafetyFlag,
    dialogue_hash,
    save_judgement,
)
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from studio.tui.widgets.dialogue_view import DialogueView
from studio.tui.widgets.judge_panel import JudgePanel
from tests.test_tui_support import (
    REVIEWER,
    SIZE,
    demo_db,
    loopback_app,
    open_record,
    open_screen,
    plain_text,
    query,
    settle,
    studio_app,
)

#: Record -> the judge's score for every item; record 5 is flagged on turn 4.
SCORES = {3: 5, 4: 2, 5: 4, 6: 1}
FLAGGED = 5


def judge_directly(db: Path) -> None:
    with Store(db) as store:
        for record_id, score in SCORES.items():
            flags = (
                (SafetyFlag("risk_of_harm", 4, "quoted words", "asked about safety", "why"),)
                if record_id == FLAGGED
                else ()
            )
            result = JudgeResult(
                status=SCORED,
                items={i: ItemScore(score, f"because {i} was {score}") for i in RATED_ITEMS},
                flags=flags,
                plan_steps=(1, 2),
                model="judge-model",
                template_version="judge@1",
            )
            save_judgement(store, record_id, dialogue_hash(store, record_id), result)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = demo_db(tmp_path / "demo.db")
    judge_directly(path)
    return path


def queue_of(app: Any) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    return screen


async def test_the_queue_shows_scores_sorts_lowest_first_and_filters_flagged(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = queue_of(app)
        table = queue.query_one(DataTable)
        assert str(table.get_cell("4", "score")) == "2.0"
        assert str(table.get_cell(str(FLAGGED), "score")) == "4.0 ⚑"
        assert str(table.get_cell("1", "score")) == "—"
        await pilot.press("o")
        await settle(pilot)
        # Lowest CTRS mean first, then the records the judge has not scored, by id.
        assert queue.loaded_ids == [6, 4, 5, 3, 1, 2, 7, 8]
        assert "lowest score first" in str(queue.query_one("#showing").render())
        await pilot.press("F")
        await settle(pilot)
        assert queue.loaded_ids == [FLAGGED]
        assert queue.matching == 1
        await pilot.press("F", "o")
        await settle(pilot)
        assert queue.loaded_ids == list(range(1, 9))


async def test_n_walks_the_queue_in_score_order(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("home", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen) and screen.record_id == 6
        await pilot.press("n")
        await settle(pilot)
        assert screen.record_id == 4


async def test_the_review_screen_shows_scores_explanations_and_the_flagged_turn(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot, FLAGGED)
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        panel = str(screen.query_one(JudgePanel).render())
        assert "CTRS mean 4.0" in panel
        assert "because guided_discovery was 4" in panel
        assert "⚑ turn 4 · risk of harm: “quoted words” — counselor: asked about safety" in panel
        assert "judge-model · judge@1" in panel
        assert screen.query_one(DialogueView).flagged == frozenset({4})


async def test_digits_rate_items_and_u_undoes_a_rating(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot, 3)
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        await pilot.press("4", "2")
        await settle(pilot)
        assert screen.rating_item == RATED_ITEMS[2]
        rows = query(db, "SELECT item, value, reviewer FROM clinician_ratings ORDER BY item")
        assert rows == [
            ("interpersonal_effectiveness", 2, REVIEWER),
            ("understanding", 4, REVIEWER),
        ]
        assert "you 2" in str(screen.query_one(JudgePanel).render())
        await pilot.press("u")
        await settle(pilot)
        assert query(db, "SELECT item, value FROM clinician_ratings") == [("understanding", 4)]
        assert "Undid rating" in str(screen.query_one("#last-action").render())
        await pilot.press("i", "i", "6")  # from collaboration, two items on: focus
        await settle(pilot)
    assert ("focus", 6) in query(db, "SELECT item, value FROM clinician_ratings")
    events = query(db, "SELECT action FROM events WHERE action IN ('rate', 'undo') ORDER BY id")
    assert events == [("rate",), ("rate",), ("undo",), ("rate",)]


async def test_an_edited_dialogue_shows_its_score_as_stale(db: Path) -> None:
    from studio.store.review import save_edit

    with Store(db) as store:
        text = store.stage(3, Stage.DIALOGUE).text
        save_edit(store, 3, Stage.DIALOGUE, text + " Take care.", reviewer="dr_b")
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert str(queue_of(app).query_one(DataTable).get_cell("3", "score")) == "—"
        await open_record(pilot, 3)
        panel = str(app.screen.query_one(JudgePanel).render())
        assert "stale: the dialogue changed since" in panel


async def test_J_rejudges_in_the_background_against_a_loopback_server(db: Path) -> None:
    from tests.chat_server import ChatServer
    from tests.judge_server import JudgeResponder

    responder = JudgeResponder()
    responder.hold_after = 0  # hold the answer until the screen was looked at mid-judgement
    responder.release.clear()
    with ChatServer(responder) as server:
        app = loopback_app(db, server, "loopback-judge")
        try:
            async with app.run_test(size=SIZE) as pilot:
                await open_record(pilot, 3)
                screen = app.screen
                assert isinstance(screen, ReviewScreen)
                await pilot.press("J")
                assert 3 in app.judging
                assert not screen.check_action("rejudge", ())
                assert "re-judging…" in str(screen.query_one(JudgePanel).render())
                responder.release.set()
                await settle(pilot)
                assert not app.judging
                panel = str(screen.query_one(JudgePanel).render())
                assert "loopback-judge · judge@1" in panel
        finally:
            responder.release.set()
    rows = query(db, "SELECT model, status FROM judge_scores WHERE record_id = 3 ORDER BY id")
    assert rows == [("judge-model", "scored"), ("loopback-judge", "scored")]


async def test_stats_shows_the_judge_against_clinicians_and_coverage(db: Path) -> None:
    from studio.store.judging import rate

    with Store(db) as store:
        rate(store, 3, "focus", 2, reviewer=REVIEWER)
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, "s", StatsScreen)
        agreement = screen.query_one("#agreement", Static).content
        text = plain_text(agreement)
        assert "Judge against clinician (1 paired ratings)" in text
        assert "Too few ratings to tell" in text
        techniques = plain_text(screen.query_one("#coverage-0", Static).content)
        assert "Accepted per technique (of all)" in techniques
        assert "Decatastrophizing" in techniques and "50%" in techniques  # 1 of the 2 accepted
        bands = plain_text(screen.query_one("#coverage-3", Static).content)
        assert "not judged" in bands
