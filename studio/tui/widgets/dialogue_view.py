"""A counseling dialogue drawn as a conversation: turn number, speaker, words (hanging indent).

Uses Textual's line API: the text is wrapped once per width into ready-made strips, so a
25-turn dialogue costs a few milliseconds to lay out instead of a Rich table's tens.
"""

from __future__ import annotations

import textwrap
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from studio.cbt.dialogue import Dialogue, Role

ROLE_WIDTH = max(len(role.label) for role in Role)


class DialogueView(Widget):
    DEFAULT_CSS = """
    DialogueView { height: auto; }
    DialogueView > .dialogue-view--counselor { color: $primary-lighten-2; text-style: bold; }
    DialogueView > .dialogue-view--client { color: $accent; text-style: bold; }
    DialogueView > .dialogue-view--turn { color: $text-muted; }
    DialogueView > .dialogue-view--narration { text-style: italic; }
    DialogueView > .dialogue-view--flagged { color: $text-error; background: $error-muted; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "dialogue-view--counselor",
        "dialogue-view--client",
        "dialogue-view--turn",
        "dialogue-view--narration",
        "dialogue-view--flagged",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.dialogue = Dialogue(())
        self.flagged: frozenset[int] = frozenset()
        """Turn numbers (from 1) that the judge flagged: highlighted."""
        self._lines: dict[int, list[Strip]] = {}
        """Wrapped lines for the current width only (a resize or a new dialogue starts over, so
        resizing through many widths never keeps a copy per width)."""

    def show(self, dialogue: Dialogue, flagged: frozenset[int] = frozenset()) -> None:
        self.dialogue = dialogue
        self.flagged = flagged
        self._lines.clear()
        self.refresh(layout=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # a new theme: new colours

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        lines = self.lines(width)
        # The base style is applied here, not cached: the panel's background follows its focus.
        base = self.rich_style
        return lines[y].apply_style(base) if y < len(lines) else Strip.blank(width, base)

    def lines(self, width: int) -> list[Strip]:
        if width not in self._lines:
            self._lines.clear()
            self._lines[width] = self._wrap(max(width, 1))
        return self._lines[width]

    def _wrap(self, width: int) -> list[Strip]:
        turns = self.dialogue.turns
        number_width = len(str(len(turns)))
        indent = number_width + 1 + ROLE_WIDTH + 1
        text_width = max(width - indent, 10)
        roles = {
            Role.COUNSELOR: self._foreground("dialogue-view--counselor"),
            Role.CLIENT: self._foreground("dialogue-view--client"),
        }
        number_style = self._foreground("dialogue-view--turn")
        narration = self._foreground("dialogue-view--narration")
        flag = self.get_component_rich_style("dialogue-view--flagged")
        flagged_style = Style(color=flag.color, bgcolor=flag.bgcolor)
        plain = Style()  # the widget's own colours are applied as each line is drawn
        lines: list[Strip] = []
        for line in self.dialogue.preamble:
            for part in textwrap.wrap(line, width) or [""]:
                strip = Strip([Segment(part, plain + narration)])
                lines.append(strip.adjust_cell_length(width, plain))
        for number, turn in enumerate(turns, start=1):
            words = f"({turn.note}) {turn.text}" if turn.note else turn.text
            wrapped = [
                part
                for paragraph in words.splitlines() or [""]
                for part in textwrap.wrap(paragraph, text_width) or [""]
            ]
            head = [
                Segment(str(number).rjust(number_width) + " ", plain + number_style),
                Segment(turn.role.label.ljust(ROLE_WIDTH) + " ", plain + roles[turn.role]),
            ]
            words_style = plain + flagged_style if number in self.flagged else plain
            for index, part in enumerate(wrapped):
                lead = head if index == 0 else [Segment(" " * indent, plain)]
                strip = Strip([*lead, Segment(part, words_style)])
                lines.append(strip.adjust_cell_length(width, plain))
        return lines

    def _foreground(self, component: str) -> Style:
        """A component's colour and emphasis, without its background (drawn per line)."""
        style = self.get_component_rich_style(component)
        return Style(color=style.color, bold=style.bold, italic=style.italic)
