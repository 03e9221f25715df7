"""The review app and its factory. Screens own their keys; the app owns what outlives a screen:
the store lane, regeneration, the reviewer's drafts, and where the reviewer was in the queue."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker

from studio.model import Stage
from studio.store.review import Draft, QueueFilter, delete_draft, drafts
from studio.store.store import Clock
from studio.tui.commands import StudioCommands
from studio.tui.messages import DraftDiscarded, DraftsFound, RegenerateFinished
from studio.tui.regenerate import BackendFactory, Regenerator
from studio.tui.screens.base import report_worker_failure
from studio.tui.screens.dialogs import DraftsScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.screens.help import HelpScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.screens.stats import StatsScreen
from studio.tui.settings import ReviewSettings
from studio.tui.store_lane import StoreLane

if TYPE_CHECKING:
    from studio.synth import Backend, SynthSettings


class StudioApp(App[None]):
    TITLE = "CBT Studio"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {StudioCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f1,question_mark", "help", "Help", id="app.help", key_display="?", tooltip="All keys"
        ),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    def __init__(
        self,
        *,
        store_path: Path,
        settings: ReviewSettings,
        regenerator: Regenerator,
    ) -> None:
        super().__init__()
        self.store_path = store_path
        self.settings = settings
        self.lane = StoreLane(store_path, clock=regenerator.clock)
        self.regenerator = regenerator
        self.regenerating: set[tuple[int, Stage]] = set()
        """Stages with a regeneration in flight (their keys are hidden meanwhile)."""
        self.last_record_id: int | None = None
        """The record last reviewed: the queue puts its cursor there."""
        if settings.keymap:
            self.set_keymap(dict(settings.keymap))

    def on_mount(self) -> None:
        self.theme = self.settings.theme
        self.sub_title = f"reviewer: {self.settings.reviewer} · {self.store_path.name}"
        self.push_screen(QueueScreen())
        self.find_drafts()
        # A full garbage collection walks every object of textual, rich and the store (tens of
        # milliseconds on a 2-core box: a visible stall on `n`). What is alive once the first
        # screen is up (modules, widgets) stays for the session, so collections may skip it.
        self.call_after_refresh(gc.freeze)

    def on_unmount(self) -> None:
        gc.unfreeze()
        self.regenerator.close()
        self.lane.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)

    def on_app_blur(self, event: events.AppBlur) -> None:
        # The reviewer switched to another window: save the edit in progress now.
        for screen in self.screen_stack:
            if isinstance(screen, EditorScreen):
                screen.autosave()

    # -- screens ----------------------------------------------------------------------------

    def open_record(
        self, record_id: int, queue_filter: QueueFilter, *, resume_draft: Stage | None = None
    ) -> None:
        self.last_record_id = record_id
        self.push_screen(ReviewScreen(record_id, queue_filter, resume_draft=resume_draft))

    def open_stats(self) -> None:
        self.push_screen(StatsScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- drafts from an earlier session -----------------------------------------------------

    @work(group="drafts", exit_on_error=False, description="Look for unsaved drafts")
    async def find_drafts(self) -> None:
        reviewer = self.settings.reviewer
        found = await self.lane.run(lambda store: drafts(store, reviewer))
        if found:
            self.post_message(DraftsFound(found))

    def on_drafts_found(self, message: DraftsFound) -> None:
        def restore(draft: Draft | None) -> None:
            if draft is not None:
                self.open_record(draft.record_id, QueueFilter(), resume_draft=draft.stage)

        self.push_screen(DraftsScreen(message.drafts), restore)

    def on_draft_discarded(self, message: DraftDiscarded) -> None:
        draft = message.draft
        self.lane.submit(
            lambda store: delete_draft(
                store, draft.record_id, draft.stage, reviewer=self.settings.reviewer
            )
        )

    # -- regeneration -----------------------------------------------------------------------

    def regenerate(self, record_id: int, stage: Stage) -> None:
        if not self.regenerator.configured:
            self.notify(
                "No synthesis backend is configured, so r cannot regenerate. "
                "Set one up as for `studio synth` (see `studio synth --help`).",
                title="Regenerate",
                severity="warning",
            )
            return
        if (record_id, stage) in self.regenerating:
            return
        self.regenerating.add((record_id, stage))
        self.run_regeneration(record_id, stage)

    @work(group="regenerate", exit_on_error=False, description="Regenerate a stage")
    async def run_regeneration(self, record_id: int, stage: Stage) -> None:
        view = None
        try:
            future = self.regenerator.submit(record_id, stage, reviewer=self.settings.reviewer)
            # Shielded: the regeneration goes on if the reviewer leaves the record.
            view = await asyncio.shield(asyncio.wrap_future(future))
        finally:
            self.regenerating.discard((record_id, stage))
            finished = RegenerateFinished(record_id, stage, view)
            for screen in self.screen_stack:
                if isinstance(screen, ReviewScreen):
                    screen.post_message(finished)
        self.notify(
            f"Regenerated the {stage.label} of record {record_id}"
            + ("; the later stages are stale" if stage is not Stage.DIALOGUE else ""),
            title="Regenerate",
        )


def make_app(
    store_path: str | Path,
    *,
    reviewer: str,
    backend: Backend | None = None,
    backend_factory: BackendFactory | None = None,
    synth_settings: SynthSettings | None = None,
    clock: Clock | None = None,
    settings: ReviewSettings | None = None,
) -> StudioApp:
    """Build the review app over a database.

    `backend` is the synthesis backend for `r` (regenerate); `backend_factory` builds one on the
    first `r` instead (the LLM SDKs then load only when needed); with neither, `r` says that no
    backend is configured. `clock` stamps every decision (tests pass a fixed one).
    """
    settings = settings or ReviewSettings(reviewer=reviewer)
    if settings.reviewer != reviewer:
        raise ValueError("settings.reviewer and reviewer differ")
    regenerator = Regenerator(
        store_path,
        backend=backend,
        backend_factory=backend_factory,
        settings=synth_settings,
        clock=clock,
    )
    return StudioApp(store_path=Path(store_path), settings=settings, regenerator=regenerator)
