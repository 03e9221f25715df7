"""Process-wide tuning for the review app, in one place: `configure_process`.

These settings belong to a process, not to an app object, so they are set only by whoever owns
the process: the CLI (`studio review`) and the benchmarks call `configure_process` before
textual is imported. Importing `studio.tui` changes nothing, so a test or a script that builds the
app in its own process keeps its own frame rate, switch interval and garbage collector.

This module must not import textual (the frame rate is read when textual is imported).
"""

from __future__ import annotations

import gc
import os
import sys

TEXTUAL_FPS = "120"
"""Textual paces screen updates at TEXTUAL_FPS (default 60), read once when textual is imported:
a new record waited up to a whole 16.7 ms tick before it was drawn. At 120 the next-record p95 on a
100k-record database drops from ~44 ms to ~23 ms (bench/tui.py); an idle app draws nothing, so
this costs nothing at rest. A user's own TEXTUAL_FPS wins."""

SWITCH_INTERVAL_S = 0.0005
"""The store thread needs the GIL back after every SQLite call; with the default 5 ms switch
interval a key press's write queues behind the frame being rendered, again and again
(bench/tui.py: key → persisted p95 42 ms → 7 ms with 0.5 ms)."""

_configured = False


def configure_process() -> None:
    """Tune this process for the review app; call it once, before textual is imported.

    1. `TEXTUAL_FPS` (unless the user set it), see `TEXTUAL_FPS`.
    2. The interpreter's thread switch interval, see `SWITCH_INTERVAL_S`.
    3. Garbage collection: the app calls `freeze_startup_objects` once its first screen is up.
    """
    global _configured
    os.environ.setdefault("TEXTUAL_FPS", TEXTUAL_FPS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _configured = True


def freeze_startup_objects() -> None:
    """Once the first screen is up: `gc.freeze()`, if `configure_process` ran in this process.

    A full garbage collection walks every object of textual, rich and the store (tens of
    milliseconds on a 2-core box: a visible stall on `n`). What is alive once the first screen is
    up (modules, widgets) stays for the session, so collections may skip it. Only a process that
    asked for it: frozen objects are never collected, which a test session must not inherit.
    """
    if _configured:
        gc.freeze()
