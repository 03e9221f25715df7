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
    RecordStatus.DISPUTED: "warning",
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
    RecordStatus.DISPUTED: "≠",
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


#: The most characters of one text a panel lays out. A stage is a few kilobytes (the longest
#: CACTUS dialogue ~12 KB); a pasted or imported megabyte made Textual wrap all of it on every
#: resize (45 s, 735 MB at 40x12). The editor (e) still opens the whole text.
PREVIEW_CHARS = 30_000


def preview(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, int]:
    """The start of `text` that a panel shows (cut at a line break or a space near the limit),
    and how many characters are left out."""
    if len(text) <= limit:
        return text, 0
    cut = max(text.rfind("\n", limit - 2_000, limit), text.rfind(" ", limit - 200, limit))
    cut = cut if cut > 0 else limit
    return text[:cut], len(text) - cut


def left_out(count: int) -> str:
    return f"… {count:,} more characters not shown here: e opens the whole text"
