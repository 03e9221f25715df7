"""Process-wide state (frame rate, switch interval, frozen garbage) is set by one start-up
function that the CLI calls, never by importing or building the app."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_tui_support import demo_db

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_and_running_the_app_leaves_the_process_alone(tmp_path: Path) -> None:
    db = demo_db(tmp_path / "demo.db")
    out = _python(
        f"""
        import asyncio, gc, os, sys
        interval = sys.getswitchinterval()
        import studio.tui
        from tests.test_tui_support import SIZE, settle, studio_app

        async def main():
            app = studio_app({str(db)!r})
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                print(os.environ.get("TEXTUAL_FPS"), sys.getswitchinterval() == interval,
                      gc.get_freeze_count())

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert out == "None True 0"


def test_configure_process_tunes_it_before_textual_reads_it(tmp_path: Path) -> None:
    out = _python(
        """
        import sys
        from studio.tui.startup import configure_process
        assert "textual" not in sys.modules  # the start-up module may run before textual
        configure_process()
        from textual import constants
        from studio.tui import make_app
        print(constants.MAX_FPS, sys.getswitchinterval())
        """,
        tmp_path,
    )
    assert out == "120 0.0005"


def test_the_review_command_configures_the_process(tmp_path: Path) -> None:
    out = _python(
        f"""
        import sys
        from pathlib import Path
        from studio.commands import review

        class Stop(Exception):
            pass

        def make_app(*args, **kwargs):
            raise Stop
        import studio.tui
        studio.tui.make_app = make_app  # stop before the screen is taken over
        try:
            review.open_review(Path({str(demo_db(tmp_path / "demo.db"))!r}), reviewer="me")
        except Stop:
            pass
        from textual import constants
        print(constants.MAX_FPS, sys.getswitchinterval())
        """,
        tmp_path,
    )
    assert out == "120 0.0005"
