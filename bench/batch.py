"""Benchmark: batch synthesis against a loopback files + batches server, and what a CACTUS-sized
run would cost as batches against live calls.

1. loopback: N seeds through the real `studio synth --batch --wait` CLI (start-up included)
   against `tests/batch_server.py`, which moves a batch one status per poll. Reports the requests,
   batches, polls and wall time.
2. estimate: a database with CACTUS's 31,577 seeds (seed texts of PatternReframe's size), the
   `--dry-run` estimate (`studio.synth.batch.estimate`: prompt tokens from the real templates,
   completion tokens of typical stage sizes), priced at `--price-in/--price-out` (USD per
   million tokens, live) and at the batch share (half); plus how long the live run would take at
   the developer tier's 250K tokens per minute.
3. first round: the first `--batch` run on those 31,577 seeds (every intake form rendered,
   recorded, uploaded and submitted), timed.

    python bench/batch.py [--seeds 50] [--cactus 31577] [--price-in 0.15] [--price-out 0.60]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.ingest.load import add_rows  # noqa: E402
from studio.model import BackendName, Seed  # noqa: E402
from studio.store import Store  # noqa: E402
from studio.synth.batch_api import MAX_BYTES, MAX_REQUESTS  # noqa: E402
from studio.synth.batch_estimate import estimate  # noqa: E402
from studio.synth.settings import SynthSettings  # noqa: E402
from tests.batch_server import BatchServer  # noqa: E402


def seeds(count: int) -> list[Seed]:
    return [
        Seed(
            f"I work night shifts as a nurse and look after my mother on weekends, client {n}.",
            f"If I make one mistake at work, someone will get hurt and it will be my fault ({n}).",
            ("Catastrophizing", "Personalization"),
            ("Checks exist for a reason.", "I am careful and trained."),
        )
        for n in range(count)
    ]


def loopback(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        with Store(db) as store:
            add_rows(store, seeds(count))
        with BatchServer() as server:
            command = [
                sys.executable, "-m", "studio", "synth", "--db", str(db), "--backend", "openai",
                "--base-url", server.openai_base_url, "--model", "bench-model", "--wait",
                "--poll-interval", "0.05",
            ]  # fmt: skip
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
        with Store(db) as store:
            generated = store.conn.execute(
                "SELECT COUNT(*) FROM stages WHERE status = 'generated'"
            ).fetchone()[0]
    print(
        f"loopback: {count} seeds, {len(server.requests_seen)} requests in"
        f" {server.stats.creates} batches, {server.stats.retrieves} polls,"
        f" {generated} stages generated, {wall:.1f} s wall (CLI start-up included)"
    )


def cactus_first_round(count: int) -> None:
    """The first `studio synth --batch` at CACTUS scale: every intake form rendered, written to
    the database, uploaded and submitted (in-process, against the loopback server)."""
    import asyncio

    from studio.synth.batch import BatchSynthesizer
    from studio.synth.batch_api import BatchClient

    async def submit(store: Store, server: BatchServer) -> tuple[int, int]:
        settings = SynthSettings(
            backend=BackendName.OPENAI, model="bench-model", base_url=server.openai_base_url
        ).validate()
        client = BatchClient(settings)
        try:
            summary = await BatchSynthesizer(store, client, settings).run()
        finally:
            await client.aclose()
        return summary.submitted, summary.batches_submitted

    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "first.db") as store:
        add_rows(store, seeds(count))
        with BatchServer() as server:
            started = time.monotonic()
            submitted, batches = asyncio.run(submit(store, server))
            took = time.monotonic() - started
            size = sum(len(data) for _, data in server.files.values())
    print(
        f"first round: {submitted:,} intake requests in {batches} batch(es),"
        f" {size / 2**20:,.0f} MiB of JSONL, submitted in {took:.1f} s"
    )


def cactus_estimate(count: int, price_in: float, price_out: float, tpm: int) -> None:
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "cactus.db") as store:
        add_rows(store, seeds(count))
        settings = SynthSettings(
            backend=BackendName.GROQ,
            model="openai/gpt-oss-120b",
            price_in=price_in,
            price_out=price_out,
        )
        started = time.monotonic()
        found = estimate(store, settings)
        took = time.monotonic() - started
    live = found.price(settings, batch=False) or 0.0
    batch = found.price(settings, batch=True) or 0.0
    tokens = found.tokens_in + found.tokens_out
    per_stage = max(found.requests.values())
    # A request line: its prompt (about 4 characters a token, JSON-escaped) and ~250 bytes of
    # envelope and parameters; the dialogue stage, which quotes the upstream texts, is the biggest.
    biggest = max(found.stage_tokens_in.values()) * 4 * 1.05 + 250 * per_stage
    batches = max(-(-per_stage // MAX_REQUESTS), -(-int(biggest) // MAX_BYTES))
    print(
        f"estimate: {count:,} seeds -> {found.total_requests:,} requests"
        f" ({per_stage:,} per stage; the biggest stage's file {biggest / 2**20:,.0f} MiB:"
        f" {batches} batch(es) at most per stage),"
        f" {found.tokens_in:,} tokens in + {found.tokens_out:,} out (estimated in {took:.1f} s)"
    )
    print(
        f"price at ${price_in}/M in, ${price_out}/M out: live ${live:,.2f}, batch ${batch:,.2f}"
        f" (saves ${live - batch:,.2f})"
    )
    print(
        f"live at {tpm:,} TPM: {tokens / tpm / 60:.1f} h of rate-limited calls;"
        " batches: 4 stages, each within the completion window (24 h at most)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--cactus", type=int, default=31_577)
    parser.add_argument("--price-in", type=float, default=0.15)
    parser.add_argument("--price-out", type=float, default=0.60)
    parser.add_argument("--tpm", type=int, default=250_000)
    args = parser.parse_args()
    print(
        f"{platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    loopback(args.seeds)
    cactus_first_round(args.cactus)
    cactus_estimate(args.cactus, args.price_in, args.price_out, args.tpm)


if __name__ == "__main__":
    main()
