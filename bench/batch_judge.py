"""`studio judge --batch --wait` over the loopback files + batches server: how long a judge pass
through batches takes end to end (CLI start-up, rendering, upload, polls, reading and storing
every answer), and what the server was sent.

    python bench/batch_judge.py [--records 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.ingest.load import add_rows  # noqa: E402
from studio.model import CactusRow, Seed, Stage  # noqa: E402
from studio.store import Store  # noqa: E402
from tests.batch_server import BatchServer  # noqa: E402
from tests.conftest import INTAKE_FORM, PLAN  # noqa: E402
from tests.judge_server import JudgeResponder  # noqa: E402
from tests.test_judge import dialogue  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        with Store(db) as store:
            add_rows(
                store,
                [
                    CactusRow(
                        Seed(f"persona {n}", f"I will fail ({n}).", ("Catastrophizing",), ()),
                        {
                            Stage.INTAKE_FORM: INTAKE_FORM,
                            Stage.CBT_TECHNIQUE: "Decatastrophizing",
                            Stage.CBT_PLAN: PLAN,
                            Stage.DIALOGUE: dialogue(f"({n})", risk=n % 10 == 0),
                        },
                        "neutral",
                    )
                    for n in range(args.records)
                ],
            )
        with BatchServer(JudgeResponder()) as server:
            command = [
                sys.executable, "-m", "studio", "judge", "--db", str(db), "--backend", "openai",
                "--base-url", server.openai_base_url, "--model", "bench-model", "--batch",
                "--wait", "--poll-interval", "0.05",
            ]  # fmt: skip
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
        with Store(db) as store:
            scored = store.conn.execute(
                "SELECT COUNT(*) FROM judge_scores WHERE status = 'scored'"
            ).fetchone()[0]
    size = sum(len(data) for name, data in server.files.values() if name != "output.jsonl")
    print(
        f"judge --batch --wait: {args.records} records, {len(server.requests_seen)} requests in"
        f" {server.stats.creates} batch(es), {server.stats.retrieves} polls, {scored} scored,"
        f" {wall:.1f} s wall (CLI start-up included), input files {size / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
