"""Benchmark: simulated evaluation sessions per minute, the local counselor batched or not.

    python bench/eval.py                    # CPU: the tiny random Llama with a 2-step adapter
    python bench/eval.py --sessions 16 --exchanges 5 --max-tokens 64

Nothing is downloaded. A tiny random Llama (`tests/tiny_model.py`) is trained for two steps on
demo-shaped records (`studio train`, the product's path) so that the counselor is a real adapter
in its trained format; a loopback chat-completions server (`tests/chat_server.py`) plays the
client and the judge (and rates PANAS) with no latency, so what is timed is the counselor. Each
mode runs on a fresh copy of the database (no cached answer), in this process, after the model is
loaded once (a warm-up session), and counts finished sessions per minute of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.ingest.formats import parse_cactus  # noqa: E402
from studio.ingest.load import add_rows  # noqa: E402
from studio.model import BackendName  # noqa: E402
from studio.store import Store  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402
from tests.conftest import cactus_row  # noqa: E402
from tests.test_eval import EvalResponder  # noqa: E402
from tests.tiny_model import build_tiny_llama  # noqa: E402


def clients(path: Path, n: int) -> Path:
    entries = [
        {
            "AI_client": {
                "intake_form": f"1. Basic Information\nName: Client {i}\nAge: {20 + i}\n\n"
                "2. Presenting Problem\nThey keep thinking they will fail.",
                "attitude": ("positive", "neutral", "negative")[i % 3],
                "dialogue_history_init": "Counselor: Hi, what brings you here today?\n"
                f"Client: I am sure I will fail ({i}).",
            }
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(entries))
    return path


def evaluate(
    db: Path, clients_path: Path, url: str, args: argparse.Namespace, batch: bool
) -> float:
    from studio.evaluate.clients import file_clients
    from studio.evaluate.engine import EvalPlan
    from studio.evaluate.launch import find_run, prepare, run_counselor, run_evaluation
    from studio.synth import SynthSettings

    agent = SynthSettings(backend=BackendName.OPENAI, model="loopback", base_url=url)
    with Store(db) as store:
        counselor = run_counselor(find_run(store, 1), temperature=0.7, max_tokens=args.max_tokens)
        plan = EvalPlan(
            tuple(file_clients(clients_path)), args.exchanges, 2 * args.exchanges + 2, "bench"
        )
        prepared = prepare(store, counselor, plan, agent, agent)
        started = time.perf_counter()
        progress = run_evaluation(store, prepared, concurrency=args.concurrency, batch=batch)
        elapsed = time.perf_counter() - started
    assert progress.failed == 0 and progress.done == len(plan.clients), progress
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--exchanges", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=12)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    try:
        model = build_tiny_llama(folder / "model")
        db = folder / "studio.db"
        with Store(db) as store:
            add_rows(store, [parse_cactus(cactus_row(n)) for n in range(6)], accepted_by="bench")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [sys.executable, "-m", "studio", "train", "--db", str(db), "--base-model", str(model),
             "--output", str(folder / "run"), "--max-steps", "2", "--events"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        with ChatServer(EvalResponder()) as server:
            warm = folder / "warm.db"
            shutil.copy(db, warm)
            evaluate(warm, clients(folder / "one.json", 1), server.openai_base_url, args, True)
            many = clients(folder / "clients.json", args.sessions)
            results = {}
            for batch in (False, True):
                copy = folder / f"run-{batch}.db"
                shutil.copy(db, copy)
                elapsed = evaluate(copy, many, server.openai_base_url, args, batch)
                results[batch] = args.sessions / elapsed * 60
                print(
                    f"{'batched' if batch else 'one at a time'}: {args.sessions} sessions in"
                    f" {elapsed:.1f} s = {results[batch]:.1f} sessions/min"
                )
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores;"
            f" {args.exchanges} exchanges, counselor max {args.max_tokens} tokens,"
            f" concurrency {args.concurrency}; batched/one at a time:"
            f" {results[True] / results[False]:.2f}x"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
