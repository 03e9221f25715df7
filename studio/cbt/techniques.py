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


# Where each technique is named in free text (spelling variants and short forms included).
_MENTION = {
    "Efficiency Evaluation": r"efficiency\W+evaluation",
    "Pie Chart Technique": r"pie\W*charts?",
    "Alternative Perspective": r"alternative\W+perspectives?",
    "Decatastrophizing": r"de\W?catastrophi[sz](?:ing|e|ation)",
    "Pros and Cons Analysis": r"pros\W+(?:and|&)\W+cons",
    "Evidence-Based Questioning": r"evidence\W*based\W+question(?:ing|s)?",
    "Reality Testing": r"reality\W+test(?:ing)?",
    "Continuum Technique": r"continuum",
    "Changing Rules to Wishes": r"chang(?:ing|e)\W+(?:the\W+)?rules\W+(?:to|into)\W+wishes",
    "Behavior Experiment": r"behaviou?r(?:al)?\W+experiments?",
    "Problem-Solving Skills Training": r"problem\W*solving",
    "Systematic Exposure": r"systematic\W+exposure",
}
_MENTIONS = [(name, re.compile(rf"\b{pattern}\b", re.I)) for name, pattern in _MENTION.items()]
# A mention is negated when its clause says so before it ("I would not use X", "rather than X").
_NEGATION = re.compile(
    r"\b(?:not|never|no|nor|n't|rather\s+than|instead\s+of|avoid(?:ing)?|without|"
    r"unlike|except|over|than)\b|n't\b",
    re.I,
)
_CLAUSE_START = re.compile(r"[.;!?\n]|\bbut\b|\bhowever\b", re.I)


def named_techniques(text: str) -> list[str]:
    """The techniques a free text names, in list order; negated mentions do not count."""
    named = set()
    for name, pattern in _MENTIONS:
        for match in pattern.finditer(text):
            before = text[: match.start()]
            clauses = list(_CLAUSE_START.finditer(before))
            clause = before[clauses[-1].end() :] if clauses else before
            if not _NEGATION.search(clause):
                named.add(name)
                break
    return [name for name in TECHNIQUES if name in named]


def judge_technique(answer: str) -> tuple[str | None, str]:
    """The one technique an answer names, or None and why not (none, or several, named)."""
    text = answer.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            value = obj.get("technique")
            if not isinstance(value, str):
                return None, "names none of the 12 CBT techniques"
            text = value.strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "names none of the 12 CBT techniques"
    # The name is usually the first line; "Technique: X" or "**X**" are common wrappers.
    first = _LABEL.sub("", lines[0].strip().strip("*_`#>\"' ").strip())
    first = first.strip("*_`\"' .")
    exact = _BY_KEY.get(_key(first))
    if exact:
        return exact, ""
    # Otherwise the answer must name exactly one technique (negated mentions aside).
    named = named_techniques(text)
    if not named:
        return None, "names none of the 12 CBT techniques"
    if len(named) > 1:
        return None, f"several techniques: {', '.join(named)}"
    return named[0], ""


def normalize_technique(answer: str) -> str | None:
    """Map an answer to one of the twelve technique names, or `None` if it names none or several."""
    return judge_technique(answer)[0]
