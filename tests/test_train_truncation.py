"""Fitting examples to max_length: long dialogues lose their oldest turns, never their target.

CACTUS dialogues run to ~30 turns; with a small max_length, TRL would cut each long example at the
end, which is exactly where the counselor turn and its EOS are. These tests build CACTUS-length
dialogues and check that every example keeps its whole completion and its EOS, first in our own
rendering, then in the rows TRL's SFTTrainer actually trains on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.store import Store
from studio.train.dataset import (
    FitReport,
    SftDataset,
    build_sft_dataset,
    default_max_length,
    ensure_chat_template,
    fit_dataset,
    full_token_lengths,
    render_full,
)
from tests.conftest import cactus_row
from tests.tiny_model import build_tiny_llama

pytestmark = pytest.mark.train_extra

#: CACTUS-like: 31 messages of ~40 words each, opened and closed by the counselor (a dialogue that
#: ends on the client breaks the stage rule and is never trained on).
TURNS = 31
MAX_LENGTH = 700


def cactus_length_dialogue(n: int) -> str:
    lines = []
    for turn in range(TURNS):
        speaker = "Counselor" if turn % 2 == 0 else "Client"
        words = " ".join(f"thought{n}-{turn}-{w}" if w % 7 == 0 else "evidence" for w in range(40))
        lines.append(f"{speaker}: Turn {turn} says {words}.")
    lines[-1] += " Thank you for today; see you next week."
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture
def long_dataset(tmp_path: Path) -> SftDataset:
    rows = [cactus_row(n, dialogue=cactus_length_dialogue(n)) for n in range(4)]
    with Store(tmp_path / "studio.db") as store:
        add_rows(store, [parse_cactus(row) for row in rows], accepted_by="ann")
        return build_sft_dataset(store.accepted_records(), context="plan", validation_fraction=0.25)


def test_every_example_keeps_its_completion_and_eos(
    tokenizer: Any, long_dataset: SftDataset
) -> None:
    ensure_chat_template(tokenizer, long_dataset.examples[0])
    before = full_token_lengths(long_dataset.examples, tokenizer)
    assert sum(n > MAX_LENGTH for n in before) > len(before) // 2  # most are too long
    fitted, report = fit_dataset(long_dataset, tokenizer, MAX_LENGTH, lengths=before)
    original = {(e.record_id, e.turn): e for e in long_dataset.examples}
    assert len(fitted.examples) == len(long_dataset.examples) == report.examples
    assert report.left_out == 0
    assert report.shortened == sum(n > MAX_LENGTH for n in before)
    dropped = 0
    for example in fitted.examples:
        whole = original[(example.record_id, example.turn)]
        assert example.completion == whole.completion  # the target, whole
        assert example.prompt[0] == whole.prompt[0]  # the system prompt with the plan
        assert "Counseling plan:" in example.prompt[0]["content"]
        kept = len(example.prompt) - 1
        assert example.prompt[1:] == whole.prompt[len(whole.prompt) - kept :]  # the newest turns
        dropped += len(whole.prompt) - len(example.prompt)
        text = render_full(tokenizer, example)
        assert whole.completion["content"] + tokenizer.eos_token in text  # ...and its EOS
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= MAX_LENGTH
        if kept < len(whole.prompt) - 1:  # as few turns dropped as fit: one more does not fit
            longer = dataclasses.replace(
                example, prompt=(whole.prompt[0], *whole.prompt[len(whole.prompt) - kept - 1 :])
            )
            assert len(tokenizer(render_full(tokenizer, longer))["input_ids"]) > MAX_LENGTH
    assert dropped == report.dropped_turns > 0
    assert fitted.dataset_hash != long_dataset.dataset_hash  # the hash is of what is trained
    assert "shortened from the start" in report.describe()


def test_trl_trains_on_every_completion_and_its_eos(
    tokenizer: Any, long_dataset: SftDataset, tmp_path: Path
) -> None:
    """The rows SFTTrainer builds: one per example, each ending in labelled completion + EOS."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from studio.train.hardware import Hardware
    from studio.train.model import build_trainer
    from studio.train.recipes import recipe_config

    model_dir = Path(tokenizer.name_or_path)
    ensure_chat_template(tokenizer, long_dataset.examples[0])
    fitted, _ = fit_dataset(long_dataset, tokenizer, MAX_LENGTH)
    config = recipe_config(
        "seed",
        base_model=str(model_dir),
        load_in_4bit=False,
        optim="adamw_torch",
        max_length=MAX_LENGTH,
        max_steps=1,
        gradient_checkpointing=False,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = build_trainer(
        config, model, tokenizer, fitted, output=tmp_path / "run", hardware=Hardware(cuda=False)
    )
    rows = trainer.train_dataset
    assert isinstance(rows, Dataset)
    assert len(rows) == len(fitted.train)
    eos = tokenizer.eos_token_id
    for row, example in zip(rows, fitted.train, strict=True):
        labels = [t for t in row["labels"] if t != -100]
        completion = tokenizer(example.completion["content"], add_special_tokens=False)
        assert len(row["input_ids"]) <= MAX_LENGTH
        assert labels[: len(completion["input_ids"])] == completion["input_ids"]
        assert eos in labels[len(completion["input_ids"]) :]


def test_an_example_that_cannot_fit_is_left_out_and_counted(
    tokenizer: Any, long_dataset: SftDataset
) -> None:
    ensure_chat_template(tokenizer, long_dataset.examples[0])
    fitted, report = fit_dataset(long_dataset, tokenizer, 40)  # below the system prompt alone
    assert fitted.examples == () and report.left_out == len(long_dataset.examples)
    assert "left out" in report.describe()
    assert FitReport(10, 2).as_dict()["shortened"] == 0


def test_default_max_length_comes_from_the_data_capped_by_the_model() -> None:
    lengths = [100] * 98 + [900, 5000]
    assert default_max_length(lengths, None) == (
        960,
        "max_length 960: the 99th percentile of the examples' token lengths (900)",
    )
    chosen, note = default_max_length(lengths, 512)
    assert chosen == 512 and "the model's context" in note
    assert default_max_length([3], None)[0] == 64


def test_packing_packs_only_rows_that_have_trained_tokens(
    tokenizer: Any, long_dataset: SftDataset, tmp_path: Path
) -> None:
    """`fast` packs the fitted rows: each packed sequence keeps its labelled completion."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from studio.train.hardware import Hardware, adapt_to_hardware
    from studio.train.model import build_trainer
    from studio.train.recipes import recipe_config

    model_dir = Path(tokenizer.name_or_path)
    ensure_chat_template(tokenizer, long_dataset.examples[0])
    fitted, _ = fit_dataset(long_dataset, tokenizer, MAX_LENGTH)
    config = adapt_to_hardware(
        recipe_config(
            "fast",
            base_model=str(model_dir),
            load_in_4bit=False,
            max_length=MAX_LENGTH,
            max_steps=1,
            gradient_checkpointing=False,
        ),
        Hardware(cuda=False),
        explicit={"load_in_4bit", "max_steps", "max_length"},
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = build_trainer(
        config, model, tokenizer, fitted, output=tmp_path / "run", hardware=Hardware(cuda=False)
    )
    rows = trainer.train_dataset
    assert isinstance(rows, Dataset) and config.packing
    sequences = 0
    for row in rows:
        start = 0
        for length in row["seq_lengths"]:
            labels = row["labels"][start : start + length]
            assert any(label != -100 for label in labels)  # no prompt-only row in any block
            assert labels[-2:] != [-100, -100]  # ends in its completion (EOS, template newline)
            start += length
            sequences += 1
        assert start == len(row["input_ids"]) <= MAX_LENGTH
    assert sequences == len(fitted.train)  # every example packed whole, none cut in two
