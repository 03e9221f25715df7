"""Benchmark: synthesis throughput and rate-limit behaviour against a loopback server.

1. latency: N seeds through all four stages against a server with fixed latency (0.3 s), with the
   real `studio synth` CLI at default settings (start-up included), compared with the seed
   notebook's sequential loop (one call after another, same server, same number of calls).
   Goal: >= 10x.
2. buckets: the server enforces an RPM/TPM limit as token buckets holding only 3 s of the rate
   (how providers enforce a per-minute limit), charging each request its prompt plus the
   `max_tokens` it asks for; the CLI runs with the same `--rpm/--tpm`. At 30 RPM, at 600 RPM and
   token-bound: what the server admitted after its first 3 s, as a share of the binding limit
   over the same time (goal >= 90%), and the share of requests answered 429 (goal <= 2%).
3. sliding: the same against a server that counts over a sliding minute. Measured the way that
   server counts: the mean, over every full one-minute window of the run, of what was admitted as
   a share of the binding limit.

    python bench/synth.py [--seeds 48] [--latency 0.3] [--bucket-seconds 60]
                          [--sliding-seconds 90] [--part latency|buckets|sliding|all]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402

from studio.ingest.load import add_rows  # noqa: E402
from studio.model import Seed  # noqa: E402
from studio.store import Store  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402


def make_db(path: Path, seeds: int) -> None:
    with Store(path) as store:
        add_rows(
            store,
            [
                Seed(
                    f"I am a nurse on night shifts, client {n}.",
                    f"If I make one mistake at work, someone will get hurt and it will be my fault ({n}).",
                    ("Catastrophizing", "Personalization"),
                    ("Checks exist for a reason.", "I am careful and trained."),
                )
                for n in range(seeds)
            ],
        )


def studio_synth(db: Path, server: ChatServer, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "studio", "synth", "--db", str(db), "--backend", "openai",
        "--base-url", server.openai_base_url, "--model", "bench-model", *extra,
    ]  # fmt: skip


def sequential_loop(server: ChatServer, bodies: list[dict[str, Any]]) -> float:
    """The seed notebook's shape: each call waits for the previous one."""
    client = OpenAI(api_key="x", base_url=server.openai_base_url, max_retries=0)
    started = time.perf_counter()
    for body in bodies:
        client.chat.completions.create(model="bench-model", messages=body["messages"])
    return time.perf_counter() - started


def bench_latency(seeds: int, latency: float) -> str:
    with tempfile.TemporaryDirectory() as tmp, ChatServer(latency=latency) as server:
        db = Path(tmp) / "bench.db"
        make_db(db, seeds)
        started = time.perf_counter()
        subprocess.run(studio_synth(db, server), check=True, capture_output=True)
        ours = time.perf_counter() - started
        bodies = list(server.bodies)
        theirs = sequential_loop(server, bodies)
        with Store(db) as store:
            generated = store.stats()["stages"]["generated"]
    return (
        f"latency {latency} s, {seeds} seeds, {len(bodies)} calls ({generated} stages generated): "
        f"studio synth {ours:.1f} s (CLI start-up included) vs sequential loop {theirs:.1f} s "
        f"-> {theirs / ours:.1f}x"
    )


def run_limited(server: ChatServer, rpm: int, tpm: int, seconds: float) -> float:
    """`studio synth --rpm --tpm` for `seconds`, then Ctrl-C; returns when it was stopped."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        make_db(db, 600)
        proc = subprocess.Popen(
            studio_synth(db, server, "--rpm", str(rpm), "--tpm", str(tpm)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(seconds)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    return stopped


def bench_bucket(rpm: int, tpm: int, seconds: float, latency: float, hold: float = 3.0) -> str:
    with ChatServer(
        latency=latency, rpm=rpm, tpm=tpm, bucket_s=hold, charge_max_tokens=True
    ) as server:
        stopped = run_limited(server, rpm, tpm, seconds)
        admitted = list(server.admitted)
        total, limited = server.stats.requests, server.stats.rate_limited
    # A bucket starts full: what it held at the start is not rate; count from `hold` s in.
    start = admitted[0][0] + hold
    span = stopped - start
    counted = [n for t, n in admitted if start <= t < stopped]
    req_share = len(counted) / (rpm / 60 * span)
    tok_share = sum(counted) / (tpm / 60 * span)
    binding = "tokens" if tok_share >= req_share else "requests"
    return (
        f"bucket ({hold:g} s) {rpm} RPM / {tpm:,} TPM, {seconds:.0f} s run, latency {latency} s: "
        f"{req_share:.1%} of the RPM and {tok_share:.1%} of the TPM used (binding: {binding}); "
        f"{limited}/{total} requests answered 429 ({limited / max(total, 1):.2%})"
    )


def bench_sliding(rpm: int, tpm: int, seconds: float, latency: float) -> str:
    with ChatServer(latency=latency, rpm=rpm, tpm=tpm) as server:
        run_limited(server, rpm, tpm, seconds)
        admitted = list(server.admitted)
        total, limited = server.stats.requests, server.stats.rate_limited
    # Providers count over a sliding minute, so the share of the limit is measured the same way:
    # for every full one-minute window in the run (starting each second), what was admitted in it
    # as a share of the limit; averaged.
    first, last = admitted[0][0], admitted[-1][0]
    starts = [first + i for i in range(int(last - first - 60) + 1)]
    windows = [[n for t, n in admitted if s <= t < s + 60] for s in starts]
    req_share = sum(len(w) for w in windows) / (len(windows) * rpm) if windows else 0.0
    tok_share = sum(sum(w) for w in windows) / (len(windows) * tpm) if windows else 0.0
    binding = "tokens" if tok_share >= req_share else "requests"
    return (
        f"sliding minute {rpm} RPM / {tpm:,} TPM, {seconds:.0f} s run, latency {latency} s: per "
        f"sliding minute, {req_share:.1%} of the RPM and {tok_share:.1%} of the TPM used (binding: "
        f"{binding}); {limited}/{total} requests answered 429 ({limited / max(total, 1):.2%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--bucket-seconds", type=float, default=60)
    parser.add_argument("--sliding-seconds", type=float, default=90)
    parser.add_argument("--part", choices=["latency", "buckets", "sliding", "all"], default="all")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores")
    if args.part in ("latency", "all"):
        print(bench_latency(args.seeds, args.latency))
    if args.part in ("buckets", "all"):
        print(bench_bucket(30, 1_000_000, args.bucket_seconds, args.latency))  # requests bind
        print(bench_bucket(600, 1_000_000, args.bucket_seconds, args.latency))  # requests bind
        print(bench_bucket(600, 120_000, args.bucket_seconds, args.latency))  # tokens bind
    if args.part in ("sliding", "all"):
        print(bench_sliding(30, 200_000, args.sliding_seconds, args.latency))  # requests bind
        print(bench_sliding(600, 60_000, args.sliding_seconds, args.latency))  # tokens bind


if __name__ == "__main__":
    main()
