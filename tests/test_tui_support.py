"""Shared set-up for the review-app tests (`test_tui_*.py`); holds no tests itself.

Everything is deterministic: a clock that ticks one second per reading, no cursor blink, a fixed
theme and terminal size, no background polling.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, TypeVar

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, TextArea
from textual.worker import WorkerState

from studio.demo import build_demo
from studio.model import Stage
from studio.store import StageView, Store
from studio.tui import StudioApp, make_app
from studio.tui.settings import ReviewSettings
from tests.chat_server import LoopbackServer
from tests.conftest import FixedClock

ScreenT = TypeVar("ScreenT", bound=Screen[Any])

REVIEWER = "dr_lee"
SIZE = (120, 36)
#: Demo records 1 and 2 arrive accepted; 3 to 8 await review.
FIRST_TO_REVIEW = 3


def demo_db(path: Path) -> Path:
    with Store(path, clock=FixedClock()) as store:
        build_demo(store)
    return path


def loopback_app(path: Path, server: LoopbackServer, model: str = "test-model") -> StudioApp:
    """`studio_app` whose regenerate and judge go to a loopback server through the real SDK."""
    from pydantic import SecretStr

    from studio.model import BackendName
    from studio.synth import SynthSettings, make_backend

    synth = SynthSettings(
        backend=BackendName.OPENAI,
        model=model,
        base_url=server.openai_base_url,
        api_key=SecretStr("test-key"),
        max_attempts=2,
        timeout_s=60.0,
    ).validate()
    return studio_app(path, backend=make_backend(synth), synth_settings=synth)


def studio_app(path: Path, **settings: Any) -> StudioApp:
    values: dict[str, Any] = {
        "reviewer": REVIEWER,
        "cursor_blink": False,
        "refresh_interval": None,
        "draft_interval": 60.0,
        "status_timeout": None,
    }
    backend = settings.pop("backend", None)
    synth_settings = settings.pop("synth_settings", None)
    return make_app(
        path,
        reviewer=REVIEWER,
        backend=backend,
        synth_settings=synth_settings,
        clock=FixedClock(),
        settings=ReviewSettings(**(values | settings)),
    )


async def settle(pilot: Pilot[Any]) -> None:
    """Let every worker finish and every message they posted be handled."""
    app = pilot.app
    for _ in range(10):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
            return


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Put text into the focused Input or TextArea at once (key by key is slow under Pilot)."""
    focused = pilot.app.focused
    if isinstance(focused, Input):
        focused.insert_text_at_cursor(text)
    elif isinstance(focused, TextArea):
        focused.insert(text)
    else:
        raise AssertionError(f"no text field has focus ({focused!r})")
    await pilot.pause()


async def open_record(pilot: Pilot[Any], record_id: int = FIRST_TO_REVIEW) -> None:
    """From the queue, put the cursor on `record_id` and press Enter."""
    await settle(pilot)
    await pilot.press("home")
    for _ in range(record_id - 1):
        await pilot.press("down")
    await pilot.press("enter")
    await settle(pilot)


def stage_row(path: Path, record_id: int, stage: Stage) -> StageView:
    with Store(path) as store:
        return store.stage(record_id, stage)


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def open_screen(pilot: Pilot[Any], key: str, kind: type[ScreenT]) -> ScreenT:
    """From the queue, press `key` and let the screen it opens (a `kind`) load."""
    await settle(pilot)
    await pilot.press(key)
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    return screen


def plain_text(renderable: Any) -> str:
    """What a rich renderable (a Static's content) reads as, without styles, 200 columns wide."""
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()
