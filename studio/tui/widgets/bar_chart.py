"""A horizontal bar chart in text: one labelled bar per key, scaled to the widest value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static


def bar_chart(values: Mapping[str, int], *, width: int = 40, style: str = "") -> RenderableType:
    if not values:
        return Text("nothing to show yet", style="italic")
    top = max(max(values.values()), 1)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for label, value in values.items():
        # Eighth blocks give the bars sub-cell resolution; a non-zero value always shows.
        eighths = round(value / top * width * 8)
        if value and not eighths:
            eighths = 1
        full, part = divmod(eighths, 8)
        bar = "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])
        table.add_row(label, Text(bar.ljust(width), style=style), str(value))
    return table


class BarChart(Static):
    """Re-drawn with `plot(values)`; the bar colour comes from the `bar-chart--bar` component."""

    DEFAULT_CSS = """
    BarChart { height: auto; }
    BarChart > .bar-chart--bar { color: $primary; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"bar-chart--bar"}

    def __init__(self, *, width: int = 40, id: str | None = None) -> None:
        super().__init__(id=id)
        self.bar_width = width

    def plot(self, values: Mapping[str, int]) -> None:
        style = self.get_component_rich_style("bar-chart--bar")
        self.update(bar_chart(values, width=self.bar_width, style=str(style)))
