"""The clinician review studio: a Textual app over the store (queue, review, help, stats,
training).

The only package of CBT Studio that imports textual. Build the app with `make_app`.
"""

import os

# Textual paces screen updates at TEXTUAL_FPS (default 60), read once when textual is imported:
# a new record waited up to a whole 16.7 ms tick before it was drawn. At 120 the next-record p95
# on a 100k-record database drops from ~44 ms to ~23 ms (bench/tui.py); an idle app draws nothing,
# so this costs nothing at rest. A user's own TEXTUAL_FPS wins.
os.environ.setdefault("TEXTUAL_FPS", "120")

from studio.tui.app import StudioApp, make_app

__all__ = ["StudioApp", "make_app"]
