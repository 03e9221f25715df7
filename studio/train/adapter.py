"""What an adapter folder says about the format it was trained on, so generation uses it.

A run's folder is a PEFT adapter folder plus the tokenizer as trained (with the chat template the
examples were rendered with: the model's own, or `PLAIN_CHAT_TEMPLATE` for a base model without
one). `studio_adapter.json` adds what the tokenizer cannot carry: the system prompt and the
context mode. `studio synth --backend local --adapter DIR` reads both, so a Llama-2 adapter is
prompted in the format it learned, not in its base model's.

Pure Python (no torch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ADAPTER_INFO_NAME = "studio_adapter.json"


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    system_prompt: str
    """The task part of the system message every training example started with."""
    context: str
    """`history` (the system prompt alone) or `plan` (followed by the intake, technique, plan)."""
    chat_template: str
    """Which template rendered the examples (`model`, or `plain (…)`); the tokenizer holds it."""
    base_model: str = ""

    def save(self, folder: Path) -> None:
        text = json.dumps(asdict(self), indent=2) + "\n"
        (folder / ADAPTER_INFO_NAME).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> AdapterInfo | None:
        """The folder's info; None for an adapter that was not trained by the studio."""
        try:
            data = json.loads((folder / ADAPTER_INFO_NAME).read_text(encoding="utf-8"))
            return cls(
                system_prompt=str(data["system_prompt"]),
                context=str(data["context"]),
                chat_template=str(data.get("chat_template", "")),
                base_model=str(data.get("base_model", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def has_tokenizer(folder: Path) -> bool:
    """The adapter folder holds the tokenizer it was trained with."""
    return (folder / "tokenizer_config.json").is_file()


def trained_messages(info: AdapterInfo, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with the system message the adapter was trained on.

    The run's system prompt leads; with the `plan` context, the caller's own system text follows
    it as the context (where training put the intake, technique and plan). With `history`, the
    model never saw more than the system prompt, so the caller's system text is left out.
    """
    rest = [m for m in messages if m.get("role") != "system"]
    given = "\n\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
    system = info.system_prompt
    if info.context == "plan" and given:
        system = f"{system}\n\n{given}"
    return [{"role": "system", "content": system}, *rest]
