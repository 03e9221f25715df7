"""The seed a record was synthesized from: persona, thought, patterns and reframes."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from studio.model import Seed


def seed_content(seed: Seed) -> Content:
    parts: list[Content] = []

    def section(title: str, lines: list[str], *, bullet: bool = False) -> None:
        parts.append(Content.styled(title, "bold"))
        if not lines:
            parts.append(Content.styled("—", "dim"))
        parts.extend(Content(f"• {line}" if bullet else line) for line in lines)
        parts.append(Content(""))

    section("Thought", [seed.thought])
    section("Persona", [seed.persona] if seed.persona else [])
    section("Patterns", list(seed.patterns), bullet=True)
    section("Reframes", list(seed.reframes), bullet=True)
    if seed.source:
        parts.append(Content.styled(f"source: {seed.source}", "dim"))
    return Content("\n").join(parts)


class SeedPanel(Static):
    """Shown beside the stages; styled from review.tcss."""

    seed: Seed | None = None

    def show(self, seed: Seed) -> None:
        if seed != self.seed:
            self.seed = seed
            self.update(seed_content(seed))
