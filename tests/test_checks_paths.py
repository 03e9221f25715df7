"""The import's verdict (`stage_error`) is `judge_answer`'s verdict: the same reason for every
broken shape, the demo content, and dialogues bent every way the fast path has to notice."""

from __future__ import annotations

import random

import pytest

from studio.cbt import checks, dialogue
from studio.cbt.checks import imported_stage_status, judge_answer, stage_error
from studio.cbt.dialogue import Dialogue, Turn, parse_dialogue, turn_outline
from studio.demo import demo_rows
from studio.model import STAGES, CactusRow, Stage, StageStatus
from tests.conftest import DIALOGUE, INTAKE_FORM, PLAN
from tests.test_checks import BROKEN, dialogue_of

TURN_LIMITS = [(checks.DEFAULT_MIN_TURNS, None), (10, 30), (1, 5)]


def bent_dialogues() -> list[str]:
    """Valid dialogues and the ways to break or dirty them, one change each."""
    base = [DIALOGUE, dialogue_of(11), dialogue_of(25), dialogue_of(3)]
    rng = random.Random(16)
    texts: list[str] = [*base]
    for text in base:
        lines = text.splitlines()
        texts += [
            "\n".join(lines[:-1]),  # ends on the Client
            "\n".join(lines[1:]),  # starts with the Client
            "\n".join(lines[:2] + lines[3:]),  # two turns of one role in a row
            text.replace("Counselor:", "**Counselor:**", 1),  # markdown
            text.replace("Client:", "Client: **", 1),  # markdown that empties nothing
            "Here is the session:\n" + text,  # a preamble (cleaned, still valid)
            text + "\n---\n*Note: a fine session.*",  # a rule line and a note after it
            text + "\n(The session ends.)",  # narration after the last turn
            text.replace("Client: ", "Client:   \n  ", 1),  # a turn's text on the next line
            text.replace("Client: ", "Client:\n\nClient: ", 1),  # an empty turn
            lines[0] + " Client: ok. Counselor: Go on.\n" + "\n".join(lines[1:]),  # inner labels
            text.replace("Client:", "Client (sighs):", 2),  # stage directions
            text.replace("Client:", "Client (tired. Counselor (x):", 1),  # a label in a direction
            text.replace("Client:", "Client (note: Counselor: yes):", 1),
            text.replace("Client:", "Client (a: b):", 1),  # a colon in a direction, no label
            text.replace("whole sentence.", "whole sentence: really.", 1),  # a colon in a turn
            text.replace("whole sentence.", "whole sentence. Client: a label inside.", 1),
            text.replace("Counselor:", "Therapist:", 1).replace("Client:", "CLIENT :", 1),
            text[: len(text) - 7],  # the closing turn cut mid-word
            text.rstrip(".") + " and",  # the closing turn cut mid-sentence
            text + "\r\n",
            text.replace("\n", "\r\n"),
            text.replace("\n", "\n\n   \n"),
            "no turns here at all",
            "Counselor:",
            "Counselor: ---\nClient: ___\nCounselor: Thank you, see you next week.",
        ]
        for _ in range(6):  # a few lines shuffled
            shuffled = lines[:]
            i, j = rng.sample(range(len(shuffled)), 2)
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
            texts.append("\n".join(shuffled))
    return texts


def corpus() -> list[tuple[Stage, str]]:
    cases: list[tuple[Stage, str]] = []
    for param in BROKEN:
        stage, _, answer, _ = param.values
        assert isinstance(stage, Stage) and isinstance(answer, str)
        cases.append((stage, answer))
    for row in demo_rows():
        if isinstance(row, CactusRow):
            cases += [(stage, text) for stage, text in row.stages.items()]
    cases += [(Stage.DIALOGUE, text) for text in bent_dialogues()]
    long_form = INTAKE_FORM + "\n" + "More history. " * 80
    for text in (
        INTAKE_FORM,
        long_form,
        "x" * 600 + "\n" + INTAKE_FORM,
        "\r\n" * 300 + INTAKE_FORM,
    ):
        cases += [(Stage.INTAKE_FORM, text), (Stage.INTAKE_FORM, text + " and")]
    for text in (PLAN, PLAN + "\n" + "4. Keep going. " * 60, "Sure! " + PLAN, "   \n\n"):
        cases += [(Stage.CBT_PLAN, text), (Stage.CBT_PLAN, text + ",")]
    cases += [(stage, "") for stage in STAGES]
    return cases


