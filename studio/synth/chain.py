"""The CACTUS chain, stage by stage: what each prompt is filled with, and how answers are judged.

Pure functions (no I/O): the engine renders with `stage_messages`, calls the backend, and turns the
answer into a stage status with `judge_answer`. An answer is never guessed into shape: a technique
that names none of the twelve, or a dialogue that fails a check, is `invalid` with the raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.cbt.dialogue import (
    DialogueError,
    Role,
    Turn,
    check_dialogue,
    format_dialogue,
    parse_dialogue,
    strip_role_prefix,
)
from studio.cbt.techniques import TECHNIQUES, normalize_technique
from studio.model import Seed, Stage, StageStatus
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
END_MARKER = "[END]"
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
    """What the counselor agent knows up front: the intake form's first three sections."""
    match = re.search(r"^\s*4\.\s", intake_form, flags=re.MULTILINE)
    return (intake_form[: match.start()] if match else intake_form).strip()


@dataclass(frozen=True, slots=True)
class Judgement:
    status: StageStatus
    text: str
    error: str = ""


def judge_answer(stage: Stage, answer: str, *, min_turns: int) -> Judgement:
    """Turn an LLM answer into the stage's text and status."""
    text = answer.strip()
    if not text:
        return Judgement(StageStatus.INVALID, answer, "the model returned an empty answer")
    if stage is Stage.CBT_TECHNIQUE:
        name = normalize_technique(text)
        if name is None:
            return Judgement(
                StageStatus.INVALID, text, "the answer names none of the 12 CBT techniques"
            )
        return Judgement(StageStatus.GENERATED, name)
    if stage is Stage.DIALOGUE:
        dialogue = parse_dialogue(text)
        try:
            check_dialogue(dialogue, min_turns=min_turns)
        except DialogueError as exc:
            return Judgement(StageStatus.INVALID, text, str(exc))
        return Judgement(StageStatus.GENERATED, format_dialogue(dialogue.turns))
    return Judgement(StageStatus.GENERATED, text)


# -- two-agent mode ---------------------------------------------------------------------------


def clean_turn(answer: str) -> tuple[str, bool]:
    """An agent's turn without a role prefix the model may have added; and whether it ends the session."""
    text = strip_role_prefix(answer)
    ended = END_MARKER in text
    text = text.replace(END_MARKER, "").strip()
    return " ".join(text.split()), ended


def history_text(turns: list[Turn]) -> str:
    return format_dialogue(turns) if turns else "(The session has not started yet.)"


def next_role(turns: list[Turn]) -> Role:
    return Role.COUNSELOR if not turns or turns[-1].role is Role.CLIENT else Role.CLIENT
