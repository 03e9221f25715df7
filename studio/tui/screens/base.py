"""What every screen of the app shares: typed access to the app, and worker failures reported once."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from studio.errors import UndoConflict
from studio.store import EditConflict
from studio.tui.regenerate import NoBackend

if TYPE_CHECKING:
    from studio.tui.app import StudioApp


def report_worker_failure(node: DOMNode, event: Worker.StateChanged) -> None:
    """The one place a failed worker becomes a message to the reviewer."""
    if event.state is not WorkerState.ERROR or getattr(node.app, "failure", None) is not None:
        return  # nothing failed, or the app is exiting with the reason (an unusable database)
    error = event.worker.error
    # Never markup: an error's text is not ours (a path, a model's words, `[train]`).
    notify = partial(node.app.notify, markup=False)
    if isinstance(error, UndoConflict):
        notify(f"Can't undo: {error}", title="Undo", severity="warning")
    elif isinstance(error, EditConflict):
        notify(f"Not saved: {error}.", title="Edit", severity="warning", timeout=10)
    elif isinstance(error, NoBackend):
        notify(str(error), title="Regenerate", severity="warning")
    else:
        what = event.worker.description or event.worker.name or "A background job"
        notify(f"{what} failed: {error}", title="Error", severity="error", timeout=10)


class StudioScreen(Screen[None]):
    @property
    def studio(self) -> StudioApp:
        return cast("StudioApp", self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)
