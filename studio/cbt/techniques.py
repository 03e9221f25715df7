"""The twelve CBT techniques of the CACTUS recipe, and a strict normalizer for LLM answers.

The normalizer accepts the many ways a model writes a name (case, punctuation, markdown,
"CBT technique: …", a JSON object) but never guesses: an answer that names none of the twelve,
or more than one, gives `None`, and the caller marks the stage invalid with the raw text kept.
"""

from __future__ import annotations

import json
import re

TECHNIQUES: tuple[str, ...] = (
    "Efficiency Evaluation",
    "Pie Chart Technique",
    "Alternative Perspective",
    "Decatastrophizing",
    "Pros and Cons Analysis",
    "Evidence-Based Questioning",
    "Reality Testing",
    "Continuum Technique",
    "Changing Rules to Wishes",
    "Behavior Experiment",
    "Problem-Solving Skills Training",
    "Systematic Exposure",
)

# Spelling variants seen in model output that still name exactly one technique.
_SPELLING = (
    ("behaviour", "behavior"),
    ("behavioral", "behavior"),
    ("catastrophising", "catastrophizing"),
    ("rulesinto", "rulesto"),
    ("prosandconsanalysis", "prosandconsanalysis"),
)
_ALIASES = {
    "piechart": "Pie Chart Technique",
    "continuum": "Continuum Technique",
    "prosandcons": "Pros and Cons Analysis",
    "problemsolving": "Problem-Solving Skills Training",
    "problemsolvingskills": "Problem-Solving Skills Training",
    "evidencebasedquestions": "Evidence-Based Questioning",
    "behaviorexperiments": "Behavior Experiment",
}


def _key(text: str) -> str:
    key = re.sub(r"[^a-z]", "", text.lower())
    for variant, canonical in _SPELLING:
        key = key.replace(variant, canonical)
    return key


_BY_KEY = {_key(name): name for name in TECHNIQUES}
_BY_KEY.update(_ALIASES)
_LABEL = re.compile(
    r"^\s*(?:the\s+)?(?:selected\s+|chosen\s+)?(?:cbt\s+)?technique\s*[:\-–]\s*", re.I
)


def normalize_technique(answer: str) -> str | None:
    """Map an LLM answer to one of the twelve technique names, or `None` if it names none or several."""
    text = answer.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("technique"), str):
            text = obj["technique"]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    # The name is usually the first line; "Technique: X" or "**X**" are common wrappers.
    first = _LABEL.sub("", lines[0].strip().strip("*_`#>\"' ").strip())
    first = first.strip("*_`\"' .")
    exact = _BY_KEY.get(_key(first))
    if exact:
        return exact
    # Otherwise accept the answer only if exactly one technique is named anywhere in it.
    whole = _key(text)
    named = {name for key, name in _BY_KEY.items() if key in whole}
    return named.pop() if len(named) == 1 else None
