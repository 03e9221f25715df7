"""The review guidelines: F2 opens them from any screen, with the version decisions record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import MarkdownViewer, Static

from studio.model import Stage
from studio.resources import default_guidelines_path
from studio.store import Store
from studio.team.guidelines import GuidelinesMissing, guideline_version
from studio.tui.app import StudioApp
from studio.tui.screens.guidelines import GuidelinesScreen
from studio.tui.screens.help import keys_table
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from tests.test_tui_support import SIZE, demo_db, open_record, settle, studio_app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


def on(app: Any, kind: type) -> bool:
    """Whether `app` shows a `kind` screen now (a fresh read each call, unlike a narrowing)."""
    return isinstance(app.screen, kind)


def shown(app: Any) -> tuple[str, str]:
    """The guidelines screen's version line and its Markdown source."""
    screen = app.screen
    assert isinstance(screen, GuidelinesScreen), type(screen).__name__
    version = str(screen.query_one("#guidelines-version", Static).render())
    return version, screen.query_one(MarkdownViewer).document.source


async def test_f2_opens_the_shipped_guidelines_from_the_queue_and_the_review(db: Path) -> None:
    app = studio_app(db)
    version = guideline_version(default_guidelines_path())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert on(app, QueueScreen)
        assert app.guideline_version == version
        await pilot.press("f2")
        await settle(pilot)
        line, source = shown(app)
        assert version in line
        assert source.startswith("# Review guidelines")
        assert "## Safety" in source
        await pilot.press("escape")
        await settle(pilot)
        assert on(app, QueueScreen)

        await open_record(pilot)
        assert on(app, ReviewScreen)
        await pilot.press("f2")
        await settle(pilot)
        line, _ = shown(app)
        assert version in line
        await pilot.press("escape")
        await settle(pilot)
        assert on(app, ReviewScreen)  # Escape closed the guidelines only


async def test_a_guidelines_file_from_the_settings_is_shown_with_its_version(
    db: Path, tmp_path: Path
) -> None:
    custom = tmp_path / "ours.md"
    custom.write_text("# Our clinic's rules\n\nReject every dialogue without a safety check.\n")
    app = studio_app(db, guidelines=custom)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_record(pilot)
        await pilot.press("f2")
        await settle(pilot)
        line, source = shown(app)
        assert guideline_version(custom) in line and str(custom) in line
        assert source.startswith("# Our clinic's rules")
        assert app.guideline_version == guideline_version(custom)


def test_help_lists_the_guidelines_key() -> None:
    console = Console(width=200, record=True)
    console.print(keys_table("Everywhere", StudioApp.BINDINGS, {}))
    text = console.export_text()
    assert "F2" in text and "app.guidelines" in text and "review guidelines" in text


def test_a_missing_guidelines_file_stops_the_app_before_it_starts(db: Path, tmp_path: Path) -> None:
    with pytest.raises(GuidelinesMissing, match=r"gone\.md"):
        studio_app(db, guidelines=tmp_path / "gone.md")


async def test_decisions_made_in_the_app_record_the_guideline_version(
    db: Path, tmp_path: Path
) -> None:
    custom = tmp_path / "ours.md"
    custom.write_text("# Our clinic's rules\n\nAccept only what you would show a client.\n")
    version = guideline_version(custom)
    app = studio_app(db, guidelines=custom)
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        record_id = screen.record_id
        await pilot.press("a")  # accept the first stage
        await settle(pilot)
        await pilot.press("X")  # reject the record as a whole
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
    with Store(db) as store:
        decided = store.conn.execute(
            "SELECT stage, guideline FROM decisions WHERE record_id = ? ORDER BY stage",
            (record_id,),
        ).fetchall()
        logged = store.conn.execute(
            "SELECT action, guideline FROM events WHERE record_id = ?"
            " AND action IN ('accept', 'reject_record') ORDER BY id",
            (record_id,),
        ).fetchall()
    assert decided == [(Stage.INTAKE_FORM.value, version), ("record", version)]
    assert logged == [("accept", version), ("reject_record", version)]
