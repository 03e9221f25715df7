"""One stage of a record on the review screen: its text, its status and why it needs attention."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from studio.cbt.dialogue import Dialogue, DialogueError, check_dialogue, parse_dialogue
from studio.model import Stage, StageStatus
from studio.store import StageView
from studio.store.drafts import Draft
from studio.tui.formatting import PREVIEW_CHARS, STATUS_COLOR, left_out, preview, status_label
from studio.tui.widgets.dialogue_view import DialogueView

#: Why a stage needs attention when the store recorded no reason of its own.
DEFAULT_REASONS = {
    StageStatus.PENDING: "not generated yet",
    StageStatus.STALE: "an upstream stage changed after this one was generated",
    StageStatus.FAILED: "the backend gave no usable answer",
    StageStatus.INVALID: "the answer failed validation",
}


def preview_dialogue(dialogue: Dialogue, length: int) -> tuple[Dialogue, int]:
    """The first turns of a long dialogue, up to about PREVIEW_CHARS of text, and how many
    characters of its `length` are left out."""
    used = sum(len(line) + 1 for line in dialogue.preamble)
    turns = []
    for turn in dialogue.turns:
        if used >= PREVIEW_CHARS:
            break
        turns.append(turn)
        used += len(turn.text) + len(turn.note) + 12
    if len(turns) == len(dialogue.turns):
        return dialogue, 0
    return Dialogue(tuple(turns), dialogue.preamble), max(length - used, 0)


class StagePanel(Vertical, can_focus=True):
    """A focusable panel; `j` / `k` move between the four. Styled from review.tcss."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(id=f"stage-{stage.value}", classes="stage-panel")
        self.stage = stage
        self.view: StageView | None = None
        self._shown: tuple[StageView, Draft | None, bool, frozenset[int]] | None = None
        self.border_title = f"{stage.position} {stage.label}"

    def compose(self) -> ComposeResult:
        yield Static(id="reason", classes="reason")
        if self.stage is Stage.DIALOGUE:
            yield DialogueView(id="turns")
        yield Static(id="body", classes="body")
        yield Static(id="more", classes="more")

    def show(
        self,
        view: StageView,
        *,
        draft: Draft | None,
        regenerating: bool,
        flagged: frozenset[int] = frozenset(),
    ) -> None:
        """`flagged`: dialogue turns (from 1) that the judge flagged, highlighted."""
        shown = (view, draft, regenerating, flagged)
        if shown == self._shown:
            return  # a decision on another stage: nothing to redraw here (dialogues are long)
        self._shown = shown
        self.view = view
        for status in StageStatus:
            self.set_class(view.status is status, f"-{status.value}")
        self.set_class(regenerating, "-regenerating")
        color = STATUS_COLOR.get(view.status, "foreground")
        subtitle = Content.styled(status_label(view.status), f"bold ${color}")
        extras = []
        if view.edited_text is not None and view.status is not StageStatus.EDITED:
            extras.append("edited")
        if draft is not None:
            extras.append("✎ unsaved draft")
        if regenerating:
            extras.append("regenerating…")
        if extras:
            subtitle = Content.assemble(subtitle, " · ", " · ".join(extras))
        self.border_subtitle = subtitle
        text = view.text.strip()
        # The whole dialogue is checked; only its first PREVIEW_CHARS are laid out.
        dialogue = parse_dialogue(text) if self.stage is Stage.DIALOGUE and text else None
        reason = self._reason(view, dialogue)
        reason_widget = self.query_one("#reason", Static)
        reason_widget.display = bool(reason)
        reason_widget.update(Content(reason))
        shown_text, hidden = preview(text)
        if dialogue is not None and hidden:
            dialogue, hidden = preview_dialogue(dialogue, len(text))
        more = self.query_one("#more", Static)
        more.display = hidden > 0
        more.update(left_out(hidden) if hidden else "")
        self._show_body(view, shown_text, dialogue, flagged)

    def _reason(self, view: StageView, dialogue: Dialogue | None) -> str:
        if view.status in DEFAULT_REASONS:
            return f"{status_label(view.status).capitalize()}: {view.error or DEFAULT_REASONS[view.status]}"
        if view.status is StageStatus.REJECTED and view.note:
            return f"Rejected: {view.note}"
        if view.status is StageStatus.EDITED and view.note:
            return f"Note: {view.note}"
        if dialogue is not None:
            try:
                check_dialogue(dialogue)
            except DialogueError as exc:
                return f"Malformed dialogue: {exc}"
        return ""

    def _show_body(
        self,
        view: StageView,
        text: str,
        dialogue: Dialogue | None,
        flagged: frozenset[int] = frozenset(),
    ) -> None:
        body = self.query_one("#body", Static)
        if self.stage is Stage.DIALOGUE:
            turns = self.query_one(DialogueView)
            turns.display = bool(dialogue and dialogue.turns)
            body.display = not turns.display
            if dialogue and dialogue.turns:
                turns.show(dialogue, flagged)
                return
        if not text:
            body.update(Content.styled("(no text)", "italic"))
        elif self.stage is Stage.CBT_TECHNIQUE and view.status is not StageStatus.INVALID:
            body.update(Content.styled(text, "bold"))
        else:
            body.update(Content(text))
