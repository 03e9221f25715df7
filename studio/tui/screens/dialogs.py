"""Small modal dialogs: a reason, a yes/no question, a technique, a diff, unsaved drafts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from studio.cbt.techniques import TECHNIQUES
from studio.store.drafts import Draft
from studio.tui.formatting import one_line, short_time
from studio.tui.messages import DraftDiscarded
from studio.tui.widgets.diff_view import diff_text

CSS_PATH = Path(__file__).with_name("dialogs.tcss")


class ReasonScreen(ModalScreen[str | None]):
    """Asks for an optional reason; Enter confirms (the reason may be empty), escape cancels."""

    CSS_PATH = CSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def __init__(self, title: str, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            field = Input(placeholder="Reason (optional)", id="reason")
            field.cursor_blink = self.cursor_blink
            yield field
            yield Label("Enter confirms · escape cancels", classes="dialog-hint")

    @on(Input.Submitted)
    def confirm(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y` or Enter says yes, `n` or escape says no."""

    CSS_PATH = CSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            yield Label("y / Enter: yes · n / escape: no", classes="dialog-hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


@dataclass(frozen=True, slots=True)
class TechniqueChoice:
    technique: str | None
    """One of the twelve; "" for records without one; None for all (when filtering)."""


class TechniqueScreen(ModalScreen[TechniqueChoice | None]):
    """Pick one of the twelve techniques (to edit the stage, or to filter the queue)."""

    CSS_PATH = CSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def __init__(self, title: str, current: str | None, *, for_filter: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.current = current
        self.choices: list[str | None] = list(TECHNIQUES)
        if for_filter:
            self.choices = [None, *TECHNIQUES, ""]

    def compose(self) -> ComposeResult:
        options = [
            Option("All techniques" if t is None else (t or "No technique"), id=f"choice-{index}")
            for index, t in enumerate(self.choices)
        ]
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*options, id="techniques")
            yield Label("Enter chooses · escape cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.choices:
            options.highlighted = self.choices.index(self.current)

    @on(OptionList.OptionSelected)
    def choose(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(TechniqueChoice(self.choices[event.option_index]))

    def action_cancel(self) -> None:
        self.dismiss(None)


class DiffScreen(ModalScreen[None]):
    """The reviewer's edit against the LLM original."""

    CSS_PATH = CSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,d", "close", "Close", id="diff.close"),
    ]

    def __init__(self, title: str, original: str, edited: str) -> None:
        super().__init__()
        self.title_text = title
        self.original = original
        self.edited = edited

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(id="diff"):
                yield Static(diff_text(self.original, self.edited))
            yield Label("− LLM original · + your edit · escape closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


class DraftsScreen(ModalScreen[Draft | None]):
    """Unsaved edits from an earlier session, offered back at start-up."""

    CSS_PATH = CSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "later", "Later", id="drafts.later"),
        Binding("delete,x", "discard", "Discard draft", id="drafts.discard"),
    ]

    def __init__(self, drafts: list[Draft]) -> None:
        super().__init__()
        self.drafts = list(drafts)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(
                "Unsaved edits from your last session. Restore one?", classes="dialog-title"
            )
            yield OptionList(*(self._option(d) for d in self.drafts), id="drafts")
            yield Label(
                "Enter restores · x discards · escape keeps them for later", classes="dialog-hint"
            )

    @staticmethod
    def _option(draft: Draft) -> Option:
        return Option(
            f"Record {draft.record_id} · {draft.stage.label} · {short_time(draft.updated_at)}"
            f" · {one_line(draft.text, 40)}"
        )

    @on(OptionList.OptionSelected)
    def restore(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.drafts[event.option_index])

    def action_discard(self) -> None:
        options = self.query_one(OptionList)
        index = options.highlighted
        if index is None:
            return
        draft = self.drafts.pop(index)
        options.remove_option_at_index(index)
        self.app.post_message(DraftDiscarded(draft))
        if not self.drafts:
            self.dismiss(None)

    def action_later(self) -> None:
        self.dismiss(None)
