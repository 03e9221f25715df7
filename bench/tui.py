"""Benchmark: the review app on a 100k-record database.

    python bench/tui.py [--records 100000] [--starts 5] [--samples 200] [--with-synth]

Builds `bench/data/tui_<N>.db` once (CACTUS-shaped rows through `add_rows`; a tenth
already accepted, so the queue shows mixed statuses), then measures:

1. time to first record on screen: `studio review` in a fresh process on a pseudo-terminal, from
   spawning it until the first record's thought has been written to the terminal (process
   start-up, imports, opening the database, the first queue page and the first frame). Goal 1.0 s.
2. next-record latency: in the running app, from the `n` key event until the frame showing the
   next record has been rendered. Goal 30 ms.
3. key press -> decision persisted: from the `a` key event until another connection to the
   database sees the stage accepted. Goal 10 ms.

With `--with-synth` the three are measured twice in one run on a copy of the database: first
idle, then with a real `studio synth` process writing to the same database (new seeds, four
stages each, from a loopback chat-completions server in its own process, `tests/chat_server.py`,
0.3 s per answer, default concurrency), as when a clinician reviews while a batch is generated.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import platform
import pty
import random
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

from import_cactus import DATA_DIR, SECTIONS, sentence  # bench/ is on sys.path when run as a script

from studio.cbt.techniques import TECHNIQUES
from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage
from studio.store import Store

REPO = Path(__file__).resolve().parent.parent
MARKER = "Bench thought number"
COLUMNS, ROWS = 120, 40


def _row(rng: random.Random, pool: list[str], index: int) -> CactusRow:
    def para(n: int) -> str:
        return " ".join(rng.choice(pool) for _ in range(n))

    intake = "\n".join(
        [
            "1. Basic Information",
            f"Name: Client {index}",
            f"Age: {rng.randint(18, 80)}",
            *(f"{n}. {name}\n{para(4)}" for n, name in enumerate(SECTIONS, start=2)),
        ]
    )
    turns = [
        f"{'Counselor' if t % 2 == 0 else 'Client'}: {para(2)}"
        for t in range(2 * rng.randint(10, 13))
    ]
    # Rows that pass the stage rule, as in CACTUS (else `a` refuses: the stage is invalid).
    turns.append("Counselor: Thank you, see you next week.")
    return CactusRow(
        Seed(
            persona=f"Persona {index}: {para(2)}",
            thought=f"{MARKER} {index + 1:06d}: {para(1)}",
            patterns=("Catastrophizing", "Labeling"),
            reframes=(para(1), para(1)),
        ),
        {
            Stage.INTAKE_FORM: intake,
            Stage.CBT_TECHNIQUE: TECHNIQUES[index % len(TECHNIQUES)],
            Stage.CBT_PLAN: "\n".join(f"{n}. {para(1)}" for n in range(1, 6)),
            Stage.DIALOGUE: "\n".join(turns),
        },
        rng.choice(["positive", "neutral", "negative"]),
    )


def ensure_database(records: int) -> Path:
    path = DATA_DIR / f"tui_v2_{records}.db"  # v2: rows that pass the stage rule
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    for leftover in DATA_DIR.glob(partial.name + "*"):
        leftover.unlink()
    rng = random.Random(11)
    pool = [sentence(rng, 12) for _ in range(2000)]
    started = time.perf_counter()
    with Store(partial) as store:
        batch = 5000
        for start in range(0, records, batch):
            rows = [_row(rng, pool, i) for i in range(start, min(start + batch, records))]
            # The first tenth arrives already reviewed: the queue shows mixed statuses.
            accepted_by = "bench" if start < records // 10 else None
            add_rows(store, rows, source="bench", accepted_by=accepted_by)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.rename(path)
    print(f"built {path.name}: {records:,} records in {time.perf_counter() - started:.1f} s")
    return path


# -- 1. time to first record on screen ----------------------------------------------------------


def first_record_on_screen(db: Path, first_thought: str) -> float:
    """Seconds from spawning `studio review` on a pseudo-terminal to the first record shown."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    env.pop("TEXTUAL", None)
    needle = first_thought.encode()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "review", "--db", str(db), "--reviewer", "bench"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    elapsed = float("nan")
    try:
        while time.perf_counter() - started < 30:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen = seen[-4096:] + chunk
            if needle in seen:
                elapsed = time.perf_counter() - started
                break
        os.write(master, b"\x11")  # ctrl+q
        deadline = time.perf_counter() + 10
        while proc.poll() is None and time.perf_counter() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return elapsed


