"""The Footer, redrawn only when the keys it shows change."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


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


class StudioFooter(Footer):
    """Why not the plain Footer: in textual 8.2.8 it recomposes on every bindings refresh (here:
    every focus move and every decision), and each recompose leaves the removed keys in the
    watcher list of `Footer.compact`. Over an hour of reviewing that is tens of thousands of dead
    widgets, and every full garbage collection walks them (a 100 ms stall on `n`)."""

    _shown: tuple[tuple[object, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        shown = shown_keys(screen)
        if shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)

    async def recompose(self) -> None:
        await super().recompose()
        # Drop the watchers of the keys just removed (textual prunes them only on a change).
        self.mutate_reactive(Footer.compact)
