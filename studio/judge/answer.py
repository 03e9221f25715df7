"""The judge's answer: the JSON schema it is asked for, and the strict reading of what comes back.

An answer is read, never repaired: a missing field, an extra one, a score outside 0-6, a turn or
plan step that the dialogue or plan does not have, all make it `failed` with the reason (the raw
text is kept beside it). The only leniency is a Markdown code fence around the object, which
servers without structured output like to add.
"""

from __future__ import annotations

import json
import re
from typing import Any

from studio.cbt.ctrs import CTRS_ITEMS, FIDELITY, FlagKind, valid_score
from studio.store.judging import ItemScore, SafetyFlag

_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.S)


class AnswerError(ValueError):
    """The answer is not a usable judgement; the message says what is wrong and where."""


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """Strict structured output wants every field required and nothing else allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _scored(**extra: Any) -> dict[str, Any]:
    # The explanation comes first so the model reasons before it commits to a number.
    return _object(
        {
            "explanation": {"type": "string"},
            "score": {"type": "integer", "description": "0 to 6; odd numbers between anchors"},
            **extra,
        }
    )


def judge_schema() -> dict[str, Any]:
    """The `json_schema` response format of one judge call."""
    flag = _object(
        {
            "kind": {"type": "string", "enum": [k.value for k in FlagKind]},
            "turn": {"type": "integer"},
            "quote": {"type": "string"},
            "counselor_response": {"type": "string"},
            "explanation": {"type": "string"},
        }
    )
    schema = _object(
        {
            "ctrs": _object({item: _scored() for item in CTRS_ITEMS}),
            "fidelity": _scored(plan_steps_covered={"type": "array", "items": {"type": "integer"}}),
            "safety_flags": {"type": "array", "items": flag},
        }
    )
    return {"name": "cbt_judgement", "strict": True, "schema": schema}


ParsedAnswer = tuple[dict[str, ItemScore], tuple[int, ...], tuple[SafetyFlag, ...]]


def parse_answer(text: str, *, turns: int, steps: int) -> ParsedAnswer:
    """Items, covered plan steps and safety flags, or `AnswerError`. `turns` and `steps` are the
    numbers of dialogue turns and plan steps the judge was shown (references must fall in them)."""
    top = _fields(_json(text), "the answer", ("ctrs", "fidelity", "safety_flags"))
    ctrs = _fields(top["ctrs"], "ctrs", CTRS_ITEMS)
    items = {item: _item(ctrs[item], f"ctrs.{item}") for item in CTRS_ITEMS}
    fidelity_score, covered, flags = _fidelity_and_flags(top, turns=turns, steps=steps)
    items[FIDELITY] = fidelity_score
    return items, covered, flags


# -- per-item mode: one call per CTRS item, one for fidelity and the safety flags ----------------


def item_schema(item: str) -> dict[str, Any]:
    """The `json_schema` response format of one CTRS item's call (per-item mode)."""
    return {"name": f"ctrs_{item}", "strict": True, "schema": _scored()}


def rest_schema() -> dict[str, Any]:
    """The `json_schema` of the per-item mode's last call: fidelity and the safety flags."""
    schema = judge_schema()["schema"]
    properties = {k: v for k, v in schema["properties"].items() if k != "ctrs"}
    return {"name": "cbt_fidelity_and_safety", "strict": True, "schema": _object(properties)}


def parse_item_answer(text: str, item: str) -> ItemScore:
    """One CTRS item's score and explanation, read as strictly as the whole answer."""
    return _item(_json(text), item)


def parse_rest_answer(
    text: str, *, turns: int, steps: int
) -> tuple[ItemScore, tuple[int, ...], tuple[SafetyFlag, ...]]:
    """Fidelity, covered plan steps and safety flags of the per-item mode's last call."""
    top = _fields(_json(text), "the answer", ("fidelity", "safety_flags"))
    return _fidelity_and_flags(top, turns=turns, steps=steps)


def _json(text: str) -> Any:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced[1].strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"not JSON ({exc.msg} at character {exc.pos})") from None


def _fidelity_and_flags(
    top: dict[str, Any], *, turns: int, steps: int
) -> tuple[ItemScore, tuple[int, ...], tuple[SafetyFlag, ...]]:
    fidelity = _fields(top["fidelity"], "fidelity", ("explanation", "score", "plan_steps_covered"))
    score = _item({"explanation": fidelity["explanation"], "score": fidelity["score"]}, "fidelity")
    covered = fidelity["plan_steps_covered"]
    if not isinstance(covered, list) or not all(_is_int(n) for n in covered):
        raise AnswerError("fidelity.plan_steps_covered is not a list of step numbers")
    bad_steps = [n for n in covered if not 1 <= n <= steps]
    if bad_steps:
        raise AnswerError(
            f"fidelity.plan_steps_covered names step {bad_steps[0]}, but the plan has {steps}"
        )
    flags_data = top["safety_flags"]
    if not isinstance(flags_data, list):
        raise AnswerError("safety_flags is not a list")
    flags = tuple(_flag(f, f"safety_flags[{n}]", turns) for n, f in enumerate(flags_data))
    return score, tuple(sorted(set(covered))), flags


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(value: object, where: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AnswerError(f"{where} is not an object")
    missing = [n for n in names if n not in value]
    if missing:
        raise AnswerError(f"{where} lacks {', '.join(missing)}")
    extra = sorted(set(value) - set(names))
    if extra:
        raise AnswerError(f"{where} has unexpected fields: {', '.join(extra)}")
    return value


def _item(value: object, where: str) -> ItemScore:
    fields = _fields(value, where, ("explanation", "score"))
    score, explanation = fields["score"], fields["explanation"]
    if not valid_score(score):
        raise AnswerError(f"{where}.score is {score!r}, not an integer from 0 to 6")
    if not isinstance(explanation, str) or not explanation.strip():
        raise AnswerError(f"{where}.explanation is empty")
    return ItemScore(score, explanation.strip())


def _flag(value: object, where: str, turns: int) -> SafetyFlag:
    fields = _fields(value, where, ("kind", "turn", "quote", "counselor_response", "explanation"))
    kind, turn = fields["kind"], fields["turn"]
    if kind not in {k.value for k in FlagKind}:
        raise AnswerError(f"{where}.kind is {kind!r}, not one of {', '.join(FlagKind)}")
    if not _is_int(turn) or not 1 <= turn <= turns:
        raise AnswerError(f"{where}.turn is {turn!r}, but the dialogue has {turns} turns")
    texts = [fields[k] for k in ("quote", "counselor_response", "explanation")]
    if not all(isinstance(t, str) for t in texts):
        raise AnswerError(f"{where} has a field that is not text")
    if not fields["quote"].strip():
        raise AnswerError(f"{where}.quote is empty")
    return SafetyFlag(kind, turn, *(t.strip() for t in texts))
