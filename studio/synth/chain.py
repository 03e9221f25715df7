"""The CACTUS chain, stage by stage: what each prompt is filled with, and how answers are judged.

Pure functions (no I/O): the engine renders with `stage_messages`, calls the backend, and turns the
answer into a stage status with `judge_answer`. An answer is never guessed into shape: a text that
fails its stage's check is `invalid` with the raw text and the reason. `judge_answer` lives in
`studio.cbt.checks` so that imports and reviewer edits (in the store, below this package) are held
to the same rule; it is re-exported here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.cbt.checks import CUT_AT_TOKEN_LIMIT as CUT_AT_TOKEN_LIMIT
from studio.cbt.checks import Judgement as Judgement  # the one rule, re-exported
from studio.cbt.checks import judge_answer as judge_answer
from studio.cbt.dialogue import Role, Turn, format_dialogue, parse_dialogue, strip_role_prefix
from studio.cbt.techniques import TECHNIQUES, normalize_technique
from studio.model import Seed, Stage
from studio.synth.templates import Messages, Template, load_template

#: Template file per stage in script mode; two-agent mode replaces the dialogue template.
STAGE_TEMPLATES = {
    Stage.INTAKE_FORM: "intake_form",
    Stage.CBT_TECHNIQUE: "cbt_technique",
    Stage.CBT_PLAN: "cbt_plan",
    Stage.DIALOGUE: "dialogue_script",
}
COUNSELOR_TEMPLATE = "counselor_agent"
CLIENT_TEMPLATE = "client_agent"
ATTITUDES = ("positive", "neutral", "negative")


def technique_schema() -> dict[str, Any]:
    """Structured output for the technique stage: the name must be one of the twelve."""
    return {
        "name": "cbt_technique",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "technique": {"type": "string", "enum": list(TECHNIQUES)},
                "rationale": {"type": "string"},
            },
            "required": ["technique", "rationale"],
            "additionalProperties": False,
        },
    }


#: Ranks asked for with `--balance` (the schema's fields, best first).
RANKS = ("first", "second", "third")
#: Added to the technique prompt with `--balance`: the model ranks, the run chooses.
RANKED_NOTE = (
    "Instead of a single technique, rank the three techniques from the list that fit this client"
    ' best. Return ONLY a JSON object with the fields "first", "second" and "third"'
    ' (three different names copied exactly from the list, best first) and "rationale" (one'
    " sentence)."
)


def ranked_technique_schema() -> dict[str, Any]:
    """Structured output for `--balance`: a ranked top three, each one of the twelve."""
    properties: dict[str, Any] = {
        rank: {"type": "string", "enum": list(TECHNIQUES)} for rank in RANKS
    }
    properties["rationale"] = {"type": "string"}
    return {
        "name": "cbt_technique_ranked",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        },
    }


def read_ranking(answer: str) -> tuple[str, ...] | None:
    """The ranked top three of an answer, best first; None unless it names three different
    techniques of the twelve (a name is matched the way a technique answer is)."""
    try:
        data = json.loads(answer.strip())
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    ranking = []
    for rank in RANKS:
        value = data.get(rank)
        name = normalize_technique(value) if isinstance(value, str) else None
        if name is None or name in ranking:
            return None
        ranking.append(name)
    return tuple(ranking)


@dataclass(frozen=True, slots=True)
class StageInputs:
    """Everything a stage's prompt may draw on: the seed and the current upstream texts."""

    seed: Seed
    texts: dict[Stage, str]
    attitude: str
    min_turns: int
    max_turns: int

    def values(self) -> dict[str, str]:
        return {
            "persona": self.seed.persona or "(not given)",
            "thought": self.seed.thought,
            "patterns": ", ".join(self.seed.patterns) or "(not given)",
            "reframes": "\n".join(f"- {r}" for r in self.seed.reframes) or "(not given)",
            "intake_form": self.texts.get(Stage.INTAKE_FORM, ""),
            "cbt_technique": self.texts.get(Stage.CBT_TECHNIQUE, ""),
            "cbt_plan": self.texts.get(Stage.CBT_PLAN, ""),
            "attitude": self.attitude,
            "techniques": "\n".join(f"- {t}" for t in TECHNIQUES),
            "min_turns": str(self.min_turns),
            "max_turns": str(self.max_turns),
            "intake_summary": intake_summary(self.texts.get(Stage.INTAKE_FORM, "")),
        }


def stage_template(stage: Stage, folder: Path | None = None) -> Template:
    return load_template(STAGE_TEMPLATES[stage], folder)


def stage_messages(template: Template, inputs: StageInputs, **extra: str) -> Messages:
    values = inputs.values() | extra
    return template.render({k: v for k, v in values.items() if k in template.placeholders})