# -- 2 and 3: inside a running app --------------------------------------------------------------


async def in_app(db: Path, samples: int) -> tuple[list[float], list[float]]:
    from studio.tui.startup import configure_process

    configure_process()  # as `studio review` does, before textual reads the frame rate
    from studio.tui import make_app

    from textual import events  # isort: skip
    from studio.tui.screens.review import ReviewScreen
    from studio.tui.settings import ReviewSettings

    reviewer = "bench"
    app = make_app(
        db,
        reviewer=reviewer,
        settings=ReviewSettings(reviewer=reviewer, cursor_blink=False, refresh_interval=None),
    )
    frames: list[float] = []
    display = app._display

    def counting_display(screen: Any, renderable: Any) -> None:
        frames.append(time.perf_counter())
        display(screen, renderable)

    app._display = counting_display  # type: ignore[method-assign]
    watcher = sqlite3.connect(db, check_same_thread=False)
    next_ms: list[float] = []
    persist_ms: list[float] = []

    async def key(name: str) -> float:
        assert app._driver is not None
        started = time.perf_counter()
        app._driver.send_message(events.Key(name, name))
        return started

    async def idle(pilot: Any) -> None:
        await app.workers.wait_for_complete()
        await pilot.pause()

    async with app.run_test(size=(COLUMNS, ROWS)) as pilot:
        await idle(pilot)
        await pilot.press("f")  # records in review: every stage awaits a decision
        await idle(pilot)
        await pilot.press("pagedown", "pagedown", "pagedown")  # start well inside the queue
        await pilot.press("enter")
        await idle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen)

        for _ in range(samples):
            before = screen.record_id
            frames.clear()
            started = await key("n")
            while screen.record_id == before:
                await asyncio.sleep(0)
            shown = len(frames)
            while len(frames) == shown:
                await asyncio.sleep(0)
            next_ms.append((frames[-1] - started) * 1000)
            await idle(pilot)

        for _ in range(samples // 4):
            record_id = screen.record_id
            for stage in Stage:
                # Another connection, on its own thread, watches for the row: the app's event
                # loop (rendering the next frame) must not delay the observation itself.
                seen = threading.Event()
                seen_at: list[float] = []

                def watch(
                    record_id: int = record_id,
                    stage: Stage = stage,
                    seen: threading.Event = seen,
                    seen_at: list[float] = seen_at,
                ) -> None:
                    while not seen.is_set():
                        row = watcher.execute(
                            "SELECT status FROM stages WHERE record_id = ? AND name = ?",
                            (record_id, stage.value),
                        ).fetchone()
                        if row[0] == "accepted":
                            seen_at.append(time.perf_counter())
                            seen.set()
                        else:
                            time.sleep(0.0002)

                thread = threading.Thread(target=watch, daemon=True)
                thread.start()
                started = await key("a")
                while not seen.is_set():
                    await asyncio.sleep(0.001)
                thread.join()
                persist_ms.append((seen_at[0] - started) * 1000)
                await idle(pilot)  # a person takes longer than this between two keys
            before = screen.record_id
            await pilot.press("n")
            while screen.record_id == before:
                await asyncio.sleep(0)
            await idle(pilot)
    watcher.close()
    return next_ms, persist_ms


# -- the same, with `studio synth` writing beside it ------------------------------------------

SERVER = """
import sys
from tests.chat_server import ChatServer
with ChatServer(latency=float(sys.argv[1])) as server:
    print(server.openai_base_url, flush=True)
    sys.stdin.read()  # until the bench closes the pipe
"""


class SynthBeside:
    """`studio synth` on `seeds` new seeds of `db`, answered by a chat server in its own process
    (in the bench's process its threads would take the GIL from the app being measured)."""

    def __init__(self, db: Path, seeds: int, latency: float) -> None:
        with Store(db) as store:
            add_rows(
                store,
                [
                    Seed(
                        f"Synth persona {n}",
                        f"Synth thought {n}: I will let everyone down.",
                        ("Catastrophizing",),
                        ("I have managed before.",),
                    )
                    for n in range(seeds)
                ],
            )
            self.records_before = store.stats()["records"]
        self.db = db
        env = os.environ | {"PYTHONPATH": str(REPO)}
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # connections reset when synth is stopped
            cwd=REPO,
            env=env,
        )
        assert self.server.stdout is not None
        url = self.server.stdout.readline().decode().strip()
        self.synth = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "studio",
                "synth",
                "--db",
                str(db),
                "--backend",
                "openai",
                "--base-url",
                url,
                "--model",
                "bench-model",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env | {"OPENAI_API_KEY": "bench"},
        )

    def stages_written(self) -> int:
        """Stages `studio synth` has finished so far (read by another connection)."""
        conn = sqlite3.connect(self.db)
        try:
            row = conn.execute(
                "SELECT count(*) FROM stages WHERE model = 'bench-model' AND status = 'generated'"
            ).fetchone()
        finally:
            conn.close()
        return int(row[0])

    def wait_until_writing(self, timeout: float = 60) -> None:
        deadline = time.perf_counter() + timeout
        while self.stages_written() < 50:
            if self.synth.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"studio synth is not writing (exit {self.synth.poll()})")
            time.sleep(0.2)

    def stop(self) -> int:
        """Stop both processes; returns the stages written."""
        running = self.synth.poll() is None
        self.synth.send_signal(signal.SIGINT)
        try:
            self.synth.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.synth.kill()  # it had finished what the bench needed of it
            self.synth.wait()
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(timeout=10)
        if not running:
            raise SystemExit("studio synth finished before the measurement did: add --synth-seeds")
        return self.stages_written()


