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
    text = "\n" + text
    matches = list(_TURN_START.finditer(text))
    end = matches[0].start() if matches else len(text)
    preamble = tuple(line.strip() for line in text[:end].splitlines() if line.strip())
    turns = []
    for index, match in enumerate(matches):
        stop = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : stop].strip()
        if "\n" in body:
            body = "\n".join(line.strip() for line in body.splitlines() if line.strip())
        turns.append(Turn(_ROLE_NAMES[match[1].lower()], body, (match[2] or "").strip()))
    return Dialogue(tuple(turns), preamble)


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
