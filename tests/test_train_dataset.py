"""The SFT dataset builder: examples from accepted records, the split, hashes, token lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.model import RecordStatus, Stage
from studio.store import RecordView, Store
from studio.train.dataset import (
    PLAIN_CHAT_TEMPLATE,
    SYSTEM_PROMPT,
    SftExample,
    build_sft_dataset,
    dialogue_messages,
    ensure_chat_template,
    examples_from_messages,
    full_token_lengths,
    render_full,
    render_prompt,
    token_length_stats,
    validation_keys,
)
from tests.conftest import DIALOGUE, cactus_row
from tests.tiny_model import build_tiny_llama


def add_accepted(store: Store, rows: list[dict[str, Any]], reviewer: str = "ann") -> list[int]:
    result = add_rows(store, [parse_cactus(row) for row in rows], accepted_by=reviewer)
    return list(result.record_ids)


def accepted(store: Store) -> list[RecordView]:
    return list(store.accepted_records())


def test_one_example_per_counselor_turn_after_the_opening_exchange(store: Store) -> None:
    add_accepted(store, [cactus_row(1)])
    dataset = build_sft_dataset(accepted(store), validation_fraction=0)
    # DIALOGUE: 4 counselor turns, 3 client turns; the first counselor turn opens the session.
    assert [e.turn for e in dataset.train] == [3, 5, 7]
    first, *_, last = dataset.train
    assert [m["role"] for m in first.prompt] == ["system", "assistant", "user"]
    assert first.prompt[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert first.prompt[1]["content"] == "Hi Sam, what brings you in today?"
    # Stage directions of the client stay as context; "Counselor:What" (no space) parses.
    assert first.prompt[2]["content"] == "(sighs) I keep thinking I'll fail my exam."
    assert first.completion == {"role": "assistant", "content": "What makes that feel so certain?"}
    # The last counselor turn is an example too (the seed dropped the last pairs).
    assert last.completion["content"].startswith("Let's write that down as evidence.")
    assert len(last.prompt) == 1 + 6
    row = first.row()
    assert set(row) == {"prompt", "completion"}
    assert row["completion"] == [first.completion]


def test_tricky_dialogues() -> None:
    text = "\n".join(
        [
            "Here is the session:",  # narration before the first turn: dropped
            "**Counselor:** Welcome. How are you?",
            "Client (sighs): Tired.",
            "Client: Work has been a lot.",  # the client speaks twice: one user message
            "Counselor (nodding): That sounds heavy.",  # a counselor's note is dropped
            "Counselor: What weighs most?",  # and speaks twice: one completion
            "Client: The deadlines.",
            "Therapist: Let's list them together.",
            "Client: Okay.",  # the client speaks last: no example after it
            "Counselor:",  # an empty turn: dropped
        ]
    )
    messages = dialogue_messages(text)
    assert messages == [
        {"role": "assistant", "content": "Welcome. How are you?"},
        {"role": "user", "content": "(sighs) Tired.\nWork has been a lot."},
        {"role": "assistant", "content": "That sounds heavy.\nWhat weighs most?"},
        {"role": "user", "content": "The deadlines."},
        {"role": "assistant", "content": "Let's list them together."},
        {"role": "user", "content": "Okay."},
    ]
    examples = list(examples_from_messages(7, "sys", messages))
    assert [e.completion["content"] for e in examples] == [
        "That sounds heavy.\nWhat weighs most?",
        "Let's list them together.",
    ]
    assert all(e.record_id == 7 for e in examples)
    # A dialogue the client opens: the opening exchange is its first two messages.
    client_first = dialogue_messages(
        "Client: Hi.\nCounselor: Hello.\nClient: I'm low.\nCounselor: Tell me more."
    )
    assert [e.turn for e in examples_from_messages(1, "s", client_first)] == [4]
    # Too short to have a turn after the opening exchange, or no turns at all.
    assert (
        list(examples_from_messages(1, "s", dialogue_messages("Counselor: Hi.\nClient: Hey.")))
        == []
    )
    assert dialogue_messages("no roles here") == []


def test_edited_text_wins_and_plan_context_carries_intake_technique_plan(store: Store) -> None:
    (record_id,) = add_accepted(store, [cactus_row(1)])
    store.edit_stage(record_id, Stage.CBT_PLAN, "1. The clinician's plan.", reviewer="bo")
    edited = DIALOGUE.replace("What makes that feel so certain?", "What tells you that?")
    store.edit_stage(record_id, Stage.DIALOGUE, edited, reviewer="bo")
    dataset = build_sft_dataset(accepted(store), context="plan", validation_fraction=0)
    system = dataset.train[0].prompt[0]["content"]
    assert system.startswith(SYSTEM_PROMPT)
    assert "Client intake:\n1. Basic Information\nName: Sam 1" in system
    assert "CBT technique: Decatastrophizing" in system
    assert "Counseling plan:\n1. The clinician's plan." in system
    assert dataset.train[0].completion["content"] == "What tells you that?"
    history = build_sft_dataset(accepted(store), validation_fraction=0)
    assert history.train[0].prompt[0]["content"] == SYSTEM_PROMPT
    assert history.dataset_hash != dataset.dataset_hash


def test_only_accepted_records_count(store: Store) -> None:
    add_accepted(store, [cactus_row(1)])
    add_rows(store, [parse_cactus(cactus_row(2))])  # awaiting review
    # A dialogue that breaks the stage rule imports `invalid`: never accepted, never trained on.
    (short,) = add_accepted(store, [cactus_row(3, dialogue="Counselor: Hi.\nClient: Hello.")])
    assert store.record(short).status is not RecordStatus.ACCEPTED
    dataset = build_sft_dataset(accepted(store), validation_fraction=0)
    assert dataset.n_records == 1
    assert {e.record_id for e in dataset.examples} == {1}
    summary = dataset.summary()
    assert summary["records"] == 1 and summary["examples"] == 3


def test_split_is_by_record_deterministic_and_stable(tmp_path: Path) -> None:
    rows = [cactus_row(n) for n in range(20)]

    def held_out_thoughts(db: Path, rows: list[dict[str, Any]], seed: int = 1) -> set[str]:
        with Store(db) as store:
            add_accepted(store, rows)
            records = accepted(store)
        dataset = build_sft_dataset(records, validation_fraction=0.2, seed=seed)
        validation_records = {e.record_id for e in dataset.validation}
        assert validation_records.isdisjoint({e.record_id for e in dataset.train})
        assert len(dataset.validation) == 3 * len(validation_records)  # whole records
        thoughts = {r.id: r.seed.thought for r in records}
        return {thoughts[record_id] for record_id in validation_records}

    first = held_out_thoughts(tmp_path / "a.db", rows)
    assert len(first) == 4  # 20 records x 0.2
    assert held_out_thoughts(tmp_path / "same.db", rows) == first
    # Other ids and order, plus one more record: the held-out set hardly moves.
    moved = held_out_thoughts(tmp_path / "b.db", [cactus_row(99), *rows[::-1]])
    assert len(first & moved) >= 3
    assert held_out_thoughts(tmp_path / "c.db", rows, seed=2) != first
    with Store(tmp_path / "a.db") as store:
        records = accepted(store)
    hashes = {
        build_sft_dataset(records, validation_fraction=0.2, seed=1).dataset_hash for _ in range(2)
    }
    assert len(hashes) == 1


def test_validation_keys_edge_cases() -> None:
    assert validation_keys([], 0.1, 0) == frozenset()
    assert validation_keys(["a"], 0.5, 0) == frozenset()  # never hold out the only record
    assert validation_keys(["a", "b"], 0.9, 0) != {"a", "b"}
    assert validation_keys(["a", "a", "b", "c", "d"], 0.25, 0) == validation_keys(
        ["d", "c", "b", "a"], 0.25, 0
    )
    assert len(validation_keys([str(n) for n in range(10)], 0.1, 0)) == 1


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def _example() -> SftExample:
    messages = dialogue_messages(DIALOGUE)
    return next(iter(examples_from_messages(1, SYSTEM_PROMPT, messages)))


@pytest.mark.train_extra
def test_model_chat_template_renders_prompt_as_prefix_and_stats(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = _example()
    assert ensure_chat_template(tokenizer, example) == "model"
    prompt, full = render_prompt(tokenizer, example), render_full(tokenizer, example)
    assert full.startswith(prompt)
    assert "<|im_start|>system\n" + SYSTEM_PROMPT in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert full[len(prompt) :] == "What makes that feel so certain?<|im_end|>\n"
    stats = token_length_stats([example, example], tokenizer, max_length=10)
    assert stats.examples == 2 and stats.min == stats.max > stats.completion_mean > 0
    assert stats.over_max_length == 2
    lengths = full_token_lengths([example, example], tokenizer)
    # The runner passes the lengths it has already measured: the statistics are the same.
    assert (
        token_length_stats([example, example], tokenizer, max_length=10, lengths=lengths) == stats
    )
    assert token_length_stats([], tokenizer).examples == 0


@pytest.mark.train_extra
def test_plain_template_when_the_model_has_none_or_refuses_counselor_first(
    tiny_model_dir: Path,
) -> None:
    from transformers import AutoTokenizer

    example = _example()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    assert ensure_chat_template(tokenizer, example).startswith("plain")
    assert tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    prompt, full = render_prompt(tokenizer, example), render_full(tokenizer, example)
    assert prompt.startswith("<|im_start|>" + SYSTEM_PROMPT + "\n\nCounselor: Hi Sam")
    assert "\nClient: (sighs) I keep thinking I'll fail my exam.\nCounselor:" in prompt
    assert full == prompt + " What makes that feel so certain?<|im_end|>\n"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids  # TRL masks the prompt by this prefix

    # A Llama-2-chat-style template that insists on user/assistant/user/… order.
    strict = AutoTokenizer.from_pretrained(tiny_model_dir)
    strict.chat_template = (
        "{% if messages[1]['role'] != 'user' %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
        "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    note = ensure_chat_template(strict, example)
    assert note.startswith("plain (the model's template rejects") and "alternate" in note
    assert strict.chat_template == PLAIN_CHAT_TEMPLATE
