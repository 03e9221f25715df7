"""Benchmark: the review app on a 100k-record database.

    python bench/tui.py [--records 100000] [--starts 5] [--samples 200]

Builds `bench/data/tui_<N>.db` once (CACTUS-shaped rows through `add_rows`; a tenth
already accepted, so the queue shows mixed statuses), then measures:

1. time to first record on screen: `studio review` in a fresh process on a pseudo-terminal, from
   spawning it until the first record's thought has been written to the terminal (process
   start-up, imports, opening the database, the first queue page and the first frame). Goal 1.0 s.
2. next-record latency: in the running app, from the `n` key event until the frame showing the
   next record has been rendered. Goal 30 ms.
3. key press -> decision persisted: from the `a` key event until another connection to the
   database sees the stage accepted. Goal 10 ms.
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

from import_cactus import DATA_DIR, sentence  # bench/ is on sys.path when run as a script

from studio.cbt.techniques import TECHNIQUES
from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage
from studio.store import Store

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
            *(f"{n}. Section\n{para(4)}" for n in range(2, 7)),
        ]
    )
    turns = [
        f"{'Counselor' if t % 2 == 0 else 'Client'}: {para(2)}" for t in range(rng.randint(20, 26))
    ]
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
    path = DATA_DIR / f"tui_{records}.db"
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


def _p95(values: list[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.95) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    db = ensure_database(args.records)
    with Store(db) as store:
        first = store.record(1).seed.thought
    # The thought column is truncated: look for its first words, as the terminal shows them.
    needle = first[: len(MARKER) + 8]
    first_record_on_screen(db, needle)  # warm the page cache, as a second start would be
    starts = [first_record_on_screen(db, needle) for _ in range(args.starts)]
    next_ms, persist_ms = asyncio.run(in_app(db, args.samples))
    size_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6
    print(
        f"{args.records:,} records ({size_mb:,.0f} MB) on {platform.processor() or platform.machine()}"
    )
    print(
        f"first record on screen: best {min(starts):.3f} s, median "
        f"{statistics.median(starts):.3f} s over {len(starts)} starts (goal <= 1.0 s)"
    )
    print(
        f"next record: median {statistics.median(next_ms):.1f} ms, p95 {_p95(next_ms):.1f} ms, "
        f"max {max(next_ms):.1f} ms over {len(next_ms)} (goal <= 30 ms)"
    )
    print(
        f"key press -> decision persisted: median {statistics.median(persist_ms):.1f} ms, "
        f"p95 {_p95(persist_ms):.1f} ms, max {max(persist_ms):.1f} ms over {len(persist_ms)} "
        "(goal <= 10 ms)"
    )


if __name__ == "__main__":
    main()
