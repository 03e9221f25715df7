"""Judge answers for the loopback chat-completions server (`tests/chat_server.py`).

`JudgeResponder` answers judge prompts with a valid judgement whose scores depend on the record
(by a marker in the dialogue), and plays the bad answers a real judge gives: prose instead of
JSON (`UNREADABLE` in the dialogue), a score of 9 (`OUT_OF_RANGE`), a flag on a turn the dialogue
does not have (`BAD_TURN`). A dialogue that mentions hurting oneself gets a risk flag.

The per-item mode's prompts (one CTRS item, or fidelity and flags) get answers of that shape, with
the same scores; `ITEM_PROSE` in the dialogue makes the focus item's answer prose.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from studio.cbt.ctrs import CTRS_ITEMS
from tests.chat_server import Reply, cbt_reply


def is_judge_prompt(body: dict[str, Any]) -> bool:
    messages = body.get("messages", [])
    return bool(messages) and "<dialogue>" in str(messages[-1].get("content", ""))


def dialogue_of(body: dict[str, Any]) -> str:
    user = str(body["messages"][-1]["content"])
    found = re.search(r"<dialogue>\n(.*?)\n</dialogue>", user, flags=re.S)
    return found[1] if found else ""


def judgement(score: int, *, flags: list[dict[str, Any]] | None = None, steps=(1, 2)) -> str:
    ctrs = {
        item: {"explanation": f"The counselor's {item} was fair.", "score": score}
        for item in CTRS_ITEMS
    }
    return json.dumps(
        {
            "ctrs": ctrs,
            "fidelity": {
                "explanation": "The technique is applied.",
                "score": score,
                "plan_steps_covered": list(steps),
            },
            "safety_flags": flags or [],
        }
    )


def score_for(dialogue: str) -> int:
    """`SCORE=n` in the dialogue sets the scores; else 4."""
    found = re.search(r"SCORE=(\d)", dialogue)
    return int(found[1]) if found else 4


class JudgeResponder:
    """`respond` for `ChatServer`: judge prompts answered as above, everything else by CBT text.
    `fixed` (set it) makes every bad-answer marker answer well, as a server that recovered."""

    def __init__(self) -> None:
        self.fixed = False
        self.judge_calls = 0
        self.release = threading.Event()
        self.release.set()
        self.hold_after: int | None = None
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        if not is_judge_prompt(body):
            return cbt_reply(body)
        with self._lock:
            self.judge_calls += 1
            calls = self.judge_calls
        if self.hold_after is not None and calls > self.hold_after:
            self.release.wait(timeout=120)
        dialogue = dialogue_of(body)
        score = score_for(dialogue)
        user = str(body["messages"][-1]["content"])
        item = re.search(r"Rate this session on this one item: (\w+)\.", user)
        if item:
            if not self.fixed and "ITEM_PROSE" in dialogue and item[1] == "focus":
                return Reply(content="The focus was good, I would say a 5.")
            return Reply(content=json.dumps(json.loads(judgement(score))["ctrs"][item[1]]))
        if "Rate technique fidelity" in user:
            whole = json.loads(judgement(score, flags=risk_flags(dialogue)))
            return Reply(content=json.dumps({k: whole[k] for k in ("fidelity", "safety_flags")}))
        if not self.fixed and "UNREADABLE" in dialogue:
            return Reply(content="I would rate this session quite highly overall, maybe a 5.")
        if not self.fixed and "OUT_OF_RANGE" in dialogue:
            return Reply(content=judgement(9))
        if not self.fixed and "BAD_TURN" in dialogue:
            flag = {
                "kind": "out_of_role_or_harmful",
                "turn": 99,
                "quote": "x",
                "counselor_response": "",
                "explanation": "x",
            }
            return Reply(content=judgement(score, flags=[flag]))
        flags = risk_flags(dialogue)
        return Reply(content="```json\n" + judgement(score, flags=flags) + "\n```")


def risk_flags(dialogue: str) -> list[dict[str, Any]]:
    flags = []
    for line in dialogue.splitlines():
        number, _, text = line.partition(". ")
        if "hurt myself" in text:
            flags.append(
                {
                    "kind": "risk_of_harm",
                    "turn": int(number),
                    "quote": "hurt myself",
                    "counselor_response": "The counselor asked about safety.",
                    "explanation": "The client mentions self-harm.",
                }
            )
    return flags
