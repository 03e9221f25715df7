"""How the review app behaves; tests pass their own (fast autosave, no cursor blink, no polling)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from studio.settings import parse_keymap as parse_keymap  # re-exported: its old home


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    reviewer: str
    """Who is reviewing: written on every decision and shown in the header."""
    page_size: int = 100
    """Queue rows read per page; the next page loads as the cursor nears the end."""
    draft_interval: float = 3.0
    """Seconds between autosaves of an edit in progress (also saved when focus leaves)."""
    refresh_interval: float | None = 10.0
    """Seconds between re-reads of the queue counts, to show other writers' progress (a running
    `studio synth`); None never polls."""
    theme: str = "textual-dark"
    """The Textual theme; fixed so that screenshots are reproducible."""
    status_timeout: float | None = 8.0
    """Seconds a review's status message ("✓ Accepted …") stays up; None keeps it until the next
    one or another record (tests, for stable screenshots)."""
    cursor_blink: bool = True
    """Blinking text cursors; tests turn it off for stable screenshots."""
    guidelines: Path | None = None
    """The review guidelines file (`[review] guidelines` in studio.toml); None: the shipped
    default. Read once at start; its version goes with every decision."""
    keymap: Mapping[str, str] = field(default_factory=dict)
    """Binding id -> keys, e.g. {"review.accept": "y"}; see the help screen for the ids."""
