"""The review app on a database it cannot write or cannot use (issue 8, item 4, the app side).

Read-only: the app reads `read_only` from the store it opens; by default `Store.open`, which opens
a write-protected file, or one in an unwritable folder, read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.app import App

from studio.errors import StudioError
from studio.model import Stage, StageStatus
from studio.store import Store
from studio.tui import StudioApp, make_app
from studio.tui.screens.review import ReviewScreen
from studio.tui.settings import ReviewSettings
from tests.conftest import FixedClock
from tests.test_tui_support import (
    REVIEWER,
    SIZE,
    demo_db,
    open_record,
    query,
    settle,
    stage_row,
    studio_app,
)
from tests.waiting import pilot_wait_until as wait_until


def read_only_store(path: Path) -> Store:
    """A Store forced read-only (`mode=ro`): what `Store.open` gives for an unwritable file."""
    return Store(path, clock=FixedClock(), read_only=True)


def read_only_app(path: Path) -> StudioApp:
    settings = ReviewSettings(
        reviewer=REVIEWER, cursor_blink=False, refresh_interval=None, status_timeout=None
    )
    return make_app(
        path,
        reviewer=REVIEWER,
        clock=FixedClock(),
        settings=settings,
        open_store=lambda: read_only_store(path),
    )


async def test_a_read_only_database_is_read_and_never_written(tmp_path: Path) -> None:
    db = demo_db(tmp_path / "demo.db")
    events_before = query(db, "SELECT COUNT(*) FROM events")
    app = read_only_app(db)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_record(pilot)
        assert app.read_only
        assert app.sub_title.endswith("· read-only")
        screen = app.screen
        assert isinstance(screen, ReviewScreen) and screen.record_id == 3
        for action in ("accept", "accept_all", "reject", "reject_record", "edit", "undo"):
            assert not screen.check_action(action, ()), action
        await pilot.press("a", "A", "x", "X", "e", "u", "r")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)  # no dialog opened, no editor
        await pilot.press("n")  # reading goes on
        await settle(pilot)
        assert screen.record_id == 4
        said = [(n.severity, n.message) for n in app._notifications]
        assert [m for s, m in said if s == "error"] == []  # refused up front, not failed
        assert any("read-only" in m for _, m in said)
    assert query(db, "SELECT COUNT(*) FROM events") == events_before
    assert stage_row(db, 3, Stage.INTAKE_FORM).status is StageStatus.GENERATED


async def test_a_write_protected_file_opens_read_only_by_default(
    tmp_path: Path, protect: Callable[[Path], None]
) -> None:
    """No opener passed: the app's own default (`Store.open`) finds the file write-protected."""
    db = demo_db(tmp_path / "demo.db")
    events_before = query(db, "SELECT COUNT(*) FROM events")
    protect(db)
    app = studio_app(db)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_record(pilot)
        assert app.read_only and app.sub_title.endswith("· read-only")
        assert not app.screen.check_action("accept", ())
        await pilot.press("a", "x")
        await settle(pilot)
        assert [n.message for n in app._notifications if n.severity == "error"] == []
    assert query(db, "SELECT COUNT(*) FROM events") == events_before


async def test_a_writable_database_is_not_read_only(tmp_path: Path) -> None:
    app = studio_app(demo_db(tmp_path / "demo.db"))
    async with app.run_test(size=SIZE) as pilot:
        await open_record(pilot)
        assert not app.read_only and "read-only" not in app.sub_title
        assert app.screen.check_action("accept", ())


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, it is a shopping list\n" * 100,
        b"SQLite format 3\x00" + b"\x13" * 5000,  # a header, then corrupted pages
    ],
    ids=["text", "corrupted"],
)
async def test_an_unusable_database_exits_with_the_reason(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    app = studio_app(bad)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.failure is not None, "the app to give up")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert isinstance(app.failure, StudioError)
    assert str(app.failure).startswith(f"{bad}: not a usable CBT Studio database")
    assert app.return_code == 1
    assert bad.read_bytes() == content  # nothing was written over it


def test_studio_review_on_an_unusable_database_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.cli import cli

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database\n" * 100)

    def headless(self: StudioApp) -> None:
        App.run(self, headless=True, size=SIZE)

    monkeypatch.setattr(StudioApp, "run", headless)
    result = CliRunner().invoke(cli, ["review", "--db", str(bad), "--reviewer", REVIEWER])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "bad.db" in lines[-1]
    assert "Traceback" not in result.output
