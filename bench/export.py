"""Benchmark: `studio export` (sft-jsonl and cactus-jsonl) of 31,577 and 100,000 accepted records.

    python bench/export.py [--records 31577 100000] [--repeat 3] [--baseline /older/checkout]

Builds `bench/data/export_<N>.db` once: the CACTUS-shaped file of `bench/import_cactus.py`
imported with `studio import --status accepted` (every record accepted, so all of them export).
Then, in rounds, runs each tool once in a fresh process, interleaved so a busy machine slows them
alike: `python -m studio export --format sft-jsonl`, the plain sft dump, `studio export --format
cactus-jsonl`, the plain cactus dump (`bench/export_peers.py`, which says exactly what the plain
dumps do). For each it prints the medians of wall time, CPU time (user + system of the process,
which other work on the machine disturbs less) and peak RSS (`wait4`'s `ru_maxrss`), the ratios
to the plain dump of the same rows, the output's size, and the load average before and after.
Every output is deleted after its run (the sft file of 100k records is gigabytes).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from import_cactus import DATA_DIR, ensure_data  # bench/ is on sys.path when run as a script

PEERS = Path(__file__).resolve().parent / "export_peers.py"
REPO = Path(__file__).resolve().parent.parent


def ensure_db(records: int) -> Path:
    """A database of `records` accepted records, built once with the real `studio import`."""
    db = DATA_DIR / f"export_{records}.db"
    if db.exists():
        return db
    data = ensure_data(records)
    part = db.with_name(db.name + ".part")
    part.unlink(missing_ok=True)
    command = [sys.executable, "-m", "studio", "import", str(data), "--db", str(part)]
    command += ["--status", "accepted", "--reviewer", "bench"]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    conn = sqlite3.connect(part)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()  # the last connection: SQLite removes the -wal and -shm files
    part.rename(db)
    return db


def run_once(command: list[str], out: Path, cwd: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and output bytes of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with {proc.returncode}")
    size = out.stat().st_size
    out.unlink()
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, size


def commands(db: Path, out: Path, baseline: Path | None) -> dict[str, tuple[list[str], Path]]:
    def studio(fmt: str) -> list[str]:
        command = [sys.executable, "-m", "studio", "export", str(out), "--db", str(db)]
        return [*command, "--format", fmt, "--force"]

    def peer(kind: str) -> list[str]:
        return [sys.executable, str(PEERS), kind, str(db), str(out)]

    runs = {"studio sft-jsonl": (studio("sft-jsonl"), REPO), "plain sft dump": (peer("sft"), REPO)}
    if baseline is not None:
        runs["baseline sft-jsonl"] = (studio("sft-jsonl"), baseline)
    runs["studio cactus-jsonl"] = (studio("cactus-jsonl"), REPO)
    runs["plain cactus dump"] = (peer("cactus"), REPO)
    if baseline is not None:
        runs["baseline cactus-jsonl"] = (studio("cactus-jsonl"), baseline)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[31577, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="also time `studio export` from another checkout"
    )
    args = parser.parse_args()
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    print(
        f"{time.strftime('%Y-%m-%d')}, {machine}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; medians of {args.repeat} interleaved runs; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as name:  # ignored by git
        out = Path(name) / "export.jsonl"
        for records in args.records:
            db = ensure_db(records)
            runs = commands(db, out, args.baseline)
            results: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in runs}
            for _ in range(args.repeat):
                for tool, (command, cwd) in runs.items():
                    results[tool].append(run_once(command, out, cwd))
            print(f"{records:,} accepted records (load average {os.getloadavg()[0]:.2f}):")
            for tool, values in results.items():
                wall, cpu, rss = (statistics.median(v[i] for v in values) for i in range(3))
                floor = results["plain sft dump" if "sft" in tool else "plain cactus dump"]
                floor_wall = statistics.median(v[0] for v in floor)
                floor_cpu = statistics.median(v[1] for v in floor)
                print(
                    f"  {tool:21s} wall {wall:6.2f} s {wall / floor_wall:5.2f}x"
                    f" | CPU {cpu:6.2f} s {cpu / floor_cpu:5.2f}x"
                    f" | peak RSS {rss:6.0f} MiB | {values[0][3] / 2**20:6.0f} MiB out"
                    f"  (wall {', '.join(f'{v[0]:.2f}' for v in values)})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
