"""The command palette (ctrl+p): every action of the current screen by name, and the filters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen

from studio.cbt.techniques import TECHNIQUES
from studio.model import RecordStatus
from studio.tui.formatting import status_label


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    run: Callable[[], Any]


class StudioCommands(Provider):
    """Built from the active bindings, so the palette offers exactly what the keys do (and
    hides what `check_action` hides), each with its key as help."""

    def commands(self) -> Iterator[Command]:
        screen, app = self.screen, self.app
        seen: set[tuple[int, str]] = set()
        for key, active in screen.active_bindings.items():
            binding, node = active.binding, active.node
            if not binding.description or not isinstance(node, Screen | App) or not active.enabled:
                continue
            if (id(node), binding.action) in seen:
                continue
            seen.add((id(node), binding.action))
            shown = binding.key_display or app.get_key_display(binding.with_key(key))
            details = f" — {binding.tooltip}" if binding.tooltip else ""
            yield Command(
                binding.description, f"key: {shown}{details}", self._action(node, binding.action)
            )
        from studio.tui.screens.queue import QueueScreen

        if isinstance(screen, QueueScreen):
            for status in (None, *RecordStatus):
                label = status_label(status) if status else "all"
                yield Command(
                    f"Filter by status: {label}",
                    "Show only records with this status",
                    partial(screen.set_status, status),
                )
            for technique in (None, *TECHNIQUES, ""):
                label = "all" if technique is None else (technique or "none")
                yield Command(
                    f"Filter by technique: {label}",
                    "Show only records with this technique",
                    partial(screen.set_technique, technique),
                )

    def _action(self, node: DOMNode, action: str) -> Callable[[], Any]:
        async def run() -> None:
            await self.app.run_action(action, node)

        return run

    async def discover(self) -> Hits:
        for command in self.commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)
