"""The review app keeps the clinician's place and words (issue 8, item 6): typing stays in the
search box, a status message stays with its record, long texts and dialogs stay readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from tests.test_tui_support import SIZE, demo_db, open_record, settle, studio_app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


async def wait_until(pilot: Pilot[Any], condition: Any, what: str, tries: int = 400) -> None:
    """Pause until `condition()` holds (a bound on tries, never on seconds of wall time)."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_typing_stays_in_the_search_box_after_the_search_runs(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        await pilot.press("slash", "n")
        # The reviewer pauses: the search runs and the queue reloads under the box.
        await wait_until(pilot, lambda: queue.queue_filter.search == "n", "the search ran")
        await settle(pilot)
        search = queue.query_one("#search", Input)
        assert search.has_focus
        await pilot.press(*"urse st")  # `s` and `t` are the Stats and Training keys
        assert app.screen is queue and not isinstance(app.screen, StatsScreen)
        assert search.value == "nurse st"
        assert search.has_focus


def review_screen(app: Any) -> ReviewScreen:
    screen = app.screen
    assert isinstance(screen, ReviewScreen), type(screen).__name__
    return screen


def last_action(app: Any) -> str:
    return str(review_screen(app).query_one("#last-action").render())


async def test_a_status_message_stays_with_its_record(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "j", "x", "enter")  # reject record 3's plan
        await settle(pilot)
        assert last_action(app) == "✗ Rejected Counseling plan"
        for record_id in (4, 5):
            await pilot.press("n")
            await settle(pilot)
            assert review_screen(app).record_id == record_id
            assert last_action(app) == ""
        await pilot.press("u")  # undo goes back to record 3: the message is about record 3
        await settle(pilot)
        assert review_screen(app).record_id == 3
        assert last_action(app) == "↶ Undid reject of Counseling plan (record 3)"


async def test_a_status_message_expires(db: Path) -> None:
    app = studio_app(db, status_timeout=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: last_action(app) == "✓ Accepted Intake form", "said")
        await wait_until(pilot, lambda: last_action(app) == "", "the message faded")
