"""One rule per stage (`studio.cbt.checks.judge_answer`), for every source of text: each broken
shape answered by the loopback server is flagged with its reason; imported CACTUS rows and
reviewer edits are held to the same rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from studio.cbt.checks import judge_answer
from studio.demo import demo_rows
from studio.errors import InvalidStage
from studio.export import export_records
from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.model import CactusRow, RecordStatus, Seed, Stage, StageStatus
from studio.store import Store
from studio.store.review import accept_remaining, accept_stage, change_technique, save_edit
from studio.store.undo import undo_last
from studio.synth import chain
from studio.train.dataset import build_sft_dataset
from tests.chat_server import ChatServer, Reply, cbt_reply, detect_stage
from tests.conftest import DIALOGUE, INTAKE_FORM, PLAN, cactus_row
from tests.test_synth import settings_for, synthesize

SEED = Seed("A teacher.", "My class will fall apart if I take a day off.", ("Catastrophizing",))
CLOSING = "Counselor: Thank you for today; please keep a thought record this week."


def dialogue_of(turns: int, last: str = CLOSING) -> str:
    lines = [
        f"{'Counselor' if n % 2 == 0 else 'Client'}: Turn {n + 1} is a whole sentence."
        for n in range(turns - 1)
    ]
    return "\n".join([*lines, last])


def answering(stage: str, reply: Reply) -> Any:
    """A server that answers `stage` with `reply` and every other stage plausibly."""

    def respond(body: dict[str, Any]) -> Reply:
        return reply if detect_stage(body) == stage else cbt_reply(body)

    return respond


async def synthesize_with(store: Store, stage: str, reply: Reply, **settings: Any) -> None:
    add_rows(store, [SEED])
    with ChatServer(answering(stage, reply)) as server:
        await synthesize(store, settings_for(server, structured_output=False, **settings))


# -- each broken shape from the loopback server, flagged with its reason ----------------------

BROKEN = [
    pytest.param(Stage.INTAKE_FORM, "intake_form", "", "the text is empty", id="intake-empty"),
    pytest.param(
        Stage.INTAKE_FORM,
        "intake_form",
        "I'm sorry, but I can't help with creating that intake form.",
        "a refusal or a preamble",
        id="intake-refusal",
    ),
    pytest.param(
        Stage.INTAKE_FORM,
        "intake_form",
        "As an AI, I do not have clients.",
        "a refusal or a preamble",
        id="intake-as-an-ai",
    ),
    pytest.param(
        Stage.INTAKE_FORM,
        "intake_form",
        "Here is the intake form:\n" + INTAKE_FORM,
        "a refusal or a preamble, not the text itself: “Here is the intake form:”",
        id="intake-preamble",
    ),
    pytest.param(
        Stage.INTAKE_FORM,
        "intake_form",
        "1. Basic Information\nName: Sam\n\n2. Presenting Problem\nI worry about work.",
        "missing sections: Reason for Seeking Counseling, Past History, Academic/Occupational"
        " Functioning Level, Social Support System",
        id="intake-missing-sections",
    ),
    pytest.param(
        Stage.INTAKE_FORM,
        "intake_form",
        INTAKE_FORM + "\nHer sister lives nearby and",
        "the text stops mid-sentence",
        id="intake-cut-off",
    ),
    pytest.param(
        Stage.CBT_TECHNIQUE,
        "cbt_technique",
        "I would not use Decatastrophizing here.",
        "names none of the 12",
        id="technique-negated",
    ),
    pytest.param(
        Stage.CBT_TECHNIQUE,
        "cbt_technique",
        "Reality Testing, combined with Decatastrophizing.",
        "several techniques: Decatastrophizing, Reality Testing",
        id="technique-several",
    ),
    pytest.param(
        Stage.CBT_PLAN,
        "cbt_plan",
        "1. Explore the thought.\n2. Weigh the evidence.",
        "the plan has 2 numbered steps; at least 3 are required",
        id="plan-two-steps",
    ),
    pytest.param(
        Stage.CBT_PLAN,
        "cbt_plan",
        "I'm sorry, I cannot write a plan.",
        "a refusal or a preamble",
        id="plan-refusal",
    ),
    pytest.param(
        Stage.CBT_PLAN,
        "cbt_plan",
        PLAN + "\n4. Agree on homework for the",
        "the text stops mid-sentence",
        id="plan-cut-off",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        "Client: I start.\n" + dialogue_of(12),
        "must start with the Counselor",
        id="dialogue-client-first",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(11).replace("Client: Turn 4", "Counselor: Turn 4"),
        "roles do not alternate: turns 3 and 4 are both Counselor",
        id="dialogue-not-alternating",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(5),
        "only 5 turns; at least 10 are required",
        id="dialogue-too-short",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(33),
        "33 turns; at most 30 are allowed",
        id="dialogue-too-long",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(12, last="Client: Thank you, see you next week."),
        "must end on a Counselor turn that closes the session",
        id="dialogue-ends-on-client",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(11, last="Counselor: So today we looked at how your"),
        "the last turn stops mid-sentence: “So today we looked at how your”",
        id="dialogue-cut-mid-sentence",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(11, last="Counselor: What else comes to mind when you picture it?"),
        "the last Counselor turn does not close the session",
        id="dialogue-not-closed",
    ),
    pytest.param(
        Stage.DIALOGUE,
        "dialogue_script",
        dialogue_of(10) + "\nCounselor: Is that so? Client: ok.",
        "roles do not alternate",
        id="dialogue-second-label-inside-a-turn",
    ),
]


@pytest.mark.parametrize(("stage", "template", "answer", "reason"), BROKEN)
async def test_each_broken_answer_is_invalid_with_its_reason(
    store: Store, stage: Stage, template: str, answer: str, reason: str
) -> None:
    await synthesize_with(store, template, Reply(content=answer))
    view = store.stage(1, stage)
    assert view.status is StageStatus.INVALID
    assert reason in view.error
    assert view.original_text == answer.strip()  # the raw text is kept for the reviewer
    later = stage.downstream()
    assert all(store.stage(1, s).status is StageStatus.PENDING for s in later)


@pytest.mark.parametrize(
    "template", ["intake_form", "cbt_technique", "cbt_plan", "dialogue_script"]
)
async def test_an_answer_cut_at_the_token_limit_is_invalid(store: Store, template: str) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        reply = cbt_reply(body)
        if detect_stage(body) == template:
            reply.finish_reason = "length"  # plausible text, but the server says it was cut
        return reply

    add_rows(store, [SEED])
    with ChatServer(respond) as server:
        await synthesize(store, settings_for(server))
        stage = {v: k for k, v in chain.STAGE_TEMPLATES.items()}[template]
        view = store.stage(1, stage)
        assert view.status is StageStatus.INVALID
        assert view.error == "cut off at the token limit"
        # The cut answer is not cached: regenerating (or a later run) asks the server again.
        cached = store.conn.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0]
        assert cached == stage.position - 1


async def test_narration_and_markdown_after_the_session_are_stripped_and_noted(
    store: Store,
) -> None:
    answer = (
        dialogue_of(11).replace("Turn 3", "**Turn 3**")
        + "\n---\n*Note: this session shows Decatastrophizing.*"
    )
    await synthesize_with(store, "dialogue_script", Reply(content=answer))
    view = store.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.GENERATED
    assert view.original_text == dialogue_of(11)
    assert view.error.startswith("cleaned: removed")
    assert "text after a '---' line" in view.error and "markdown leftovers" in view.error
    event = store.conn.execute(
        "SELECT after FROM events WHERE action = 'generate' AND stage = 'dialogue'"
    ).fetchone()[0]
    assert "cleaned" in json.loads(event)["error"]


async def test_a_second_role_label_inside_a_line_is_split_into_turns(store: Store) -> None:
    answer = "\n".join(dialogue_of(11).splitlines()[:-1]) + (
        "\nCounselor: Turn 11 is a whole sentence. Client: ok. Counselor: Thank you, see you next week."
    )
    await synthesize_with(store, "dialogue_script", Reply(content=answer))
    view = store.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.GENERATED, view.error
    assert view.original_text is not None
    assert view.original_text.splitlines()[-3:] == [
        "Counselor: Turn 11 is a whole sentence.",
        "Client: ok.",
        "Counselor: Thank you, see you next week.",
    ]
    assert "split into turns" in view.error


def test_a_negated_mention_is_not_a_match_but_the_named_one_is() -> None:
    judged = judge_answer(
        Stage.CBT_TECHNIQUE, "I would not use Decatastrophizing here; Reality Testing fits better."
    )
    assert (judged.status, judged.text) == (StageStatus.GENERATED, "Reality Testing")
    judged = judge_answer(Stage.CBT_TECHNIQUE, "Evidence-Based Questioning rather than Continuum.")
    assert judged.text == "Evidence-Based Questioning"


def test_the_demo_content_passes_the_rule() -> None:
    rows = [row for row in demo_rows() if isinstance(row, CactusRow)]
    assert rows
    for row in rows:
        for stage, text in row.stages.items():
            if text:
                assert judge_answer(stage, text).ok, (stage, text[-80:])


# -- imported CACTUS rows ---------------------------------------------------------------------


def test_a_cactus_row_with_several_techniques_imports_invalid_naming_them(store: Store) -> None:
    row = cactus_row(1, cbt_technique="Alternative Perspective, Reality Testing")
    add_rows(store, [parse_cactus(row)])
    view = store.stage(1, Stage.CBT_TECHNIQUE)
    assert view.status is StageStatus.INVALID
    assert view.error == "several techniques: Alternative Perspective, Reality Testing"
    assert view.original_text == "Alternative Perspective, Reality Testing"


def test_a_cactus_dialogue_that_stops_mid_sentence_imports_invalid(store: Store) -> None:
    row = cactus_row(
        1, dialogue=DIALOGUE + "\nClient: Yes.\nCounselor: So today we looked at how your"
    )
    add_rows(store, [parse_cactus(row)], accepted_by="dr_lee")
    view = store.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.INVALID
    assert "stops mid-sentence" in view.error
    assert store.record(1).status is not RecordStatus.ACCEPTED  # not even with --status accepted
    assert build_sft_dataset(store.accepted_records(), validation_fraction=0).n_records == 0


# -- reviewer edits -----------------------------------------------------------------------------

ME = "dr_lee"


@pytest.fixture
def reviewed(store: Store) -> Store:
    add_rows(store, [parse_cactus(cactus_row(1))])
    return store


def test_an_edit_that_breaks_the_rule_is_saved_invalid_with_the_reason(
    reviewed: Store, tmp_path: Path
) -> None:
    client_first = "Client: I start.\n" + DIALOGUE
    item = save_edit(reviewed, 1, Stage.DIALOGUE, client_first, reviewer=ME)
    view = item.record.stages[Stage.DIALOGUE]
    assert view.status is StageStatus.INVALID and view.edited_text == client_first
    assert "must start with the Counselor" in view.error
    with pytest.raises(InvalidStage, match=r"cannot be accepted.*must start with the Counselor"):
        accept_stage(reviewed, 1, Stage.DIALOGUE, reviewer=ME)
    accepted, item = accept_remaining(reviewed, 1, reviewer=ME)  # `A` skips the invalid stage
    assert accepted == 3 and item.record.stages[Stage.DIALOGUE].status is StageStatus.INVALID
    assert item.record.status is not RecordStatus.ACCEPTED
    assert export_records(reviewed, tmp_path / "out.jsonl", fmt="cactus-jsonl").records == 0
    assert build_sft_dataset(reviewed.accepted_records(), validation_fraction=0).n_records == 0


def test_a_good_edit_is_edited_and_undo_restores_the_invalid_reason(reviewed: Store) -> None:
    save_edit(reviewed, 1, Stage.DIALOGUE, "Client: I start.\n" + DIALOGUE, reviewer=ME)
    item = save_edit(
        reviewed, 1, Stage.DIALOGUE, DIALOGUE + "\nClient: Yes.\n" + CLOSING, reviewer=ME
    )
    assert item.record.stages[Stage.DIALOGUE].status is StageStatus.EDITED
    assert item.record.stages[Stage.DIALOGUE].error == ""
    undo_last(reviewed, reviewer=ME)
    view = reviewed.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.INVALID and "must start with the Counselor" in view.error
    undo_last(reviewed, reviewer=ME)
    view = reviewed.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.GENERATED and view.error == ""


@pytest.mark.parametrize("stale", [True, False])
def test_changing_the_technique_makes_plan_and_dialogue_stale_or_keeps_them(
    reviewed: Store, stale: bool
) -> None:
    item = change_technique(reviewed, 1, "Reality Testing", reviewer=ME, stale_downstream=stale)
    stages = item.record.stages
    assert stages[Stage.CBT_TECHNIQUE].status is StageStatus.EDITED
    assert item.record.technique == "Reality Testing"
    expected = StageStatus.STALE if stale else StageStatus.GENERATED
    assert stages[Stage.CBT_PLAN].status is expected
    assert stages[Stage.DIALOGUE].status is expected
    action = "stale" if stale else "keep_downstream"
    events = reviewed.conn.execute(
        "SELECT reviewer, after FROM events WHERE action = ?", (action,)
    ).fetchall()
    assert len(events) == 1 and events[0][0] == ME
    after = json.loads(events[0][1])
    assert set(after.get("stale", after.get("kept", []))) == {"cbt_plan", "dialogue"}


async def test_a_cached_answer_that_fails_its_check_is_asked_again(store: Store) -> None:
    add_rows(store, [SEED])
    with ChatServer() as server:
        await synthesize(store, settings_for(server))
        paid = server.stats.requests
        # An old cache holding unusable answers (as the code before this rule wrote them).
        store.conn.execute("UPDATE llm_cache SET response = ''")
        store.conn.execute("UPDATE stages SET status = 'pending', original_text = NULL")
        summary = await synthesize(store, settings_for(server))
        assert server.stats.requests == 2 * paid
    assert summary.cache_hits == 0 and summary.stages == {"generated": 4}
