"""Benchmark: import a CACTUS-sized JSONL file (31,577 rows, ~270 MB) with `studio import`.

Generates the file once (synthetic rows shaped like the real release: long intake forms and
dialogues), then times the real CLI in a fresh process, start-up included, into a new database,
interleaved with its peers (`bench/import_peers.py`, each in a fresh process too): the plain-sqlite
floor (the same rows parsed from the same file, one `executemany` into one table) and `datasets` +
`sqlite-utils insert_all`. Prints medians and each one's ratio to the floor, for wall time and
for CPU time (user + system, which a machine busy with other work disturbs less).

    python bench/import_cactus.py [--rows 31577 100000] [--repeat 3] [--no-datasets]
        [--baseline /path/to/older/checkout] [--reimport]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.cbt.techniques import TECHNIQUES

DATA_DIR = Path(__file__).resolve().parent / "data"
PEERS = Path(__file__).resolve().parent / "import_peers.py"
REPO = Path(__file__).resolve().parent.parent
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


SECTIONS = (
    "Presenting Problem",
    "Reason for Seeking Counseling",
    "Past History",
    "Academic/Occupational Functioning Level",
    "Social Support System",
)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_row(rng: random.Random, index: int) -> dict[str, str]:
    intake = "\n".join(
        [
            "1. Basic Information",
            f"Name: Client {index}",
            f"Age: {rng.randint(18, 80)}",
            *(
                f"{n}. {name}\n" + " ".join(sentence(rng, 14) for _ in range(6))
                for n, name in enumerate(SECTIONS, start=2)
            ),
        ]
    )
    turns = []
    # Like CACTUS: the counselor opens and closes the session, so the rows pass the stage rule.
    for t in range(2 * rng.randint(11, 14)):
        role = "Counselor" if t % 2 == 0 else rng.choice(["Client", "Client", "Client (sighs)"])
        turns.append(f"{role}: " + " ".join(sentence(rng, 12) for _ in range(2)))
    turns.append("Counselor: " + sentence(rng, 10) + " Thank you, see you next week.")
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
    path = DATA_DIR / f"cactus_v2_{rows}.jsonl"  # v2: rows that pass the stage rule
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as fh:
        for index in range(rows):
            fh.write(json.dumps(make_row(rng, index)) + "\n")
    return path


def run_once(command: list[str], db: Path, pythonpath: Path = REPO) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Run from that checkout: `python -m` puts the working directory first on the path.
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=pythonpath)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return elapsed, cpu


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(
    rows: int, repeat: int, peers: list[str], baseline: Path | None, tmp: Path
) -> dict[str, list[tuple[float, float]]]:
    """Each tool once per round, in turn, so a busy machine slows them alike."""
    data = ensure_data(rows)
    db = tmp / "bench.db"
    studio = [sys.executable, "-m", "studio", "import", str(data), "--db", str(db)]
    runs: dict[str, tuple[list[str], Path]] = {"studio import": (studio, REPO)}
    if baseline is not None:
        runs["studio (baseline)"] = (studio, baseline)
    for name in peers:
        runs[name] = ([sys.executable, str(PEERS), name, str(data), str(db)], REPO)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (command, pythonpath) in runs.items():
            times[name].append(run_once(command, db, pythonpath))
    return times


def reimport_seconds(rows: int, tmp: Path) -> float:
    db = tmp / "again.db"
    command = [sys.executable, "-m", "studio", "import", str(ensure_data(rows)), "--db", str(db)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=REPO)
    return run_once(command, db)[0]  # the second import of the same file (then deleted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[31577, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-datasets", action="store_true", help="leave out the datasets + sqlite-utils peer"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also time `studio import` from another checkout of the project (before/after)",
    )
    parser.add_argument("--reimport", action="store_true", help="also time a re-import")
    args = parser.parse_args()
    peers = ["floor"] if args.no_datasets else ["floor", "datasets"]
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    print(
        f"{time.strftime('%Y-%m-%d')}, {machine}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; medians of {args.repeat} interleaved runs"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for rows in args.rows:
            times = measure(rows, args.repeat, peers, args.baseline, tmp)
            size_mb = ensure_data(rows).stat().st_size / 1e6
            floor_wall = median([wall for wall, _ in times["floor"]])
            floor_cpu = median([cpu for _, cpu in times["floor"]])
            print(f"{rows:,} rows, {size_mb:.0f} MB:")
            for tool, values in times.items():
                wall = median([w for w, _ in values])
                cpu = median([c for _, c in values])
                print(
                    f"  {tool:17s} wall {wall:6.2f} s {wall / floor_wall:5.2f}x floor"
                    f" | CPU {cpu:6.2f} s {cpu / floor_cpu:5.2f}x floor"
                    f"  (wall {', '.join(f'{w:.2f}' for w, _ in values)})"
                )
            if args.reimport:
                print(
                    f"  re-import of the same file (all duplicates): {reimport_seconds(rows, tmp):.2f} s"
                )


if __name__ == "__main__":
    main()
