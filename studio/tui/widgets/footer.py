"""The Footer, redrawn only when the keys it shows change, showing the keys that matter most when
the terminal is too narrow for all of them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: Cells around a key's text: compact `a Accept` + a margin; wide ` a Accept `.
COMPACT_EXTRA, WIDE_EXTRA = 2, 3
#: Cells the command palette key takes at the right (its text plus border and padding).
PALETTE_EXTRA = 4


def shown_keys(screen: Screen[Any]) -> tuple[tuple[object, ...], ...]:
    """What the Footer draws for a screen: each shown key with its label and state."""
    return tuple(
        (
            key,
            active.binding.description,
            active.binding.key_display,
            active.enabled,
            active.tooltip,
        )
        for key, active in screen.active_bindings.items()
        if active.binding.show
    )


def fit_keys(widths: list[tuple[str, int]], priority: Iterable[str], room: int) -> set[int]:
    """The positions of the keys to show in `room` cells: the binding ids in `priority` first (in
    that order), then the others left to right, while they fit. `widths` is (id, cells) per key."""
    rank = {binding_id: index for index, binding_id in enumerate(priority)}
    order = sorted(range(len(widths)), key=lambda i: (rank.get(widths[i][0], len(rank)), i))
    kept: set[int] = set()
    used = 0
    for index in order:
        cells = widths[index][1]
        if used + cells <= room:
            kept.add(index)
            used += cells
    return kept


class StudioFooter(Footer):
    """Why not the plain Footer: in textual 8.2.8 it recomposes on every bindings refresh (here:
    every focus move and every decision), and each recompose leaves the removed keys in the
    watcher list of `Footer.compact`. Over an hour of reviewing that is tens of thousands of dead
    widgets, and every full garbage collection walks them (a 100 ms stall on `n`).

    And at 80 columns the plain Footer cuts off whatever comes last (Help among it). Here a screen
    lists its most used binding ids in `FOOTER_PRIORITY`; when not every key fits, those stay
    and the others give way (every key is still in help, F1, and the palette, ctrl+p)."""

    _shown: tuple[tuple[object, ...], ...] | None = None
    _width = 0

    def bindings_changed(self, screen: Screen[Any]) -> None:
        shown = shown_keys(screen)
        if shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        self._width = self.app.size.width
        keys = [
            w for w in widgets if isinstance(w, FooterKey) and not w.has_class("-command-palette")
        ]
        room = self._width - sum(
            cell_len(w.key_display) + cell_len(w.description) + PALETTE_EXTRA
            for w in widgets
            if isinstance(w, FooterKey) and w.has_class("-command-palette")
        )
        extra = COMPACT_EXTRA if self.compact else WIDE_EXTRA
        active = self.screen.active_bindings
        widths = [
            (
                active[key.key].binding.id or "" if key.key in active else "",
                cell_len(key.key_display) + cell_len(key.description) + extra,
            )
            for key in keys
        ]
        priority: Iterable[str] = getattr(self.screen, "FOOTER_PRIORITY", ())
        kept = {id(keys[i]) for i in fit_keys(widths, priority, room)}
        dropped: list[Widget] = [key for key in keys if id(key) not in kept]
        yield from (w for w in widgets if w not in dropped)

    def on_resize(self, event: events.Resize) -> None:
        if self._width and event.size.width != self._width:
            self.refresh(recompose=True)

    async def recompose(self) -> None:
        await super().recompose()
        # Drop the watchers of the keys just removed (textual prunes them only on a change).
        self.mutate_reactive(Footer.compact)
