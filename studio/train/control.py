"""Run control: the one object that launches, attaches to, follows, stops and concludes a run.

`studio train` and the review app's Training pane both drive runs through `RunControl`, so a run
looks and behaves the same whoever started it, and either can follow and stop a run the other
started.

The runner (`python -m studio.train`) is its own process in its own session, with stdin closed
and its console (stdout + stderr) in `<run folder>/console.log`: never a pipe to whoever started
it. So Ctrl-C at a terminal, a closed terminal or `kill -9` of the launching process never reaches
the run; only `stop()` does (SIGINT: finish the step, save the adapter, end `stopped`).

What happened is read from the run's event log (`events.jsonl`), from the start, then only what
was appended. A run ends with its end event; a runner that vanished without one (SIGKILL, a full
disk, the machine went down) is noticed by its pid and concluded `failed`, with the last line of
its console as the reason (`studio.store.runs.conclude_abandoned_runs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from studio.store import Store
from studio.store.runs import (
    ABANDONED,
    CONSOLE_LOG_NAME,
    EVENT_LOG_NAME,
    RunnerIdentity,
    RunStatus,
    abandoned_reason,
    conclude_abandoned_runs,
    list_runs,
    runner_alive,
    runner_identity,
)
from studio.train.events import EndEvent, ErrorEvent, StartEvent, TrainEvent
from studio.train.launch import RunnerOptions, runner_command
from studio.train.monitor import EventLogTail, RunProgress

#: Seconds between two reads of a followed run's event log.
POLL_INTERVAL_S = 0.25
#: How long to wait for our runner to exit after its end event (it only closes its files).
REAP_TIMEOUT_S = 15.0
#: Run folders hold checkpoints trained on clinical text: only their owner may read them.
RUN_FOLDER_MODE = 0o700
#: Exit code of a runner that refused its input (nothing was started).
BAD_INPUT_EXIT = 2


def create_run_folder(path: Path) -> Path:
    """The run folder, readable by its owner only (also when it existed, empty, already)."""
    path.mkdir(mode=RUN_FOLDER_MODE, parents=True, exist_ok=True)
    path.chmod(RUN_FOLDER_MODE)
    return path


@dataclass(frozen=True, slots=True)
class RunConclusion:
    """How a followed run ended."""

    status: RunStatus
    end: EndEvent | None
    """The run's end event; None when it ended without one."""
    error: ErrorEvent | None
    exit_code: int | None
    """The runner's exit code when we started it (unknown for a run we attached to)."""
    problem: str
    """Why it ended without an end event; empty when it has one."""
    refused: bool = False
    """The runner refused its input (exit 2): nothing was started."""