def measure(db: Path, starts: int, samples: int) -> dict[str, list[float]]:
    with Store(db) as store:
        first = store.record(1).seed.thought
    # The thought column is truncated ("Bench thought number 00…" at 120 columns): look for the
    # words every row starts with, as the terminal shows them.
    needle = first[: len(MARKER)]
    first_record_on_screen(db, needle)  # warm the page cache, as a second start would be
    started = [first_record_on_screen(db, needle) for _ in range(starts)]
    next_ms, persist_ms = asyncio.run(in_app(db, samples))
    return {"first": started, "next": next_ms, "persist": persist_ms}


def report(label: str, figures: dict[str, list[float]]) -> None:
    starts, next_ms, persist_ms = figures["first"], figures["next"], figures["persist"]
    print(f"{label}:")
    print(
        f"  first record on screen: best {min(starts):.3f} s, median "
        f"{statistics.median(starts):.3f} s over {len(starts)} starts (goal <= 1.0 s)"
    )
    print(
        f"  next record: median {statistics.median(next_ms):.1f} ms, p95 {_p95(next_ms):.1f} ms, "
        f"max {max(next_ms):.1f} ms over {len(next_ms)} (goal <= 30 ms)"
    )
    print(
        f"  key press -> decision persisted: median {statistics.median(persist_ms):.1f} ms, "
        f"p95 {_p95(persist_ms):.1f} ms, max {max(persist_ms):.1f} ms over {len(persist_ms)} "
        "(goal <= 10 ms)",
        flush=True,
    )


def _p95(values: list[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.95) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--with-synth", action="store_true", help="also measure with `studio synth` writing"
    )
    parser.add_argument("--synth-seeds", type=int, default=20_000)
    parser.add_argument("--synth-latency", type=float, default=0.3)
    args = parser.parse_args()
    db = ensure_database(args.records)
    size_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6
    print(
        f"{time.strftime('%Y-%m-%d')}: {args.records:,} records ({size_mb:,.0f} MB) on "
        f"{os.cpu_count()} cores {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if not args.with_synth:
        report("idle", measure(db, args.starts, args.samples))
        return
    copy = db.with_name(f"{db.stem}_synth.db")
    for leftover in DATA_DIR.glob(copy.name + "*"):
        leftover.unlink()
    shutil.copyfile(db, copy)
    try:
        report("idle", measure(copy, args.starts, args.samples))
        synth = SynthBeside(copy, args.synth_seeds, args.synth_latency)
        try:
            synth.wait_until_writing()
            started, before = time.perf_counter(), synth.stages_written()
            figures = measure(copy, args.starts, args.samples)
            rate = (synth.stages_written() - before) / (time.perf_counter() - started)
            report(
                f"with studio synth writing ({rate:.0f} stages/s while measured; "
                f"load average {os.getloadavg()[0]:.2f})",
                figures,
            )
        finally:
            print(f"studio synth wrote {synth.stop()} stages in all")
    finally:
        for leftover in DATA_DIR.glob(copy.name + "*"):
            leftover.unlink()


if __name__ == "__main__":
    main()
