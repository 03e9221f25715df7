"""How statuses, times and long texts look on screen (shared by the queue and review screens)."""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content

from studio.model import RecordStatus, StageStatus

#: The theme colour (a Textual CSS variable) of each status, so every theme colours them alike.
STATUS_COLOR: Mapping[str, str] = {
    RecordStatus.PENDING: "foreground-muted",
    RecordStatus.IN_REVIEW: "primary",
    RecordStatus.ACCEPTED: "success",
    RecordStatus.REJECTED: "error",
    StageStatus.GENERATED: "primary",
    StageStatus.EDITED: "success",
    StageStatus.STALE: "warning",
    StageStatus.FAILED: "error",
    StageStatus.INVALID: "warning",
}
STATUS_GLYPH: Mapping[str, str] = {
    RecordStatus.PENDING: "○",
    RecordStatus.IN_REVIEW: "●",
    RecordStatus.ACCEPTED: "✓",
    RecordStatus.REJECTED: "✗",
    StageStatus.GENERATED: "●",
    StageStatus.EDITED: "✎",
    StageStatus.STALE: "↻",
    StageStatus.FAILED: "!",
    StageStatus.INVALID: "⚠",
}


def status_label(status: str) -> str:
    return status.replace("_", " ")


def status_content(status: str, *, glyph: bool = True) -> Content:
    """A status in its theme colour, e.g. `✓ accepted` in $success."""
    label = status_label(status)
    if glyph:
        label = f"{STATUS_GLYPH.get(status, '·')} {label}"
    return Content.styled(label, f"${STATUS_COLOR.get(status, 'foreground')}")


def short_time(iso: str) -> str:
    """`2026-01-05T09:00:01.000+00:00` -> `2026-01-05 09:00` (the queue has no room for more)."""
    return iso[:16].replace("T", " ")


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"
