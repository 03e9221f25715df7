"""The one rule for each stage's text, wherever the text came from: an LLM answer, an imported
CACTUS row or a reviewer's edit.

`judge_answer` turns a text into a `Judgement`: the status the stage gets (`generated` or
`invalid`), the text to keep and, when the check failed, the reason. A text is never guessed into
shape; the only repairs are the ones a reader could not disagree with (markdown leftovers and
narration after the session are stripped, a second role label inside a line starts a new turn),
and every repair is recorded in `Judgement.note`. `studio.synth.chain` re-exports this function,
so the engine, the importer and the review store all call the same code. `stage_error` is its
verdict alone, for the importer, which keeps the imported text and needs no cleaned copy.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from studio.cbt.dialogue import (
    Dialogue,
    DialogueError,
    Role,
    Turn,
    check_dialogue,
    format_dialogue,
    parse_dialogue,
    turn_outline,
    turn_text,
)
from studio.cbt.techniques import judge_technique
from studio.model import Stage, StageStatus

#: The fewest turns a dialogue may have where no length was asked for (imports, reviewer edits):
#: one exchange and the closing turn. Synthesis passes its own `min_turns` / `max_turns`, the
#: length it asked the model for.
DEFAULT_MIN_TURNS = 3
#: The reason given for an empty (or blank) text.
EMPTY = "the text is empty"
#: The reason given for every stage whose answer stopped at the token limit.
CUT_AT_TOKEN_LIMIT = "cut off at the token limit"
#: The six headings the intake-form template asks for, each with the words that identify it.
#: CACTUS writes some without their number or in lower case, so the match is on the words.
INTAKE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("Basic Information", r"basic\s+information|name\s*:"),
    ("Presenting Problem", r"presenting\s+problem"),
    ("Reason for Seeking Counseling", r"reason\s+for\s+(?:seeking\s+)?counsell?ing"),
    ("Past History", r"past\s+history"),
    ("Academic/Occupational Functioning Level", r"academic\s*/\s*occupational"),
    ("Social Support System", r"social\s+support"),
)
MIN_PLAN_STEPS = 3
# How much of a text's start (or end) is looked at for its first (or last) line.
_PEEK = 512

# A refusal or a chatty preamble in the first line of an answer ("Here is the intake form:").
_REFUSAL = re.compile(
    r"^\W*(?:i'?m\s+sorry|i\s+am\s+sorry|sorry,|i\s+(?:cannot|can'?t|won'?t|am\s+unable|"
    r"'m\s+unable)|unfortunately|as\s+an?\s+(?:ai|language\s+model|assistant)|"
    r"here\s+(?:is|are)\b|here'?s\b|sure[,!.]|certainly[,!.]|of\s+course[,!.]|okay[,!.]|"
    r"below\s+is\b)",
    re.IGNORECASE,
)
# Words and marks that cannot end a finished sentence: a text that stops on one was cut off.
_DANGLING_MARKS = frozenset(",;:-–—(")
_DANGLING_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "as",
        "that",
        "which",
        "who",
        "how",
        "what",
        "your",
        "my",
        "his",
        "her",
        "their",
        "our",
        "its",
        "is",
        "are",
        "was",
        "were",
        "be",
        "will",
        "would",
        "can",
        "could",
        "should",
        "if",
        "because",
        "so",
        "than",
        "then",
        "this",
        "these",
        "those",
        "about",
        "into",
        "we",
        "you",
        "i",
        "they",
        "he",
        "she",
    ]
)
_SENTENCE_END = re.compile(r"""[.!?…)"'”’\]*]\s*$""")
_PLAN_STEP = re.compile(r"^\s*(?:step\s*)?(\d{1,2})\s*[.):]\s*\S", re.IGNORECASE | re.MULTILINE)
# Narration or markdown a model adds after the session: a rule line and everything after it, a
# note in asterisks or brackets, a "Note:" line.
_RULE_LINE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")
_RULE_LINE_ANYWHERE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_TURN_LINE = re.compile(r"^[ \t]*[*_]{0,2}(?:counsell?or|therapist|client)\b", re.IGNORECASE)
_NARRATION = re.compile(
    r"^\s*(?:[*_(\[]+\s*)?(?:note|notes|end\s+of\s+(?:the\s+)?(?:session|dialogue|transcript)|"
    r"\[?/?end\]?|this\s+(?:dialogue|session|transcript)\b|the\s+session\s+ends)\b.*$"
    r"|^\s*[*_]+[^*_]*[*_]+\s*$|^\s*\([^)]*\)\s*$|^\s*\[[^\]]*\]\s*$",
    re.IGNORECASE,
)
_MARKDOWN_LEFTOVER = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)
# A role label in the middle of a line, after a finished sentence: a second turn on the line.
_INNER_LABEL = re.compile(
    r"(?<=[.!?…\"”])[ \t]+(?:\*\*)?(Counsell?or|Therapist|Client)(?:\*\*)?[ \t]*(?:\([^)\n]*\))?"
    r"[ \t]*:[ \t]+"
)
# `_INNER_LABEL` without the look-behind, to find one fast (most dialogues have none).
_INNER_LABEL_HINT = re.compile(
    r"[.!?…\"”][ \t]+(?:\*\*)?(?:Counsell?or|Therapist|Client)(?:\*\*)?[ \t]*(?:\([^)\n]*\))?"
    r"[ \t]*:[ \t]+"
)
# How a counselor closes a session: a thank-you, a goodbye, the next session, homework, a summary.
_CLOSING = re.compile(
    r"\b(?:thank|thanks|see\s+you|next\s+(?:session|time|week|meeting|appointment)|take\s+care|"
    r"goodbye|bye|until\s+(?:next|then)|homework|this\s+week|between\s+(?:now|sessions)|"
    r"wrap(?:\s+things)?\s+up|stop\s+(?:here|there|for\s+today)|for\s+today|end\s+(?:here|"
    r"our\s+session|the\s+session)|summar|look(?:ing)?\s+forward|today\s+(?:we|you)|"
    r"keep\s+(?:a|the|track)|practi[cs]e|try\s+(?:this|it|that)|next\s+step)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Judgement:
    status: StageStatus
    text: str
    """The text to keep: the normalized text when valid, the raw text when not."""
    error: str = ""
    """Why the text is `invalid` (empty when it is valid)."""
    note: str = ""
    """What was cleaned from a valid text (markdown, narration after the session), if anything."""

    @property
    def ok(self) -> bool:
        return self.status is StageStatus.GENERATED


def judge_answer(
    stage: Stage,
    answer: str,
    *,
    min_turns: int = DEFAULT_MIN_TURNS,
    max_turns: int | None = None,
    finish_reason: str | None = None,
) -> Judgement:
    """The one rule: turn a stage's text into its status, its text and the reason."""
    text = answer.strip()
    if finish_reason == "length":
        return Judgement(StageStatus.INVALID, answer, CUT_AT_TOKEN_LIMIT)
    if not text:
        return Judgement(StageStatus.INVALID, answer, EMPTY)
    if stage is Stage.CBT_TECHNIQUE:
        name, error = judge_technique(text)
        if name is None:
            return Judgement(StageStatus.INVALID, text, error)
        return Judgement(StageStatus.GENERATED, name)
    if stage is Stage.DIALOGUE:
        return _judge_dialogue(text, min_turns=min_turns, max_turns=max_turns)
    error = _text_error(stage, text)
    if error:
        return Judgement(StageStatus.INVALID, text, error)
    return Judgement(StageStatus.GENERATED, text)


def stage_error(
    stage: Stage, answer: str, *, min_turns: int = DEFAULT_MIN_TURNS, max_turns: int | None = None
) -> str:
    """`judge_answer`'s verdict alone: why the text is invalid, or "" when it passes.

    The same checks, without building the text to keep: an import stores the imported text as it
    is, so it needs no cleaned copy, no turn objects and no re-formatted dialogue. A dialogue
    that needs no cleaning is checked on its turn boundaries alone (`_plain_session_passes`);
    any other dialogue, and every one that fails, goes through `judge_answer`'s own path, so the
    reasons are its reasons (`tests/test_checks.py` compares both paths).
    """
    text = answer.strip()
    if not text:
        return EMPTY
    if stage is Stage.CBT_TECHNIQUE:
        return judge_technique(text)[1]
    if stage is Stage.DIALOGUE:
        if _plain_session_passes(text, min_turns=min_turns, max_turns=max_turns):
            return ""
        return _checked_dialogue(text, min_turns=min_turns, max_turns=max_turns)[2]
    return _text_error(stage, text)


def _text_error(stage: Stage, text: str) -> str:
    """The rule for the intake form and the plan (`text` stripped, not empty)."""
    error = _refusal(text)
    if not error and stage is Stage.INTAKE_FORM:
        error = _intake_error(text)
    if not error and stage is Stage.CBT_PLAN:
        error = _plan_error(text)
    if not error:
        error = _cut_off(text)
    return error


def _first_line(text: str) -> str:
    """The first non-blank line, stripped. Lines are looked for in the text's start first: an
    import judges 31k forms and plans, and splitting each whole text took longer than the checks."""
    head = text[:_PEEK].splitlines()
    # Every line but the last one of the head ends inside it, so it is a whole line of the text.
    for line in head[:-1]:
        if line.strip():
            return line.strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _refusal(text: str) -> str:
    first = _first_line(text)
    if _REFUSAL.match(first):
        return f"a refusal or a preamble, not the text itself: {_quote(first)}"
    return ""


# One pattern for the six headings, a group each. No two of them can match the same line (their
# first words differ), so one match per line finds every heading the line could be.
_SECTIONS = re.compile("|".join(f"({words})" for _, words in INTAKE_SECTIONS))


def _intake_error(text: str) -> str:
    # Headings are matched at the start of a line (after a number, `#` or `*`); looking at each
    # line's start is ~10x faster than six multi-line scans over 31k imported forms.
    found = {
        match.lastindex
        for line in text.splitlines()
        if (match := _SECTIONS.match(line.lstrip(" \t0123456789.#*").lower()))
    }
    missing = [name for n, (name, _) in enumerate(INTAKE_SECTIONS, 1) if n not in found]
    if missing:
        return f"missing sections: {', '.join(missing)}"
    return ""


def _plan_error(text: str) -> str:
    steps = _PLAN_STEP.findall(text)
    if len(steps) < MIN_PLAN_STEPS:
        return f"the plan has {len(steps)} numbered steps; at least {MIN_PLAN_STEPS} are required"
    return ""


def _cut_off(text: str) -> str:
    last = _last_line(text.rstrip()).strip()
    words = last.rsplit(None, 1)
    if last[-1] in _DANGLING_MARKS or (words and words[-1].lower() in _DANGLING_WORDS):
        return f"the text stops mid-sentence: {_quote(last, tail=True)}"
    return ""


def _last_line(text: str) -> str:
    """`text.splitlines()[-1]`, looked for in the text's end first (see `_first_line`)."""
    tail = text[-_PEEK:].splitlines()
    # With a line break inside the tail, its last line is whole: a line break cut in two
    # (`\r` | `\n`) leaves an empty line before it, never a shorter last line.
    return tail[-1] if len(tail) > 1 else text.splitlines()[-1]


def _quote(text: str, *, tail: bool = False, width: int = 50) -> str:
    if len(text) <= width:
        return f"“{text}”"
    return f"“…{text[-width:]}”" if tail else f"“{text[:width]}…”"


# -- dialogues --------------------------------------------------------------------------------


def clean_dialogue(text: str) -> tuple[Dialogue, list[str]]:
    """Parse a dialogue and strip what a session transcript never holds; say what was stripped.

    Each repair is looked for in the whole text first and done only where found: a CACTUS import
    judges 31k dialogues, nearly all of them clean.
    """
    cleaned: list[str] = []
    ruled, inner, narrated = _cleaning_needed(text)
    if not ruled and not inner and not narrated:
        # The common case (nearly every imported dialogue): nothing to cut or split.
        return _without_markdown(parse_dialogue(text), text, cleaned)
    lines = text.splitlines()
    if ruled:
        first_turn = next((i for i, line in enumerate(lines) if _TURN_LINE.match(line)), len(lines))
        rule = next(
            (i for i, line in enumerate(lines) if i > first_turn and _RULE_LINE.match(line)),
            None,
        )
        if rule is not None:
            lines = lines[:rule]
            cleaned.append("text after a '---' line")
    while lines and (not lines[-1].strip() or _NARRATION.match(lines[-1])):
        if lines[-1].strip():
            cleaned.append(f"narration after the session ({_quote(lines[-1].strip())})")
        lines.pop()
    body = "\n".join(lines)
    if inner:
        split_lines = []
        for line in lines:
            parts = _INNER_LABEL.split(line)
            split_lines.append(parts[0])
            split_lines += [f"{parts[i]}: {parts[i + 1]}" for i in range(1, len(parts), 2)]
        cleaned.append("a second role label inside a turn (split into turns)")
        body = "\n".join(split_lines)
    return _without_markdown(parse_dialogue(body), body, cleaned)


def _cleaning_needed(text: str, notes: list[str | None] | None = None) -> tuple[bool, bool, bool]:
    """Whether `clean_dialogue` has a rule line to cut at, a second role label inside a line to
    split, or narration after the last turn to strip. `notes`, the turns' stage directions, if
    known, spare the search for a label inside a line in most dialogues."""
    # A one-character search first (memchr): most dialogues hold none of these characters.
    ruled = (
        ("-" in text and "---" in text)
        or ("*" in text and "***" in text)
        or ("_" in text and "___" in text)
    ) and bool(_RULE_LINE_ANYWHERE.search(text))
    inner = not (notes is not None and _colons_all_in_turn_labels(text, notes)) and bool(
        _INNER_LABEL_HINT.search(text)
    )
    narrated = bool(_NARRATION.match(text.rstrip().rsplit("\n", 1)[-1]))
    return ruled, inner, narrated


def _colons_all_in_turn_labels(text: str, notes: list[str | None]) -> bool:
    """True when `text` certainly has no role label inside a line (`_INNER_LABEL_HINT`), found
    by counting instead of a 15 µs search: every colon of the text is one of the turns' own
    (`Client (sighs):`, one per turn, plus any inside a stage direction) and no stage direction
    holds a role word. A label inside a line is a role word and a colon on the line after a
    sentence; before a turn's own colon, the only words on its line are its label, which follows
    the line's start and not a sentence, and the words of its stage direction."""
    own = len(notes) + sum(note.count(":") for note in notes if note)
    if text.count(":") != own:
        return False
    return not any(note and _ROLE_WORD.search(note) for note in notes)


_ROLE_WORD = re.compile("Counsel|Therapist|Client")


def _has_markdown(text: str) -> bool:
    return ("*" in text and "**" in text) or ("_" in text and "__" in text) or "#" in text


def _without_markdown(
    dialogue: Dialogue, body: str, cleaned: list[str]
) -> tuple[Dialogue, list[str]]:
    if dialogue.preamble:
        cleaned.append(f"narration before the session ({_quote(dialogue.preamble[0])})")
    turns = dialogue.turns
    if _has_markdown(body):
        stripped = tuple(
            Turn(turn.role, _MARKDOWN_LEFTOVER.sub("", turn.text).strip(), turn.note)
            for turn in turns
        )
        if stripped != turns:
            cleaned.append("markdown leftovers ('**')")
        turns = stripped
    return Dialogue(turns), cleaned


def check_session(dialogue: Dialogue, *, min_turns: int, max_turns: int | None = None) -> None:
    """`check_dialogue` plus what makes a transcript a whole session: the turn limit, a last turn
    by the Counselor that closes the session and is not cut mid-sentence."""
    check_dialogue(dialogue, min_turns=min_turns)
    turns = dialogue.turns
    if max_turns is not None and len(turns) > max_turns:
        raise DialogueError(f"{len(turns)} turns; at most {max_turns} are allowed")
    last = turns[-1]
    if last.role is not Role.COUNSELOR:
        raise DialogueError(
            f"the dialogue must end on a Counselor turn that closes the session (turn {len(turns)}"
            " is the Client)"
        )
    if not _SENTENCE_END.search(last.text):
        raise DialogueError(f"the last turn stops mid-sentence: {_quote(last.text, tail=True)}")
    if not _CLOSING.search(last.text):
        raise DialogueError(
            f"the last Counselor turn does not close the session: {_quote(last.text, tail=True)}"
        )


def _checked_dialogue(
    text: str, *, min_turns: int, max_turns: int | None
) -> tuple[Dialogue, list[str], str]:
    """The cleaned dialogue, what was cleaned, and why it fails the rule ("" when it passes)."""
    dialogue, cleaned = clean_dialogue(text)
    try:
        check_session(dialogue, min_turns=min_turns, max_turns=max_turns)
    except DialogueError as exc:
        return dialogue, cleaned, str(exc)
    return dialogue, cleaned, ""


def _plain_session_passes(text: str, *, min_turns: int, max_turns: int | None) -> bool:
    """True when `text` needs no cleaning and passes `check_session`, found without building
    turns: the roles alternate from the Counselor to a closing Counselor turn, no turn is empty,
    the count is within bounds, and the last turn ends a sentence and closes the session. False
    says only "ask the full path" (which gives the reason, or may still pass a text that needed
    cleaning). A CACTUS dialogue costs ~22 µs here, ~50 µs through `judge_answer`."""
    roles, notes, bodies = turn_outline(text)
    if _has_markdown(text) or any(_cleaning_needed(text, notes)):
        return False  # cleaning changes the turns the checks see
    count = len(roles)
    if count < min_turns or count % 2 == 0 or (max_turns is not None and count > max_turns):
        return False  # (an even count cannot alternate from a Counselor turn to another)
    if Role.CLIENT in roles[0::2] or Role.COUNSELOR in roles[1::2]:
        return False
    if "" in map(str.strip, bodies):
        return False
    last = turn_text(bodies[-1])
    return bool(_SENTENCE_END.search(last)) and bool(_CLOSING.search(last))


def _judge_dialogue(text: str, *, min_turns: int, max_turns: int | None) -> Judgement:
    dialogue, cleaned, error = _checked_dialogue(text, min_turns=min_turns, max_turns=max_turns)
    if error:
        return Judgement(StageStatus.INVALID, text, error)
    note = f"cleaned: removed {'; '.join(cleaned)}" if cleaned else ""
    return Judgement(StageStatus.GENERATED, format_dialogue(dialogue.turns), note=note)


# -- imported texts ---------------------------------------------------------------------------


def imported_stage_status(stage: Stage, text: str) -> tuple[StageStatus, str, str]:
    """Status, error and (for the technique) the normalized name of an imported stage text.

    Present stages arrive `generated` (awaiting review) when they pass the one rule
    (`stage_error`: `judge_answer`'s verdict), else `invalid` with its reason (several techniques, a dialogue that stops
    mid-sentence, …); a blank text is `pending`. The stored text stays the imported text.
    """
    # `isspace` instead of `strip`: no copy of a dialogue just to see that it is not blank.
    if not text or text.isspace():
        return _PENDING_CHECK
    if stage is Stage.CBT_TECHNIQUE:
        return _technique_check(text)
    error = stage_error(stage, text)
    if error:
        return StageStatus.INVALID, error, ""
    return _GENERATED_CHECK


_PENDING_CHECK = (StageStatus.PENDING, "", "")
_GENERATED_CHECK = (StageStatus.GENERATED, "", "")


@functools.lru_cache(maxsize=1024)
def _technique_check(text: str) -> tuple[StageStatus, str, str]:
    """Cached: a dataset names the same few techniques over and over, and judging them took
    1.2 s of a 16 s cProfile run of a CACTUS import."""
    judged = judge_answer(Stage.CBT_TECHNIQUE, text)
    if not judged.ok:
        return StageStatus.INVALID, judged.error, ""
    return StageStatus.GENERATED, "", judged.text
