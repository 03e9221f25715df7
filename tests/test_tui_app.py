"""Pilot tests: key presses in the review app, checked against the database rows they write."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.widgets import DataTable, Input, TextArea

from studio.cbt.techniques import TECHNIQUES
from studio.ingest.load import add_rows
from studio.model import RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.tui.messages import DecisionSaved
from studio.tui.screens.dialogs import ConfirmScreen, DraftsScreen, ReasonScreen, TechniqueScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.screens.help import HelpScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from studio.tui.widgets.stage_panel import StagePanel
from tests.test_tui_support import (
    FIRST_TO_REVIEW,
    REVIEWER,
    SIZE,
    demo_db,
    loopback_app,
    open_record,
    query,
    settle,
    stage_row,
    studio_app,
    type_text,
)

T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


def on_screen(app: Any, kind: type[T]) -> T:
    """The current screen, checked to be a `kind` (a fresh read each call, unlike a narrowing)."""
    screen = app.screen
    assert isinstance(screen, kind), type(screen).__name__
    return screen


def focused(screen: ReviewScreen) -> Stage:
    return screen.stage


def review_screen(app: Any) -> ReviewScreen:
    return on_screen(app, ReviewScreen)


def last_action(app: Any) -> str:
    return str(review_screen(app).query_one("#last-action").render())


async def test_queue_opens_on_the_records_with_counts_and_reviewer(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = on_screen(app, QueueScreen)
        table = queue.query_one(DataTable)
        assert table.row_count == 8
        assert app.sub_title == f"reviewer: {REVIEWER} · demo.db"
        counts = str(queue.query_one("#counts").render())
        assert "in review 6" in counts and "accepted 2" in counts
        assert queue.matching == 8


async def test_accept_writes_the_decision_and_moves_to_the_next_stage(db: Path) -> None:
    app = studio_app(db)
    posted: list[Any] = []
    async with app.run_test(size=SIZE, message_hook=posted.append) as pilot:
        await open_record(pilot)
        screen = review_screen(app)
        assert screen.record_id == FIRST_TO_REVIEW
        assert focused(screen) is Stage.INTAKE_FORM
        await pilot.press("a")
        assert focused(screen) is Stage.CBT_TECHNIQUE  # moved on before the write even landed
        await settle(pilot)
        assert last_action(app) == "✓ Accepted Intake form"
    saved = [m for m in posted if isinstance(m, DecisionSaved)]
    assert len(saved) == 1
    assert saved[0].item.record.stages[Stage.INTAKE_FORM].status is StageStatus.ACCEPTED
    assert stage_row(db, FIRST_TO_REVIEW, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED
    assert query(
        db, "SELECT reviewer, action, stage FROM events WHERE record_id = ? ORDER BY id DESC", 3
    )[0] == (REVIEWER, "accept", "intake_form")


async def test_accept_all_accepts_the_record(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("A")
        await settle(pilot)
        record = review_screen(app).item
        assert record is not None and record.record.status is RecordStatus.ACCEPTED
        assert "✓ accepted" in str(app.screen.query_one("#record-info").render())
    with Store(db) as store:
        record_view = store.record(FIRST_TO_REVIEW)
    assert record_view.status is RecordStatus.ACCEPTED
    assert record_view.last_reviewer == REVIEWER
    rows = query(db, "SELECT accept_group FROM events WHERE action = 'accept' AND record_id = 3")
    assert len(rows) == 4 and len({group for (group,) in rows}) == 1 and rows[0][0] is not None


async def test_edit_then_ctrl_s_saves_an_edit_beside_the_original(db: Path) -> None:
    app = studio_app(db)
    original = stage_row(db, FIRST_TO_REVIEW, Stage.CBT_PLAN).text
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "j", "e")
        editor = app.screen
        assert isinstance(editor, EditorScreen) and editor.stage == Stage.CBT_PLAN
        area = editor.query_one(TextArea)
        area.move_cursor(area.document.end)
        await pilot.press("enter")
        await type_text(pilot, "7. Review homework.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert last_action(app) == "✎ Saved your edit of the Counseling plan"
        panel = app.screen.query_one("#stage-cbt_plan", StagePanel)
        assert panel.has_class("-edited")
    stage = stage_row(db, FIRST_TO_REVIEW, Stage.CBT_PLAN)
    assert stage.status is StageStatus.EDITED
    assert stage.original_text == original
    assert stage.edited_text == original + "\n7. Review homework."
    assert query(db, "SELECT COUNT(*) FROM drafts") == [(0,)]


async def test_the_technique_is_edited_by_choosing_one_of_the_twelve(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "e")
        on_screen(app, TechniqueScreen)
        current = TECHNIQUES.index("Changing Rules to Wishes")
        await pilot.press("down", "enter")
        on_screen(app, ConfirmScreen)  # stale or keep the plan and dialogue (test_tui_edit_checks)
        await pilot.press("n")
        await settle(pilot)
    chosen = TECHNIQUES[current + 1]
    stage = stage_row(db, FIRST_TO_REVIEW, Stage.CBT_TECHNIQUE)
    assert stage.status is StageStatus.EDITED and stage.edited_text == chosen
    assert query(db, "SELECT technique FROM records WHERE id = 3") == [(chosen,)]


async def test_reject_a_stage_and_a_record_with_reasons(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "j", "j", "x")
        on_screen(app, ReasonScreen)
        await pilot.press(*"too short", "enter")
        await settle(pilot)
        assert last_action(app) == "✗ Rejected Dialogue"
        await pilot.press("X", "escape")  # escape cancels: nothing is written
        await settle(pilot)
        assert query(db, "SELECT rejected FROM records WHERE id = 3") == [(0,)]
        await pilot.press("X")
        await type_text(pilot, "duplicate seed")
        await pilot.press("enter")
        await settle(pilot)
        assert "rejected as a whole: duplicate seed" in str(
            app.screen.query_one("#record-info").render()
        )
    dialogue = stage_row(db, FIRST_TO_REVIEW, Stage.DIALOGUE)
    assert dialogue.status is StageStatus.REJECTED and dialogue.note == "too short"
    assert query(db, "SELECT status, note FROM records WHERE id = 3") == [
        ("rejected", "duplicate seed")
    ]


async def test_undo_chain_walks_back_every_decision_one_at_a_time(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("a", "a")  # intake form, technique
        await pilot.press("x")  # the plan
        await type_text(pilot, "vague")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("n")  # on to record 4, then accept all there
        await settle(pilot)
        assert review_screen(app).record_id == 4
        await pilot.press("A")
        await settle(pilot)
        assert query(db, "SELECT status FROM records WHERE id = 4") == [("accepted",)]

        await pilot.press("u")  # the accept-all, in one step
        await settle(pilot)
        assert query(db, "SELECT status FROM records WHERE id = 4") == [("in_review",)]
        assert last_action(app) == "↶ Undid accept all (record 4)"
        await pilot.press("u")  # the reject, back on record 3
        await settle(pilot)
        screen = review_screen(app)
        assert screen.record_id == 3 and focused(screen) is Stage.CBT_PLAN
        assert stage_row(db, 3, Stage.CBT_PLAN).status is StageStatus.GENERATED
        await pilot.press("u", "u")
        await settle(pilot)
        assert {stage_row(db, 3, s).status for s in Stage} == {StageStatus.GENERATED}
        await pilot.press("u")
        await settle(pilot)
        assert last_action(app) == "Nothing left to undo."
    assert query(db, "SELECT COUNT(*) FROM events WHERE action = 'undo'") == [(7,)]


async def test_escape_asks_before_discarding_an_edit(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("e", "x", "y", "z", "escape")
        on_screen(app, ConfirmScreen)
        await pilot.press("n")
        on_screen(app, EditorScreen)
        await pilot.press("escape", "y")
        await settle(pilot)
        on_screen(app, ReviewScreen)
        await pilot.press("e", "escape")  # nothing changed: no question
        on_screen(app, ReviewScreen)
    assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.GENERATED
    assert query(db, "SELECT COUNT(*) FROM drafts") == [(0,)]


async def test_diff_shows_the_edit_against_the_original(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot, 2)  # the demo's edited plan
        screen = review_screen(app)
        assert not screen.check_action("diff", ())
        await pilot.press("j", "j")
        assert screen.check_action("diff", ())
        await pilot.press("d")
        diff = app.screen.query_one("#diff")
        text = "\n".join(str(w.render()) for w in diff.children)
        assert "+Note for next session: review the homework together before starting." in text
        await pilot.press("escape")
        on_screen(app, ReviewScreen)


async def test_an_edit_survives_a_crash_as_a_draft_and_is_offered_back(
    db: Path, tmp_path: Path
) -> None:
    crashed = tmp_path / "after-crash.db"
    app = studio_app(db, draft_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "j", "j", "e")
        area = app.screen.query_one(TextArea)
        area.move_cursor(area.document.end)
        await pilot.press("enter")
        await type_text(pilot, "Client: Thanks.")
        await pilot.press("enter")  # a valid session still ends on a closing Counselor turn
        await type_text(pilot, "Counselor: One more thing: see you next week.")
        for _ in range(50):  # the autosave timer writes the draft
            await pilot.pause(0.05)
            if query(db, "SELECT COUNT(*) FROM drafts") == [(1,)]:
                break
        # What a kill -9 leaves on disk right now: the committed database, copied aside.
        source, target = sqlite3.connect(db), sqlite3.connect(crashed)
        source.backup(target)
        source.close()
        target.close()

    app = studio_app(crashed)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        on_screen(app, DraftsScreen)
        await pilot.press("enter")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, EditorScreen)
        assert editor.restored
        assert editor.stage is Stage.DIALOGUE
        assert editor.query_one(TextArea).text.endswith(
            "\nCounselor: One more thing: see you next week."
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
    dialogue = stage_row(crashed, 3, Stage.DIALOGUE)
    assert dialogue.status is StageStatus.EDITED
    assert (dialogue.edited_text or "").endswith("\nCounselor: One more thing: see you next week.")
    assert query(crashed, "SELECT COUNT(*) FROM drafts") == [(0,)]


async def test_quitting_mid_edit_keeps_a_draft(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("e")
        await type_text(pilot, "unsaved words")
        await pilot.press("ctrl+q")
    drafts = query(db, "SELECT record_id, stage, reviewer, text FROM drafts")
    assert len(drafts) == 1 and drafts[0][:3] == (3, "intake_form", REVIEWER)
    assert drafts[0][3].startswith("unsaved words")


async def test_status_filter_then_next_and_previous_walk_the_filter(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")  # in review
        await settle(pilot)
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        assert queue.loaded_ids == [3, 4, 5, 6, 7, 8] and queue.matching == 6
        await pilot.press("enter")
        await settle(pilot)
        screen = review_screen(app)
        assert screen.record_id == 3
        await pilot.press("A")
        await settle(pilot)
        await pilot.press("n", "n")
        await settle(pilot)
        assert screen.record_id == 5
        await pilot.press("p", "p", "p")  # record 3 is accepted now: it left the filter
        await settle(pilot)
        assert screen.record_id == 4
        assert last_action(app) == "This is the first."
        await pilot.press("q")
        await settle(pilot)
        assert on_screen(app, QueueScreen) is queue
        table = queue.query_one(DataTable)
        assert queue.loaded_ids[table.cursor_row] == 4  # back where the reviewer was
        assert "✓ accepted" in str(table.get_row("3")[1])  # shown, not yet re-filtered


async def test_technique_filter_and_search(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        await pilot.press("g")
        on_screen(app, TechniqueScreen)
        for _ in range(1 + TECHNIQUES.index("Decatastrophizing")):
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        assert queue.loaded_ids == [1]
        await pilot.press("escape")  # clears the filters
        await settle(pilot)
        assert len(queue.loaded_ids) == 8
        await pilot.press("slash", *"nurse", "enter")
        await settle(pilot)
        assert queue.loaded_ids == [1]
        assert queue.query_one("#search", Input).value == "nurse"
        assert queue.query_one(DataTable).has_focus


async def test_queue_pages_lazily(tmp_path: Path) -> None:
    from tests.test_tui_store import _row

    db = tmp_path / "many.db"
    with Store(db) as store:
        add_rows(store, [_row(n) for n in range(230)])
    app = studio_app(db, page_size=50)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        assert len(queue.loaded_ids) == 50 and queue.matching == 230
        for _ in range(4):
            await pilot.press("end")
            await settle(pilot)
        assert len(queue.loaded_ids) == 230 and queue.complete
        assert queue.loaded_ids == list(range(1, 231))


async def test_regenerate_without_a_backend_says_so(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert any("No synthesis backend" in n.message for n in app._notifications)
    assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.GENERATED


async def test_another_writer_holding_the_lock_never_freezes_the_screen(db: Path) -> None:
    app = studio_app(db)
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:  # a `studio synth` committing a big batch
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(10)
        conn.execute("COMMIT")
        conn.close()

    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        writer = threading.Thread(target=hold_the_write_lock)
        writer.start()
        locked.wait(5)
        started = time.monotonic()
        await pilot.press("a", "j", "j")
        screen = review_screen(app)
        assert focused(screen) is Stage.DIALOGUE  # keys still work while the write waits
        assert time.monotonic() - started < 5
        assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.GENERATED
        release.set()
        writer.join()
        await settle(pilot)
        assert last_action(app) == "✓ Accepted Intake form"
    assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED


async def test_keys_can_be_remapped_by_binding_id(db: Path) -> None:
    app = studio_app(db, keymap={"review.accept": "y"})
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.GENERATED
        await pilot.press("y")
        await settle(pilot)
    assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.ACCEPTED


async def test_the_command_palette_offers_every_review_action(db: Path) -> None:
    from studio.tui.commands import StudioCommands

    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        screen = review_screen(app)
        provider = StudioCommands(screen)
        names = {command.name for command in provider.commands()}
        assert {
            "Accept",
            "Accept all",
            "Reject",
            "Reject record",
            "Edit",
            "Regenerate",
            "Undo",
            "Next",
            "Prev",
            "Queue",
            "Help",
        } <= names
        assert "Diff" not in names  # nothing edited here: hidden, like its key
        await pilot.press("ctrl+p")
        await pilot.press(*"accept all")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
    assert query(db, "SELECT status FROM records WHERE id = 3") == [("accepted",)]


async def test_queue_palette_offers_the_filters(db: Path) -> None:
    from studio.tui.commands import StudioCommands

    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        commands = {c.name: c for c in StudioCommands(app.screen).commands()}
        assert {"Open", "Search", "Status", "Technique", "Stats", "Help"} <= set(commands)
        commands["Filter by status: accepted"].run()
        await settle(pilot)
        assert on_screen(app, QueueScreen).loaded_ids == [1, 2]


async def test_help_and_stats_screens(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        on_screen(app, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f1")
        on_screen(app, HelpScreen)
        await pilot.press("q", "s")
        await settle(pilot)
        on_screen(app, StatsScreen)
        await pilot.press("escape")
        on_screen(app, QueueScreen)


async def test_regenerate_against_a_loopback_chat_completions_server(db: Path) -> None:
    from tests.chat_server import ChatServer, Reply, cbt_reply

    # The server holds its answer until the test has looked at the screen mid-regeneration:
    # what is checked never depends on how fast a busy machine runs.
    answer = threading.Event()

    def respond(body: dict[str, Any]) -> Reply:
        answer.wait(60)
        return cbt_reply(body)

    with ChatServer(respond) as server:
        app = loopback_app(db, server)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await open_record(pilot)
                screen = review_screen(app)
                await pilot.press("r")
                # The screen stays usable while the backend answers.
                assert (3, Stage.INTAKE_FORM) in app.regenerating
                assert not screen.check_action("accept", ())
                assert "regenerating…" in str(
                    screen.query_one("#stage-intake_form", StagePanel).border_subtitle
                )
                await pilot.press("j")
                assert focused(screen) is Stage.CBT_TECHNIQUE
                answer.set()
                await settle(pilot)  # waits for the regeneration worker, however long it takes
                assert not app.regenerating
                item = screen.item
                assert item is not None
                intake = item.record.stages[Stage.INTAKE_FORM]
                assert intake.status is StageStatus.GENERATED and "Alex Morgan" in intake.text
                panel = screen.query_one("#stage-cbt_plan", StagePanel)
                assert panel.has_class("-stale")
        finally:
            answer.set()  # a failed assertion must not leave the server's thread waiting
        assert server.stats.ok >= 1
    assert stage_row(db, 3, Stage.INTAKE_FORM).model == "test-model"
    assert {stage_row(db, 3, s).status for s in Stage if s is not Stage.INTAKE_FORM} == {
        StageStatus.STALE
    }
    last_event = "SELECT reviewer FROM events WHERE record_id = 3 ORDER BY id DESC LIMIT 1"
    assert query(db, last_event) == [(REVIEWER,)]


async def test_a_stage_that_needs_attention_says_why(tmp_path: Path) -> None:
    from tests.test_tui_store import _row

    db = tmp_path / "invalid.db"
    with Store(db) as store:
        add_rows(store, [_row(1, technique="a made-up technique")])
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot, 1)
        screen = review_screen(app)
        await pilot.press("tab")
        assert focused(screen) is Stage.CBT_TECHNIQUE
        panel = screen.query_one("#stage-cbt_technique", StagePanel)
        reason = str(panel.query_one("#reason").render())
        assert reason == "Invalid: names none of the 12 CBT techniques"
        assert panel.has_class("-invalid")
        assert screen.check_action("accept", ())  # `a` says why it is not accepted
        assert screen.check_action("accept_all", ())  # the three other stages
        assert screen.check_action("edit", ())
