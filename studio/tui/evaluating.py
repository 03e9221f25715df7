"""Evaluating a training run from the app, and talking to its adapter: the one place the
evaluation screen and the Training pane's run history both use.

The evaluation is `studio eval --run N` in its own process (the model and the calls never touch
the UI); its per-session lines on stderr are the progress. The same command again resumes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from studio.evaluate.engine import Counselor

if TYPE_CHECKING:
    from studio.tui.app import StudioApp


@dataclass
class EvaluationProgress:
    """What `studio eval`'s stderr lines have said so far."""

    run_id: int
    total: str = "?"
    done: int = 0
    last: str = ""
    finished: bool = False
    failed: bool = False

    def read(self, line: str) -> None:
        self.last = line
        # `evaluation 3 of run 1 (adapter): 24 sessions`, then one line per session.
        if line.startswith("evaluation "):
            self.total = line.rsplit(": ", 1)[-1].split()[0]
        elif line.endswith(", ok") or "failed:" in line:
            self.done += 1

    @property
    def running(self) -> bool:
        return not (self.finished or self.failed)

    def describe(self) -> str:
        if self.failed:
            return f"Evaluating run {self.run_id} stopped: {self.last or 'no output'}"
        if self.finished:
            return f"Evaluated run {self.run_id}: {self.done}/{self.total} sessions"
        if not self.last:
            return f"Evaluating run {self.run_id}: starting…"
        return f"Evaluating run {self.run_id}: {self.done}/{self.total} sessions"


def eval_command(store_path: Path, run_id: int, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "studio", "eval", "--db", str(store_path),
            "--run", str(run_id), *extra]  # fmt: skip


async def evaluate_run(
    store_path: Path,
    run_id: int,
    on_progress: Callable[[EvaluationProgress], None],
    extra: Sequence[str] = (),
) -> EvaluationProgress:
    """Run `studio eval --run run_id` to its end, telling `on_progress` after every line."""
    proc = await asyncio.create_subprocess_exec(
        *eval_command(store_path, run_id, extra),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    progress = EvaluationProgress(run_id)
    on_progress(progress)
    while raw := await proc.stderr.readline():  # b"" only at the end (a blank line is b"\n")
        line = raw.decode(errors="replace").strip()
        if line:
            progress.read(line)
            on_progress(progress)
    code = await proc.wait()
    progress.finished = code == 0
    progress.failed = code != 0
    on_progress(progress)
    return progress


@dataclass
class EvaluationProgressed(Message, bubble=False):
    """The app's evaluation said more (a copy: the screen shown may read it later)."""

    progress: EvaluationProgress


def start_evaluation(app: StudioApp, run_id: int, extra: Sequence[str] = ()) -> bool:
    """Evaluate run `run_id` as an app worker: leaving the screen that started it neither stops it
    nor its progress; the screen on top gets each `EvaluationProgressed`. One at a time (two on
    the same run would do the same sessions twice): False while one is going."""
    if app.evaluation is not None and app.evaluation.running:
        return False
    app.evaluation = EvaluationProgress(run_id)

    def seen(progress: EvaluationProgress) -> None:
        app.evaluation = dataclasses.replace(progress)
        app.screen.post_message(EvaluationProgressed(app.evaluation))

    async def job() -> None:
        try:
            await evaluate_run(app.store_path, run_id, seen, extra)
        finally:
            if app.evaluation is not None and app.evaluation.running:  # cancelled (the app quit)
                app.evaluation = None

    app.run_worker(job(), group="evaluate", exit_on_error=False, description="Evaluate a run")
    return True


def counselor_of_run(run_id: int) -> Callable[[Any], Counselor]:
    """A store job that finds run `run_id` and prompts its adapter as it was trained (for chat)."""

    def job(store: Any) -> Counselor:
        from studio.evaluate.launch import COUNSELOR_MAX_TOKENS, find_run, run_counselor

        run = find_run(store, run_id)
        return run_counselor(run, temperature=0.7, max_tokens=COUNSELOR_MAX_TOKENS)

    return job
