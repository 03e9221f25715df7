from __future__ import annotations

import pytest

from studio.cbt.dialogue import DialogueError, Role, check_dialogue, format_dialogue, parse_dialogue
from studio.cbt.techniques import TECHNIQUES, normalize_technique


@pytest.mark.parametrize("name", TECHNIQUES)
def test_every_technique_name_normalizes_to_itself(name: str) -> None:
    assert normalize_technique(name) == name
    assert normalize_technique(name.upper()) == name
    assert normalize_technique(f"**{name.lower()}**") == name


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("CBT technique: pie chart technique", "Pie Chart Technique"),
        ("Technique - Evidence based questioning.", "Evidence-Based Questioning"),
        ('{"technique": "Behavioural Experiment", "rationale": "test it"}', "Behavior Experiment"),
        ("## Decatastrophising\nBecause the client fears the worst.", "Decatastrophizing"),
        ("The selected technique: Changing rules into wishes", "Changing Rules to Wishes"),
        ("> Problem solving skills training", "Problem-Solving Skills Training"),
        ("I would use Reality Testing here, since the client doubts evidence.", "Reality Testing"),
    ],
)
def test_technique_variants(answer: str, expected: str) -> None:
    assert normalize_technique(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "Mindfulness",
        "",
        "Reality Testing or Decatastrophizing",
        '{"technique": 3}',
        "Socratic dialogue",
    ],
)
def test_technique_answers_that_name_none_or_several_are_refused(answer: str) -> None:
    assert normalize_technique(answer) is None


def test_dialogue_variants_parse() -> None:
    text = (
        "Here is the session:\n"
        "Counselor: Hello, how are you?\n"
        "Client (sighs): Not great.\n"
        "It has been a long week.\n"
        "\n"
        "**Counselor:** What happened?\n"
        "Client:Everything went wrong.\n"
        "counsellor : Let's look at one part.\n"
        "CLIENT (pauses, looks down): Okay."
    )
    dialogue = parse_dialogue(text)
    assert dialogue.preamble == ("Here is the session:",)
    assert [t.role for t in dialogue.turns] == [Role.COUNSELOR, Role.CLIENT] * 3
    assert dialogue.turns[1].note == "sighs"
    assert dialogue.turns[1].text == "Not great.\nIt has been a long week."
    assert dialogue.turns[3].text == "Everything went wrong."
    assert dialogue.turns[5].note == "pauses, looks down"
    check_dialogue(dialogue, min_turns=6)


def test_a_colon_later_in_a_line_is_not_a_turn() -> None:
    dialogue = parse_dialogue("Counselor: The client said: fine.\nClient: Yes: fine.")
    assert len(dialogue.turns) == 2
    assert dialogue.turns[0].text == "The client said: fine."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no 'Counselor:'"),
        ("Client: hi\nCounselor: hello", "must start with the Counselor"),
        ("Counselor: a\nCounselor: b", "turns 1 and 2 are both Counselor"),
        ("Counselor: a\nClient:\nCounselor: c", "turn 2 (Client) is empty"),
        ("Counselor: a\nClient: b", "at least 4"),
    ],
)
def test_dialogue_checks_say_why(text: str, reason: str) -> None:
    with pytest.raises(DialogueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_dialogue(parse_dialogue(text), min_turns=4)


def test_format_dialogue_round_trips() -> None:
    text = "Counselor: Hi.\nClient (sighs): Hello."
    assert format_dialogue(parse_dialogue(text).turns) == text