def intake_summary(intake_form: str) -> str:
    """What the counselor agent knows up front, as a counselor would (and as CACTUS gives it):
    the basic information and the reason for counseling (sections 1 and 3 of the form)."""
    parts = re.split(r"^(?=[ \t]*\d\.\s)", intake_form, flags=re.MULTILINE)
    kept = [
        part.strip()
        for index, part in enumerate(parts)
        if part.strip() and (index == 0 or re.match(r"\s*[13]\.\s", part))
    ]
    return "\n\n".join(kept) if len(parts) > 1 else intake_form.strip()


# -- two-agent mode ---------------------------------------------------------------------------


#: The client agent ends the session with this marker (the CACTUS protocol).
CLIENT_END_MARKER = "[/END]"
#: Tries for one agent turn (the first, then nudged ones) before the dialogue stage fails.
AGENT_TURN_ATTEMPTS = 3
_END_MARKERS = re.compile(r"\[\s*/?\s*END\s*\]", re.IGNORECASE)


def clean_turn(answer: str) -> tuple[str, bool]:
    """An agent's turn without a role prefix the model may have added; and whether it ends the session."""
    text = strip_role_prefix(answer)
    ended = bool(_END_MARKERS.search(text))
    text = _END_MARKERS.sub("", text).strip()
    return " ".join(text.split()), ended


@dataclass(frozen=True, slots=True)
class TurnVerdict:
    """One agent answer judged as a turn: its text, whether it ends the session, why unusable."""

    text: str
    ended: bool = False
    error: str = ""


def judge_turn(role: Role, answer: str) -> TurnVerdict:
    """An agent's answer as a turn of `role`, or why it cannot be one: empty (`""`, `"[END]"`,
    `"Client:"` alone), or speaking for the other role."""
    other = Role.CLIENT if role is Role.COUNSELOR else Role.COUNSELOR
    spoken = parse_dialogue(answer.strip())
    if any(turn.role is other for turn in spoken.turns) or _inner_label(answer, other):
        return TurnVerdict("", error=f"the answer speaks for the {other.label}")
    if len(spoken.turns) > 1 or _inner_label(answer, role):
        return TurnVerdict("", error=f"the answer holds more than one {role.label} turn")
    text, ended = clean_turn(answer)
    if (spoken.turns and spoken.preamble) or _inner_label(text, role) or _inner_label(text, other):
        # "Sure.\nClient: Fine." would read as two turns once its lines are joined.
        return TurnVerdict("", error="the answer mixes narration with a role label")
    if not text:
        return TurnVerdict("", error=f"an empty {role.label} turn ({answer.strip()[:30]!r})")
    return TurnVerdict(text, ended)


def _inner_label(answer: str, role: Role) -> bool:
    """A role label after a finished sentence, inside the answer (a second turn on one line)."""
    label = r"counsell?or|therapist" if role is Role.COUNSELOR else "client"
    return bool(re.search(rf"(?<=[.!?…\"”])[ \t]+\**(?:{label})\**[ \t]*:", answer, re.IGNORECASE))


def nudge(role: Role, error: str) -> str:
    """What an agent is told after an unusable answer (the prompt changes, so no cache answers)."""
    return (
        f"Your previous answer could not be used: {error}. Write the {role.label.lower()}'s next"
        f" turn now: one to four sentences spoken as the {role.label.lower()} only, with no role"
        " label and no lines for anyone else."
    )


CLOSING_NOTE = (
    "This is the last turn of the session: close it now. Briefly summarise what you worked on"
    " and the agreed next step, and thank the client."
)


def client_name(intake_form: str) -> str:
    """The client's first name from the intake form's `Name:` line ("" if none)."""
    match = re.search(r"^\s*Name\s*:\s*(\S+)", intake_form, flags=re.MULTILINE | re.IGNORECASE)
    return match[1].strip(",.") if match else ""


def opening_exchange(inputs: StageInputs) -> list[Turn]:
    """The fixed first exchange every two-agent session starts from (as in CACTUS): the
    counselor's greeting and the client's thought in their own words."""
    name = client_name(inputs.texts.get(Stage.INTAKE_FORM, ""))
    greeting = f"Hello{' ' + name if name else ''}, thank you for coming in today."
    thought = inputs.seed.thought.strip()
    return [
        Turn(Role.COUNSELOR, f"{greeting} What would you like to talk about?"),
        Turn(Role.CLIENT, f"Hi. There is a thought I keep having: {thought}"),
    ]


def history_text(turns: list[Turn]) -> str:
    return format_dialogue(turns) if turns else "(The session has not started yet.)"
