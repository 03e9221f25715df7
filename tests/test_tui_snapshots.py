"""What a reviewer sees: screenshots of the queue, a review with a dialogue, help and stats.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.test_tui_support import SIZE, demo_db, open_record, settle, studio_app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return demo_db(tmp_path / "demo.db")


def test_queue(db: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    assert snap_compare(studio_app(db), terminal_size=SIZE, run_before=run_before)


def test_review_with_a_dialogue(db: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_record(pilot)
        await pilot.press("a", "a", "j")  # two accepted, the dialogue focused
        await settle(pilot)

    assert snap_compare(studio_app(db), terminal_size=SIZE, run_before=run_before)


def test_help(db: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")

    assert snap_compare(studio_app(db), terminal_size=(120, 48), run_before=run_before)


def test_stats(db: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(studio_app(db), terminal_size=(120, 44), run_before=run_before)


def test_review_at_80_by_24(db: Path, snap_compare: Any) -> None:
    """The smallest usual terminal: the most used keys and "n/4 decided" stay in view."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_record(pilot)
        await pilot.press("a")
        await settle(pilot)

    assert snap_compare(studio_app(db), terminal_size=(80, 24), run_before=run_before)


def test_quit_question_during_a_run(db: Path, snap_compare: Any) -> None:
    """The whole question, wrapped inside its box."""
    from studio.tui.training import TrainingRun

    app = studio_app(db)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app.training = TrainingRun(token=1)
        await pilot.press("ctrl+q")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
