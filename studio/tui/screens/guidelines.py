"""The review guidelines, readable from any screen (F2), with the version each decision records."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Header, MarkdownViewer, Static

from studio.tui.screens.base import StudioScreen
from studio.tui.widgets.footer import StudioFooter


class GuidelinesScreen(StudioScreen):
    CSS_PATH = "guidelines.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f2", "back", "Close", id="guidelines.close"),
    ]

    def compose(self) -> ComposeResult:
        guidelines = self.studio.guidelines
        yield Header()
        yield Static(
            f"Guidelines version {guidelines.version} · {guidelines.path}",
            id="guidelines-version",
            markup=False,
        )
        yield MarkdownViewer(guidelines.text, show_table_of_contents=False, id="guidelines")
        yield StudioFooter()

    def action_back(self) -> None:
        self.dismiss(None)
