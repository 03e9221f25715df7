"""The review app keeps the clinician's place and words (issue 8, item 6): typing stays in the
search box, a status message stays with its record, long texts and dialogs stay readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Input, Label, TextArea
from textual.widgets._toast import Toast

from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage
from studio.store import Store
from studio.tui.formatting import PREVIEW_CHARS
from studio.tui.messages import TrainingEnded
from studio.tui.screens.dialogs import ConfirmScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from studio.tui.training import TrainingRun
from studio.tui.widgets.dialogue_view import DialogueView
from studio.tui.widgets.stage_panel import StagePanel
from tests.test_tui_support import (
    SIZE,
    demo_db,
    open_record,
    settle,
    stage_row,
    studio_app,
    type_text,
)
from tests.waiting import pilot_wait_until as wait_until


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


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


async def test_the_quit_question_wraps_inside_its_dialog(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.training = TrainingRun(token=1)  # a run is starting
        await pilot.press("ctrl+q")
        question = app.screen
        assert isinstance(question, ConfirmScreen)
        await pilot.pause()
        title = question.query_one(".dialog-title", Label)
        box = question.query_one(".dialog")
        assert box.content_region.contains_region(title.region), (title.region, box.region)
        assert title.size.height >= 3  # the whole question, over several lines
        await pilot.press("n")
    assert not app._exit


async def test_the_train_extra_toast_shows_the_pip_command(db: Path) -> None:
    said = (
        "The runner refused to start: training needs torch: install the train extra with "
        '`pip install -e ".[train]"`'
    )
    app = studio_app(db)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        app.training = TrainingRun(token=1)
        app.post_message(TrainingEnded(1, 2, said))
        await wait_until(pilot, lambda: bool(app.screen.query(Toast)), "a toast")
        toast = app.screen.query_one(Toast)
        assert 'pip install -e ".[train]"' in str(toast.render())


def screen_text(app: Any) -> list[str]:
    """The terminal's lines as a person sees them."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def test_at_80_by_24_the_most_used_keys_and_the_progress_stay_in_view(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.resize_terminal(80, 24)  # the footer fits itself to the new width
        await pilot.press("j", "j", "e")
        await type_text(pilot, "A longer plan. ")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("j")  # the dialogue, still to review: every decision applies
        await pilot.pause()
        lines = screen_text(app)
        record_bar, footer = lines[1], lines[-1]
        assert "✎ Saved your edit" in record_bar
        assert "1/4 decided" in record_bar
        for key in ("a Accept", "x Reject", "e Edit", "u Undo", "n Next", "? Help"):
            assert key in footer, footer
        await pilot.press("q")
        await settle(pilot)
        await pilot.pause()
        footer = screen_text(app)[-1]
        for key in ("⏎ Open", "/ Search", "? Help"):
            assert key in footer, footer


async def test_help_lists_f1_and_the_command_palette(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=(120, 140)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        text = "\n".join(screen_text(app))
        everywhere = text[text.index("Everywhere") :]
        assert "F1 / ?" in everywhere and "Help" in everywhere
        assert "ctrl+p" in everywhere and "Command palette" in everywhere


MEGABYTE_PLAN = "Note each thought and test it against the evidence. " * 20_000  # ~1 MB, one line


def megabyte_db(path: Path) -> Path:
    turn = "Counselor: What would you tell a friend? " * 3 + "\nClient: That it is fine.\n"
    stages = {
        Stage.INTAKE_FORM: "intake",
        Stage.CBT_TECHNIQUE: "Reality Testing",
        Stage.CBT_PLAN: MEGABYTE_PLAN,
        Stage.DIALOGUE: turn * 6_000,  # ~1 MB of turns
    }
    with Store(path) as store:
        add_rows(
            store, [CactusRow(Seed("a persona", "a thought", ("Labeling",)), stages, "neutral")]
        )
    return path


async def test_a_megabyte_stage_text_is_laid_out_in_part_and_edited_whole(tmp_path: Path) -> None:
    db = megabyte_db(tmp_path / "big.db")
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot, 1)
        screen = review_screen(app)
        plan = screen.query_one("#stage-cbt_plan", StagePanel)
        shown = str(plan.query_one("#body").render())
        assert MEGABYTE_PLAN.startswith(shown) and len(shown) <= PREVIEW_CHARS
        more = str(plan.query_one("#more").render())
        assert (
            more
            == f"… {len(MEGABYTE_PLAN.strip()) - len(shown):,} more characters not shown here: e opens the whole text"
        )
        dialogue = screen.query_one("#stage-dialogue", StagePanel)
        turns = dialogue.query_one(DialogueView)
        assert 0 < len(turns.dialogue.turns) < 1_000  # of 12,000
        assert dialogue.query_one("#more").display
        for width, height in ((40, 12), (60, 20), (120, 36)):
            await pilot.resize_terminal(width, height)
            await pilot.pause()
        assert len(turns._lines) <= 1  # wrapped for the current width only
        assert plan.size.height < 2_000  # rows laid out: bounded, not one per wrapped line of 1 MB
        await pilot.press("j", "j", "e")  # the editor holds the whole text, unwrapped
        editor = app.screen
        assert isinstance(editor, EditorScreen)
        area = editor.query_one(TextArea)
        assert area.text == MEGABYTE_PLAN and not area.soft_wrap


async def test_a_megabyte_paste_stops_the_editor_wrapping(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("e")
        area = app.screen.query_one(TextArea)
        wrapped_before = area.soft_wrap
        area.post_message(events.Paste(MEGABYTE_PLAN))
        await wait_until(pilot, lambda: MEGABYTE_PLAN in area.text, "the paste landed")
        assert (wrapped_before, area.soft_wrap) == (True, False)
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert MEGABYTE_PLAN in stage_row(db, 3, Stage.INTAKE_FORM).text
