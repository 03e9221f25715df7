"""Editing one stage's text. The edit in progress is autosaved as a draft, so nothing is lost."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from functools import partial
from typing import ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea
from textual.worker import Worker

from studio.model import Stage
from studio.store.drafts import delete_draft, save_draft
from studio.store.review import judge_edit
from studio.tui.messages import DraftSaved
from studio.tui.screens.base import report_worker_failure
from studio.tui.screens.dialogs import ConfirmScreen
from studio.tui.settings import ReviewSettings
from studio.tui.store_lane import StoreLane

HINT = "ctrl+s saves as edited · escape discards · autosaved as a draft"
#: Past this many characters the editor stops soft-wrapping: TextArea re-wraps the whole text
#: on every resize and paste (a 1 MB pasted line: seconds each). Unwrapped, it lays out only
#: the lines on screen.
WRAP_LIMIT = 100_000


class StageTextArea(TextArea):
    """A TextArea that stops soft-wrapping before a huge paste lands, not after: wrapping a
    pasted 1 MB line took 4 s; unwrapped, the paste takes a fraction of that."""

    async def _on_paste(self, event: events.Paste) -> None:
        if self.soft_wrap and len(event.text) + len(self.text) > WRAP_LIMIT:
            self.soft_wrap = False
        await super()._on_paste(event)


class EditorScreen(ModalScreen[str | None]):
    """Dismissed with the new text (ctrl+s) or None (discarded, or nothing changed)."""

    CSS_PATH = "editor.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="editor.save", priority=True),
        Binding("escape", "discard", "Discard", id="editor.discard"),
    ]

    def __init__(
        self,
        *,
        record_id: int,
        stage: Stage,
        text: str,
        base_text: str,
        restored: bool,
        settings: ReviewSettings,
        lane: StoreLane,
    ) -> None:
        super().__init__()
        self.record_id = record_id
        self.stage = stage
        self.initial_text = text
        self.base_text = base_text
        self.restored = restored
        self.settings = settings
        self.lane = lane
        self._saved_text = text if restored else base_text
        """What the database holds for this edit (the draft, or the stage text if none)."""
        self.text = text
        """The text as it is in the editor now (kept here, so it can be saved while unmounting)."""
        self._finished = False

    def compose(self) -> ComposeResult:
        title = f"Edit {self.stage.label} · record {self.record_id}"
        if self.restored:
            title += " · restored from an unsaved draft"
        with Vertical(classes="editor"):
            yield Label(title, classes="editor-title")
            wrap = len(self.initial_text) <= WRAP_LIMIT
            area = StageTextArea(self.initial_text, soft_wrap=wrap, id="editor")
            area.cursor_blink = self.settings.cursor_blink
            yield area
            yield Label(id="editor-verdict", classes="editor-verdict")
            yield Label(HINT, id="editor-hint", classes="editor-hint")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()
        self.set_interval(self.settings.draft_interval, self.autosave)
        self.show_verdict()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        area = event.text_area
        self.text = area.text
        if area.soft_wrap and len(self.text) > WRAP_LIMIT:
            area.soft_wrap = False  # a huge paste: stop wrapping before the next resize
        self.show_verdict()

    def verdict_error(self) -> str:
        """Why the text breaks its stage's rule ("" when it passes): the rule an LLM answer and
        an import are held to (a few regexes: fast enough for every keystroke)."""
        return judge_edit(self.stage, self.text).error

    def show_verdict(self) -> None:
        error = self.verdict_error()
        label = self.query_one("#editor-verdict", Label)
        label.set_class(bool(error), "-invalid")
        label.update(f"✗ Invalid: {error}" if error else f"✓ A valid {self.stage.label.lower()}")

    def autosave(self) -> None:
        """Write the text as a draft if it changed since the last save."""
        if self._finished:
            return
        text = self.text
        if text == self._saved_text:
            return
        self._saved_text = text
        job = partial(
            save_draft,
            record_id=self.record_id,
            stage=self.stage,
            text=text,
            reviewer=self.settings.reviewer,
            base_text=self.base_text,
        )
        self.wait_for_draft(self.lane.submit(job))

    @work(group="drafts", exit_on_error=False, description="Autosave the draft")
    async def wait_for_draft(self, saved: Future[None]) -> None:
        # Shielded: leaving the editor must not cancel a save already under way.
        await asyncio.shield(asyncio.wrap_future(saved))
        self.post_message(DraftSaved(self.record_id, self.stage))

    def on_draft_saved(self, message: DraftSaved) -> None:
        self.query_one("#editor-hint", Label).update(f"{HINT} · draft saved")

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self.autosave()

    def on_unmount(self) -> None:
        # Quitting (or a crash of the UI) with the editor open keeps the work as a draft; the
        # store lane finishes queued jobs before the app closes the database.
        if not self._finished:
            self.autosave()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)

    def action_save(self) -> None:
        text = self.text
        if text == self.base_text:
            self.notify("No changes to save.", severity="information")
            self._discard()
            return
        error = self.verdict_error()
        if not error:
            self._save(text)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._save(text)

        # Saved anyway, the stage is `invalid` with this reason: never accepted, never trained on.
        question = (
            f"This text breaks the {self.stage.label.lower()} rule: {error}. Save it as invalid?"
        )
        self.app.push_screen(ConfirmScreen(question), answered)

    def _save(self, text: str) -> None:
        self._finished = True
        self.dismiss(text)

    def action_discard(self) -> None:
        if self.text == self.base_text:
            self._discard()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._discard()

        self.app.push_screen(ConfirmScreen("Discard your changes to this text?"), answered)

    def _discard(self) -> None:
        self._finished = True
        job = partial(
            delete_draft,
            record_id=self.record_id,
            stage=self.stage,
            reviewer=self.settings.reviewer,
        )
        self.lane.submit(job)
        self.dismiss(None)
