"""The key map, read from the screens' own bindings (so a remapped key shows as remapped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Header, Static

from studio.tui.screens.base import StudioScreen
from studio.tui.widgets.footer import StudioFooter

INTRO = (
    "CBT Studio: accept, edit or reject each stage of a synthesized counseling record. "
    "Every decision is saved at once and can be undone with u. Edits are autosaved as drafts. "
    "F2 shows the review guidelines, whose version is recorded with every decision. "
    "t opens the Training pane: a LoRA adapter trained on the accepted records, followed live. "
    "ctrl+p opens the command palette, which offers every action by name. "
    "Keys can be remapped by id with STUDIO_KEYMAP, e.g. STUDIO_KEYMAP='review.accept=y'."
)


def _key_display(binding: Binding, keymap: Mapping[str, str]) -> str:
    # Every key of the binding, not its short `key_display` (the footer's "?" hides F1).
    keys = keymap.get(binding.id or "", binding.key)
    names = {"question_mark": "?", "slash": "/", "escape": "esc", "f1": "F1", "f2": "F2"}
    return " / ".join(names.get(k.strip(), k.strip()) for k in keys.split(","))


def keys_table(title: str, bindings: Iterable[BindingType], keymap: Mapping[str, str]) -> Table:
    table = Table(title=title, title_justify="left", expand=True, show_header=True)
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("action")
    table.add_column("id", style="dim", no_wrap=True)
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        what = binding.description
        if binding.tooltip:
            what += f" — {binding.tooltip}"
        table.add_row(_key_display(binding, keymap), what, binding.id or "")
    return table


class HelpScreen(StudioScreen):
    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,escape,f1,question_mark", "back", "Close help", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        from studio.tui.screens.adjudication import AdjudicationScreen
        from studio.tui.screens.editor import EditorScreen
        from studio.tui.screens.queue import QueueScreen
        from studio.tui.screens.review import ReviewScreen
        from studio.tui.screens.stats import StatsScreen
        from studio.tui.screens.training import TrainingScreen

        keymap = self.studio.settings.keymap
        yield Header()
        with VerticalScroll(id="help"):
            yield Static(INTRO, id="intro")
            sections = (
                ("Review a record", ReviewScreen.BINDINGS),
                ("Queue", QueueScreen.BINDINGS),
                ("Editing a text", EditorScreen.BINDINGS),
                ("Adjudicating disputes (D in the queue)", AdjudicationScreen.BINDINGS),
                ("Statistics", StatsScreen.BINDINGS),
                ("Training", TrainingScreen.BINDINGS),
                ("Everywhere", [*type(self.app).BINDINGS, self._palette_binding()]),
            )
            for title, bindings in sections:
                yield Static(keys_table(title, bindings, keymap), classes="keys")
        yield StudioFooter()

    def _palette_binding(self) -> Binding:
        """Textual's own key for the command palette, listed with ours."""
        return Binding(
            self.app.COMMAND_PALETTE_BINDING,
            "command_palette",
            "Command palette",
            tooltip="Every action of the screen by name, and the queue filters",
        )

    def action_back(self) -> None:
        self.dismiss(None)
