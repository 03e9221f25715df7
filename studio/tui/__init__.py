"""The clinician review studio: a Textual app over the store (queue, review, help, stats,
training).

The only package of CBT Studio that imports textual. Build the app with `make_app`.
"""

from studio.tui.app import StudioApp, make_app

__all__ = ["StudioApp", "make_app"]
