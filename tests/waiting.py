"""Waiting on a condition, never on a fixed time: one place for every test that waits.

The timeout only stops a hung test; it is generous because a busy 2-core machine can be many
times slower than an idle one. The poll interval is how often the condition is looked at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

#: How long a test may wait for something before it is called hung.
HANG_S = 300.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = HANG_S) -> None:
    """Poll `condition` (from a test's own thread) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


async def pilot_wait_until(
    pilot: Pilot[Any], condition: Callable[[], object], what: str, timeout: float = HANG_S
) -> None:
    """Let the app run until `condition` holds (for Pilot tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        await pilot.pause(0.02)