@pytest.mark.parametrize(("min_turns", "max_turns"), TURN_LIMITS)
def test_the_verdict_alone_is_the_judgements_verdict(min_turns: int, max_turns: int | None) -> None:
    checked = 0
    for stage, text in corpus():
        judged = judge_answer(stage, text, min_turns=min_turns, max_turns=max_turns)
        error = stage_error(stage, text, min_turns=min_turns, max_turns=max_turns)
        assert error == judged.error, (stage, text[:200])
        assert (error == "") is judged.ok
        checked += 1
    assert checked > 150


def test_the_corpus_has_both_verdicts_and_takes_the_fast_path() -> None:
    dialogues = bent_dialogues()
    verdicts = [stage_error(Stage.DIALOGUE, text) for text in dialogues]
    assert verdicts.count("") >= 10 and len(set(verdicts)) >= 8
    fast = [
        text
        for text in dialogues
        if checks._plain_session_passes(text, min_turns=3, max_turns=None)
    ]
    assert DIALOGUE in fast and len(fast) >= 8


def reference_parse(text: str) -> Dialogue:
    """`parse_dialogue` as it was before it split once (one `finditer`, a turn per match)."""
    text = "\n" + text
    matches = list(dialogue._TURN_START.finditer(text))
    end = matches[0].start() if matches else len(text)
    preamble = tuple(line.strip() for line in text[:end].splitlines() if line.strip())
    turns = []
    for index, match in enumerate(matches):
        stop = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : stop].strip()
        if "\n" in body:
            body = "\n".join(line.strip() for line in body.splitlines() if line.strip())
        role = dialogue._ROLE_NAMES[match[1].lower()]
        turns.append(Turn(role, body, (match[2] or "").strip()))
    return Dialogue(tuple(turns), preamble)


def test_parsing_once_finds_the_same_turns() -> None:
    for text in [*bent_dialogues(), "", "\n\n", "  preamble only\n"]:
        assert parse_dialogue(text) == reference_parse(text), text[:200]


def test_counting_colons_finds_exactly_the_dialogues_without_a_label_inside_a_line() -> None:
    for text in bent_dialogues():
        _, notes, _ = turn_outline(text.strip())
        assert checks._cleaning_needed(text.strip(), notes) == checks._cleaning_needed(text.strip())


def test_an_imported_stage_gets_the_judgements_status_and_reason() -> None:
    for stage, text in corpus():
        if stage is Stage.CBT_TECHNIQUE or not text.strip():
            continue
        judged = judge_answer(stage, text)
        status, error, _ = imported_stage_status(stage, text)
        assert (status, error) == (judged.status, judged.error)
    assert imported_stage_status(Stage.DIALOGUE, " \n ")[0] is StageStatus.PENDING


@pytest.mark.parametrize(
    "text",
    [
        "a\nb",
        "\n\n  \nfirst line\nsecond",
        "x" * 511 + "\r\n" + "y",
        "x" * 510 + "\r\n" + "y" * 600,
        " " * 600 + "\n" + "late first line\nthen more",
        "one line only " * 60,
        "a\u2028b" + "c" * 700 + "\x85d",
        "\r\n" * 400 + "end line",
    ],
)
def test_first_and_last_lines_are_those_of_the_whole_text(text: str) -> None:
    lines = text.splitlines()
    assert checks._first_line(text) == next((ln.strip() for ln in lines if ln.strip()), "")
    assert checks._last_line(text) == lines[-1]
