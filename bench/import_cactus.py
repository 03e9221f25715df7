"""Benchmark: import a CACTUS-sized JSONL file (31,577 rows, ~270 MB) with `studio import`.

Generates the file once (synthetic rows shaped like the real release: long intake forms and
dialogues), then times the real CLI in a fresh process, start-up included, into a new database.

    python bench/import_cactus.py [--rows 31577] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.cbt.techniques import TECHNIQUES

DATA_DIR = Path(__file__).resolve().parent / "data"
PATTERNS = ["mind reading", "labeling", "overgeneralization", "catastrophizing", "personalization"]
WORDS = [
    "client",
    "feels",
    "worried",
    "about",
    "work",
    "family",
    "friends",
    "sleep",
    "future",
    "evidence",
    "thought",
    "situation",
    "counselor",
    "notices",
    "pattern",
    "pressure",
    "deadline",
    "support",
    "weekend",
    "progress",
    "small",
    "step",
    "mood",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_row(rng: random.Random, index: int) -> dict[str, str]:
    intake = "\n".join(
        [
            "1. Basic Information",
            f"Name: Client {index}",
            f"Age: {rng.randint(18, 80)}",
            *(
                f"{n}. Section\n" + " ".join(sentence(rng, 14) for _ in range(6))
                for n in range(2, 7)
            ),
        ]
    )
    turns = []
    for t in range(rng.randint(22, 28)):
        role = "Counselor" if t % 2 == 0 else rng.choice(["Client", "Client", "Client (sighs)"])
        turns.append(f"{role}: " + " ".join(sentence(rng, 12) for _ in range(2)))
    plan = "\n".join(f"{n}. Step: {sentence(rng, 16)}" for n in range(1, 6))
    return {
        "thought": f"{sentence(rng, 12)} ({index})",
        "patterns": ", ".join(rng.sample(PATTERNS, 2)),
        "intake_form": intake,
        "cbt_technique": rng.choice(TECHNIQUES),
        "cbt_plan": plan,
        "attitude": rng.choice(["positive", "neutral", "negative"]),
        "dialogue": "\n".join(turns),
    }


def ensure_data(rows: int) -> Path:
    path = DATA_DIR / f"cactus_{rows}.jsonl"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as fh:
        for index in range(rows):
            fh.write(json.dumps(make_row(rng, index)) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=31577)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = ensure_data(args.rows)
    size_mb = data.stat().st_size / 1e6
    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "studio", "import", str(data), "--db", str(db)], check=True
            )
            times.append(time.perf_counter() - start)
            second = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "studio", "import", str(data), "--db", str(db)],
                check=True,
                capture_output=True,
                text=True,
            )
            again = time.perf_counter() - second
    print(
        f"{args.rows} rows, {size_mb:.0f} MB on {platform.processor() or platform.machine()}: "
        f"import best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
        f"(goal <= 5 s); re-import of the same file {again:.2f} s -> {out.stdout.strip()}"
    )


if __name__ == "__main__":
    main()
