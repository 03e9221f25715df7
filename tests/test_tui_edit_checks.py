"""Reviewer edits are held to the stage rule in the review app (Pilot: keys → database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Label, TextArea

from studio.cbt.techniques import TECHNIQUES
from studio.model import RecordStatus, Stage, StageStatus
from studio.tui.screens.dialogs import ConfirmScreen, TechniqueScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.screens.review import ReviewScreen
from tests.test_tui_support import (
    FIRST_TO_REVIEW,
    REVIEWER,
    SIZE,
    demo_db,
    open_record,
    query,
    settle,
    stage_row,
    studio_app,
    type_text,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


def verdict(app: Any) -> str:
    return str(app.screen.query_one("#editor-verdict", Label).render())


async def edit_dialogue_to_start_with_the_client(pilot: Any) -> None:
    await open_record(pilot)
    await pilot.press("j", "j", "j", "e")
    editor = pilot.app.screen
    assert isinstance(editor, EditorScreen) and editor.stage is Stage.DIALOGUE
    assert verdict(pilot.app) == "✓ A valid dialogue"
    editor.query_one(TextArea).move_cursor((0, 0))
    await type_text(pilot, "Client: I'll start, if that's all right.\n")


async def test_the_editor_shows_the_verdict_and_asks_before_saving_invalid(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await edit_dialogue_to_start_with_the_client(pilot)
        assert verdict(app).startswith("✗ Invalid: the dialogue must start with the Counselor")
        await pilot.press("ctrl+s")
        question = app.screen
        assert isinstance(question, ConfirmScreen)
        assert "Save it as invalid?" in question.question
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("a")  # says why, accepts nothing
        await settle(pilot)
        await pilot.press("A")  # accepts the three others, skips the invalid dialogue
        await settle(pilot)
        notes = [n.message for n in app._notifications]
    dialogue = stage_row(db, FIRST_TO_REVIEW, Stage.DIALOGUE)
    assert dialogue.status is StageStatus.INVALID
    assert (dialogue.edited_text or "").startswith("Client: I'll start")
    assert "must start with the Counselor" in dialogue.error
    assert any("Can't accept the Dialogue: it is invalid" in n for n in notes)
    statuses = query(
        db, "SELECT name, status FROM stages WHERE record_id = ? ORDER BY position", FIRST_TO_REVIEW
    )
    assert [s for _, s in statuses] == ["accepted", "accepted", "accepted", "invalid"]
    record = query(db, "SELECT status FROM records WHERE id = ?", FIRST_TO_REVIEW)
    assert record != [(RecordStatus.ACCEPTED.value,)]


async def test_answering_no_keeps_the_editor_open_and_saves_nothing(db: Path) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await edit_dialogue_to_start_with_the_client(pilot)
        await pilot.press("ctrl+s", "n")
        assert isinstance(app.screen, EditorScreen)
        # Fixing the text turns the verdict green, and then it saves without a question.
        area = app.screen.query_one(TextArea)
        area.delete((0, 0), (1, 0))
        await pilot.pause()
        assert verdict(app) == "✓ A valid dialogue"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
    assert stage_row(db, FIRST_TO_REVIEW, Stage.DIALOGUE).status is StageStatus.GENERATED


@pytest.mark.parametrize(("answer", "expected"), [("y", "stale"), ("n", "generated")])
async def test_changing_the_technique_asks_stale_or_keep_and_audits_it(
    db: Path, answer: str, expected: str
) -> None:
    app = studio_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        await pilot.press("j", "e")
        assert isinstance(app.screen, TechniqueScreen)
        await pilot.press("down", "enter")
        question = app.screen
        assert isinstance(question, ConfirmScreen)
        assert "counseling plan and dialogue were written for" in question.question
        await pilot.press(answer)
        await settle(pilot)
    chosen = TECHNIQUES[TECHNIQUES.index("Changing Rules to Wishes") + 1]
    assert stage_row(db, FIRST_TO_REVIEW, Stage.CBT_TECHNIQUE).edited_text == chosen
    for stage in (Stage.CBT_PLAN, Stage.DIALOGUE):
        assert stage_row(db, FIRST_TO_REVIEW, stage).status.value == expected
    action = "stale" if answer == "y" else "keep_downstream"
    assert query(
        db,
        "SELECT reviewer FROM events WHERE action = ? AND record_id = ?",
        action,
        FIRST_TO_REVIEW,
    ) == [(REVIEWER,)]
