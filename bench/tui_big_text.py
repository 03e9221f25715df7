"""Benchmark: a 1 MB stage text in the review app (issue 8: it must not freeze it or bloat it).

    python bench/tui_big_text.py [--case plan-paragraphs|plan-one-line|dialogue|all]

Each case runs in a fresh process: a database with one record whose stage holds ~1 MB of text
(many paragraphs, one pasted line with no newline, or a 1 MB dialogue), then in the headless app:
open the record at 120x36, resize to 40x12 and back, open the editor on the stage. Prints the
seconds each step took until its frame was rendered, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.ingest.load import add_rows
from studio.model import CactusRow, Seed, Stage
from studio.store import Store

MB = 1_000_000
CASES = ("plan-paragraphs", "plan-one-line", "dialogue", "paste")


def big_text(case: str) -> str:
    sentence = "The client will note each thought, rate its strength and test it against evidence. "
    if case == "plan-one-line":
        return (sentence * (MB // len(sentence) + 1))[:MB]
    if case == "dialogue":
        turns = [
            f"{'Counselor' if n % 2 == 0 else 'Client'}: {sentence * 3}"
            for n in range(MB // (len(sentence) * 3 + 12))
        ]
        return "\n".join(turns)
    paragraph = f"{sentence * 4}\n"
    return paragraph * (MB // len(paragraph) + 1)


def build(path: Path, case: str) -> None:
    text = big_text(case)
    stage = Stage.DIALOGUE if case == "dialogue" else Stage.CBT_PLAN
    stages = {
        Stage.INTAKE_FORM: "intake",
        Stage.CBT_TECHNIQUE: "Reality Testing",
        Stage.CBT_PLAN: "1. step",
        Stage.DIALOGUE: "Counselor: Hello.\nClient: Hi.",
    }
    if case != "paste":
        stages[stage] = text
    with Store(path) as store:
        add_rows(
            store, [CactusRow(Seed("a persona", "a thought", ("Labeling",), ()), stages, "neutral")]
        )


async def measure(path: Path, case: str) -> dict[str, float]:
    from textual.pilot import Pilot

    from tests.test_tui_support import open_record, settle, studio_app

    app = studio_app(path)
    times: dict[str, float] = {}

    async def timed(
        name: str, pilot: Pilot[None], *keys: str, size: tuple[int, int] | None = None
    ) -> None:
        started = time.perf_counter()
        if size is not None:
            await pilot.resize_terminal(*size)
        if keys:
            await pilot.press(*keys)
        await settle(pilot)
        await pilot.pause()
        app.export_screenshot()  # a full frame, as a terminal would draw it
        times[name] = round(time.perf_counter() - started, 3)

    async with app.run_test(size=(120, 36)) as pilot:
        started = time.perf_counter()
        await open_record(pilot, 1)
        if case != "dialogue":
            await pilot.press("j", "j")
        else:
            await pilot.press("j", "j", "j")
        await pilot.pause()
        app.export_screenshot()
        times["open record"] = round(time.perf_counter() - started, 3)
        await timed("resize to 40x12", pilot, size=(40, 12))
        await timed("resize to 120x36", pilot, size=(120, 36))
        await timed("open the editor", pilot, "e")
        if case == "paste":
            from textual import events
            from textual.widgets import TextArea

            area = app.screen.query_one(TextArea)
            started = time.perf_counter()
            area.post_message(events.Paste(big_text("plan-one-line")))
            await pilot.pause()
            app.export_screenshot()
            times["paste 1 MB"] = round(time.perf_counter() - started, 3)
        await timed("resize editor to 40x12", pilot, size=(40, 12))
        await timed("resize editor to 120x36", pilot, size=(120, 36))
        if case == "paste":
            await timed("save the paste", pilot, "ctrl+s")
            await timed("resize to 40x12 after the save", pilot, size=(40, 12))
        else:
            await timed("close the editor", pilot, "escape")
    times["peak RSS MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="all", choices=(*CASES, "all"))
    args = parser.parse_args()
    if args.case == "all":
        for case in CASES:
            subprocess.run([sys.executable, __file__, "--case", case], check=True)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.db"
        build(path, args.case)
        result = asyncio.run(measure(path, args.case))
    print(json.dumps({"case": args.case, **result}))


if __name__ == "__main__":
    main()
