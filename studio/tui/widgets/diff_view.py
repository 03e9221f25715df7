"""The reviewer's edit against the LLM original, line by line (difflib)."""

from __future__ import annotations

import difflib

from rich.text import Text


def diff_lines(original: str, edited: str) -> list[str]:
    """A unified diff of the two texts, without the file headers."""
    lines = difflib.unified_diff(original.splitlines(), edited.splitlines(), lineterm="", n=3)
    return [line for line in lines if not line.startswith(("---", "+++"))]


def diff_text(
    original: str, edited: str, *, same: str = "The edited text is the same as the original."
) -> Text:
    """The diff coloured: removed lines red, added lines green, hunk headers dim; `same` when
    the texts do not differ."""
    lines = diff_lines(original, edited)
    if not lines:
        return Text(same, style="italic")
    text = Text()
    for line in lines:
        if line.startswith("@@"):
            style = "dim"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("+"):
            style = "green"
        else:
            style = ""
        text.append(line + "\n", style=style)
    text.rstrip()
    return text
