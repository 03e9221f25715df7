"""The adapter folder's own format: system prompt and context mode, saved and read back."""

from __future__ import annotations

from pathlib import Path

from studio.train.adapter import AdapterInfo, has_tokenizer, trained_messages
from studio.train.dataset import SYSTEM_PROMPT

SYNTH = [
    {"role": "system", "content": "Client intake: Sam, 20. Plan: decatastrophizing."},
    {"role": "user", "content": "I will fail."},
]


def test_info_round_trips_and_a_foreign_adapter_has_none(tmp_path: Path) -> None:
    info = AdapterInfo(SYSTEM_PROMPT, "plan", "plain (the model has no chat template)", "m")
    info.save(tmp_path)
    assert AdapterInfo.load(tmp_path) == info
    assert AdapterInfo.load(tmp_path / "elsewhere") is None
    (tmp_path / "studio_adapter.json").write_text("{broken")
    assert AdapterInfo.load(tmp_path) is None
    assert not has_tokenizer(tmp_path)


def test_generation_uses_the_system_message_the_adapter_learned() -> None:
    history = AdapterInfo(SYSTEM_PROMPT, "history", "model")
    assert trained_messages(history, SYNTH) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        SYNTH[1],
    ]
    plan = AdapterInfo(SYSTEM_PROMPT, "plan", "model")
    assert (
        trained_messages(plan, SYNTH)[0]["content"] == f"{SYSTEM_PROMPT}\n\n{SYNTH[0]['content']}"
    )
