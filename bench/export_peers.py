"""The plain dumps `bench/export.py` times `studio export` against, each run in a fresh process.

    python bench/export_peers.py cactus DB OUT   # the seven CACTUS columns of accepted records
    python bench/export_peers.py sft DB OUT      # one prompt/completion row per counselor turn

Both are the floor of the issue: plain `sqlite3` and `orjson`, one SELECT of the same accepted
records (the reviewer's edit wins: `coalesce(edited_text, original_text)`) in id order, one
`orjson.dumps` per line into a plain buffered file. No atomic rename, no fsync, no checks.

`sft` writes the same rows as `studio export --format sft-jsonl` for the bench's dialogues (same
number of examples, same keys, same system prompt, the dialogue so far as the prompt): each
dialogue line `Speaker: words` is one message (`Counselor…` → assistant, anything else → user),
every assistant message after the first two is one example. It skips what the studio does on
top: the dialogue parser (stage directions, merged turns, narration), the validation split (every
row says `train`, in one pass; the studio reads the records twice and holds the validation rows
back), so its output is a few bytes shorter per client turn with a stage direction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

SYSTEM_PROMPT = (
    "You are a counselor trained in cognitive behavioral therapy (CBT). Continue the counseling "
    "session: reply to the client with the counselor's next turn."
)


def _text(stage: str) -> str:
    return (
        f"(SELECT coalesce(edited_text, original_text, '') FROM stages"
        f" WHERE record_id = r.id AND name = '{stage}')"
    )


CACTUS_SELECT = (
    "SELECT s.thought, s.patterns, "
    + ", ".join(_text(stage) for stage in ("intake_form", "cbt_technique", "cbt_plan"))
    + ", r.attitude, "
    + _text("dialogue")
    + " FROM records r JOIN seeds s ON s.id = r.seed_id WHERE r.status = 'accepted' ORDER BY r.id"
)
SFT_SELECT = (
    f"SELECT r.id, {_text('dialogue')} FROM records r WHERE r.status = 'accepted' ORDER BY r.id"
)


def cactus(db: str, out: str) -> None:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with Path(out).open("wb") as fh:
        for thought, patterns, intake, technique, plan, attitude, dialogue in conn.execute(
            CACTUS_SELECT
        ):
            row = {
                "thought": thought,
                "patterns": ", ".join(orjson.loads(patterns)),
                "intake_form": intake,
                "cbt_technique": technique,
                "cbt_plan": plan,
                "attitude": attitude,
                "dialogue": dialogue,
            }
            fh.write(orjson.dumps(row) + b"\n")


def sft(db: str, out: str) -> None:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    system = {"role": "system", "content": SYSTEM_PROMPT}
    with Path(out).open("wb") as fh:
        for record_id, dialogue in conn.execute(SFT_SELECT):
            messages = []
            for line in dialogue.splitlines():
                speaker, _, words = line.partition(":")
                role = "assistant" if speaker.startswith("Counselor") else "user"
                messages.append({"role": role, "content": words.strip()})
            for index, message in enumerate(messages):
                if index < 2 or message["role"] != "assistant":
                    continue
                row = {
                    "prompt": [system, *messages[:index]],
                    "completion": [message],
                    "record_id": record_id,
                    "turn": index + 1,
                    "split": "train",
                }
                fh.write(orjson.dumps(row) + b"\n")


if __name__ == "__main__":
    kind, database, target = sys.argv[1:4]
    {"cactus": cactus, "sft": sft}[kind](database, target)
