"""Counseling dialogues as text (`Counselor: …` / `Client: …` lines) and as turns.

The CACTUS release and LLM output write turns in several ways — `Client (sighs): …`,
`Counselor:no space`, `**Counselor:**`, wrapped lines — and all of them are real data.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Role(StrEnum):
    COUNSELOR = "counselor"
    CLIENT = "client"

    @property
    def label(self) -> str:
        return self.value.capitalize()


_ROLE_NAMES = {
    "counselor": Role.COUNSELOR,
    "counsellor": Role.COUNSELOR,
    "therapist": Role.COUNSELOR,
    "client": Role.CLIENT,
}

# A turn starts at the beginning of a line with a role, an optional stage direction and a colon.
# A turn starts at the beginning of a line with a role, an optional stage direction and a colon.
# The pattern begins with a literal newline (the text is scanned with one prepended) so that the
# regex engine can jump from line to line instead of trying every character.
_TURN_START = re.compile(
    r"\n[ \t]*[*_]{0,2}(counsell?or|therapist|client)[*_]{0,2}[ \t]*"
    r"(?:\(([^)\n]*)\))?[ \t]*[*_]{0,2}[ \t]*:[*_]{0,2}[ \t]*",
    re.IGNORECASE,
)


class Turn(NamedTuple):
    role: Role
    text: str
    note: str = ""
    """A stage direction written beside the role, e.g. "sighs" in `Client (sighs): …`."""


@dataclass(frozen=True, slots=True)
class Dialogue:
    turns: tuple[Turn, ...]
    preamble: tuple[str, ...] = ()
    """Non-empty lines before the first turn (narration the model added)."""


class DialogueError(ValueError):
    """A dialogue failed a structural check; the message says which turn and why."""


def parse_dialogue(text: str) -> Dialogue:
    """Split dialogue text into turns; lines without a role prefix continue the previous turn.

    One multi-line regex scan finds where turns start (fast on the 31k dialogues of a CACTUS import).
    """
    preamble, roles, notes, bodies = _split(text)
    turns = tuple(
        Turn(role, turn_text(body), (note or "").strip())
        for role, note, body in zip(roles, notes, bodies, strict=True)
    )
    return Dialogue(turns, tuple(line.strip() for line in preamble.splitlines() if line.strip()))


def turn_outline(text: str) -> tuple[list[Role], list[str | None], list[str]]:
    """The turns `parse_dialogue` finds, without building them: each one's role, its stage
    direction (None if it has none) and its text as written (not yet `turn_text`)."""
    _, roles, notes, bodies = _split(text)
    return roles, notes, bodies


def turn_text(body: str) -> str:
    """A turn's text as `parse_dialogue` keeps it: stripped, blank lines dropped."""
    body = body.strip()
    if "\n" in body:
        body = "\n".join(line.strip() for line in body.splitlines() if line.strip())
    return body


def _split(text: str) -> tuple[str, list[Role], list[str | None], list[str]]:
    """The text before the first turn, and each turn's role, stage direction and raw text."""
    parts = _TURN_START.split("\n" + text)
    roles = [_ROLE_NAMES[label.lower()] for label in parts[1::3]]
    return parts[0], roles, parts[2::3], parts[3::3]


def strip_role_prefix(text: str) -> str:
    """`Counselor: Hi` → `Hi` (an agent that was asked for its turn alone sometimes adds its role)."""
    match = _TURN_START.match("\n" + text.lstrip())
    return text.lstrip()[match.end() - 1 :].strip() if match else text.strip()


def check_dialogue(dialogue: Dialogue, *, min_turns: int = 2) -> None:
    """Raise `DialogueError` unless the dialogue starts with the counselor and roles alternate."""
    turns = dialogue.turns
    if not turns:
        raise DialogueError("no 'Counselor:' or 'Client:' turns found")
    if turns[0].role is not Role.COUNSELOR:
        raise DialogueError("the dialogue must start with the Counselor (turn 1 is the Client)")
    for number, (before, after) in enumerate(itertools.pairwise(turns), start=2):
        if before.role is after.role:
            raise DialogueError(
                f"roles do not alternate: turns {number - 1} and {number} are both {after.role.label}"
            )
    for number, turn in enumerate(turns, start=1):
        if not turn.text:
            raise DialogueError(f"turn {number} ({turn.role.label}) is empty")
    if len(turns) < min_turns:
        raise DialogueError(f"only {len(turns)} turns; at least {min_turns} are required")


def format_dialogue(turns: Iterable[Turn]) -> str:
    """Render turns back to the `Role: text` line format (stage directions kept)."""
    lines = []
    for turn in turns:
        prefix = f"{turn.role.label} ({turn.note})" if turn.note else turn.role.label
        lines.append(f"{prefix}: {turn.text}")
    return "\n".join(lines)