class RunControl:
    """One training run seen from outside its process.

    Not thread-safe as a whole: one thread polls (`poll`, `follow`); `stop` may be called from
    any thread (it only sends a signal).
    """

    def __init__(
        self,
        folder: Path,
        *,
        process: subprocess.Popen[bytes] | None = None,
        pid: int | None = None,
    ) -> None:
        self.folder = folder
        self.process = process
        """The runner, when this process started it (then its exit code is known)."""
        self.pid = process.pid if process is not None else pid
        self._identity: RunnerIdentity | None = None
        self._tail = EventLogTail(folder / EVENT_LOG_NAME)
        self.progress = RunProgress()
        """Every event read so far, folded."""
        self.events: list[TrainEvent] = []
        self.saw_end = False
        self.finished = False
        """The end event was read, or the runner is gone."""
        self.exit_code: int | None = None
        self.stops_sent = 0

    # -- launch and attach ----------------------------------------------------------------------

    @classmethod
    def launch(cls, options: RunnerOptions) -> RunControl:
        """Start `python -m studio.train …` for `options` (whose `output` must be chosen)."""
        if options.output is None:
            raise ValueError("the run folder must be chosen before starting (RunnerOptions.output)")
        folder = create_run_folder(options.output)
        argv = runner_command(_without_stdout_events(options))
        with (folder / CONSOLE_LOG_NAME).open("wb") as console:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(folder, process=process)

    @classmethod
    def attach(cls, folder: Path) -> RunControl:
        """Follow a run some other process started (its pid comes from its start event)."""
        return cls(folder)

    # -- follow ---------------------------------------------------------------------------------

    def poll(self) -> list[TrainEvent]:
        """The events appended since the last poll; sets `finished` at the end or when gone."""
        gone = not self.saw_end and self._gone()
        new = self._tail.read_new()  # after the check: what a vanished runner wrote last is read
        for event in new:
            self.progress.apply(event)
            if isinstance(event, StartEvent):
                self.pid = self.pid or event.pid
                self._identity = runner_identity(self.folder)
            elif isinstance(event, EndEvent):
                self.saw_end = True
        self.events.extend(new)
        self.finished = self.saw_end or gone
        if self.finished:
            self._reap()
        return new

    def follow(
        self,
        *,
        interval: float = POLL_INTERVAL_S,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[TrainEvent]]:
        """Yield the new events, each once, a batch per read that found any, until the run is
        finished (or `should_stop()`). A reattached long run comes as one batch, not thousands."""
        while not should_stop():
            new = self.poll()
            if new:
                yield new
            if self.finished:
                return
            if not new:
                time.sleep(interval)

    def _gone(self) -> bool:
        if self.process is not None:
            self.exit_code = self.process.poll()
            return self.exit_code is not None
        if self._identity is not None:
            return not runner_alive(self._identity)
        return False  # no start event yet: nothing says who the runner is

    def _reap(self) -> None:
        if self.process is None or self.exit_code is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.exit_code = self.process.wait(REAP_TIMEOUT_S)

    # -- stop -----------------------------------------------------------------------------------

    @property
    def can_stop(self) -> bool:
        return not self.finished and self.pid is not None

    def stop(self) -> None:
        """SIGINT: the runner finishes its step, saves the adapter and ends `stopped`.

        Sent again, it stops the runner at once, without saving.
        """
        if self.pid is None or self.finished:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGINT)
            elif self._identity is None or runner_alive(self._identity):
                os.kill(self.pid, signal.SIGINT)
        self.stops_sent += 1

    # -- conclude -------------------------------------------------------------------------------

    def conclude(self, store: Store | None = None) -> RunConclusion:
        """How the run ended (once `finished`). With a store, a run that vanished without its
        end event is marked `failed` there at once (any listing of runs would do it too)."""
        error = next((e for e in reversed(self.events) if isinstance(e, ErrorEvent)), None)
        end = next((e for e in reversed(self.events) if isinstance(e, EndEvent)), None)
        if end is not None:
            return RunConclusion(end.status, end, error, self.exit_code, "")
        if store is not None:
            conclude_abandoned_runs(store)
        said = console_error(self.folder / CONSOLE_LOG_NAME)
        if self.exit_code == BAD_INPUT_EXIT and not self.events:
            message = error.message if error else said or "bad input"
            return RunConclusion(
                RunStatus.FAILED,
                None,
                error,
                self.exit_code,
                f"The runner refused to start: {message}",
                refused=True,
            )
        if self.exit_code == 0 and not self.events:
            problem = "Stopped before the run started; nothing was written."
            return RunConclusion(RunStatus.STOPPED, None, error, 0, problem)
        problem = abandoned_reason(self.folder)
        if self.exit_code is not None:
            problem = problem.replace(ABANDONED, f"{ABANDONED} (exit code {self.exit_code})", 1)
        return RunConclusion(RunStatus.FAILED, None, error, self.exit_code, problem)


def _without_stdout_events(options: RunnerOptions) -> RunnerOptions:
    """The runner's own stdout goes to its console file; events are read from its log."""
    from dataclasses import replace

    return replace(options, events=False)


def console_error(console_log: Path, *, lines: int = 40) -> str:
    """The runner's own last word on its console: an `error: …` line, else the last line."""
    try:
        text = console_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line.strip() for line in text.splitlines()[-lines:] if line.strip()]
    errors = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
    if errors:
        return errors[-1]
    return tail[-1] if tail else ""


@dataclass(frozen=True, slots=True)
class LiveRun:
    """A run in progress, found through the database and its event log."""

    run_id: int
    folder: Path
    pid: int


def find_live_run(store: Store) -> LiveRun | None:
    """The newest `running` run whose process is alive: what a view follows when it opens.

    Listing the runs first concludes those whose process is gone (`failed`).
    """
    for run in list_runs(store, status=RunStatus.RUNNING):
        folder = Path(run.output_dir)
        identity = runner_identity(folder)
        if identity is not None and runner_alive(identity):
            return LiveRun(run.id, folder, identity.pid)
    return None
