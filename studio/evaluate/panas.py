"""PANAS: twenty feelings rated 1-5, ten positive and ten negative (Watson, Clark & Tellegen 1988).

CACTUS rated them from the intake form (before the session) and from the transcript (after it);
the change of each affect sum says whether the session helped the client feel better.
"""

from __future__ import annotations

import json
import re
from typing import Any

from studio.synth.templates import Messages, Template

PANAS_TEMPLATE = "panas"
POSITIVE = (
    "interested",
    "excited",
    "strong",
    "enthusiastic",
    "proud",
    "alert",
    "inspired",
    "determined",
    "attentive",
    "active",
)
NEGATIVE = (
    "distressed",
    "upset",
    "guilty",
    "scared",
    "hostile",
    "irritable",
    "ashamed",
    "nervous",
    "jittery",
    "afraid",
)
FEELINGS = POSITIVE + NEGATIVE
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.S)


class PanasError(ValueError):
    """The answer is not twenty ratings 1-5; the message says what is wrong."""


def panas_schema() -> dict[str, Any]:
    rating = {"type": "integer", "minimum": 1, "maximum": 5}
    schema = {
        "type": "object",
        "properties": dict.fromkeys(FEELINGS, rating),
        "required": list(FEELINGS),
        "additionalProperties": False,
    }
    return {"name": "panas", "strict": True, "schema": schema}


def panas_messages(template: Template, *, moment: str, attitude: str, material: str) -> Messages:
    """`moment`: `before` (the material is the intake form) or `after` (the transcript)."""
    when = (
        "before the counseling session, from their intake form"
        if moment == "before"
        else "at the end of the counseling session, from its transcript"
    )
    return template.render(
        {
            "moment": when,
            "attitude": attitude,
            "material": material,
            "feelings": ", ".join(FEELINGS),
        }
    )


def parse_panas(text: str) -> dict[str, int]:
    """The twenty ratings, or `PanasError` (read strictly, a code fence aside)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced[1].strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PanasError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise PanasError("the answer is not an object")
    ratings = {str(k).strip().lower(): v for k, v in data.items()}
    missing = [f for f in FEELINGS if f not in ratings]
    if missing:
        raise PanasError(f"no rating for {', '.join(missing)}")
    for feeling in FEELINGS:
        value = ratings[feeling]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise PanasError(f"{feeling}: {value!r} is not an integer from 1 to 5")
    return {feeling: int(ratings[feeling]) for feeling in FEELINGS}


def affect(ratings: dict[str, int]) -> tuple[int, int]:
    """Positive and negative affect: the sums of the ten ratings of each (10-50)."""
    return sum(ratings[f] for f in POSITIVE), sum(ratings[f] for f in NEGATIVE)
