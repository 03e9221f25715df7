"""The clinician review studio: a Textual app over the store (queue, review, help, stats,
training).

The only package of CBT Studio that imports textual. Build the app with `make_app`. Importing this
package changes no process-wide state; `studio.tui.startup.configure_process` does, for the CLI.
The app is imported on first use, so `studio.tui.startup` can run before textual is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.tui.app import StudioApp, make_app

__all__ = ["StudioApp", "make_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from studio.tui import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
