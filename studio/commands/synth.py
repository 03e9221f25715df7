"""`studio synth`: fill the review queue by running the prompt chain over seeds and unfinished records."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from studio.commands.common import (
    BACKEND_CHOICE,
    MODE_CHOICE,
    BatchOptions,
    batch_options,
    db_option,
    handle_errors,
    open_store,
    progress_bar,
)
from studio.errors import BadInputError, StudioError


@click.command("synth")
@db_option
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records this run.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Records in flight at once [32].")
@click.option("--backend", type=BACKEND_CHOICE, help="[groq]")
@click.option(
    "--model", help="Model id (groq default: openai/gpt-oss-120b); for local, a model folder."
)
@click.option("--base-url", help="Server URL; for openai-compatible servers the …/v1 URL.")
@click.option("--mode", type=MODE_CHOICE, help="Dialogue mode [script].")
@click.option(
    "--client-backend",
    type=BACKEND_CHOICE,
    help="Two-agent mode: the client agent's backend [the counselor's].",
)
@click.option("--client-model", help="Two-agent mode: the client agent's model [the counselor's].")
@click.option("--client-base-url", help="Two-agent mode: the client backend's server URL.")
@click.option(
    "--balance",
    is_flag=True,
    default=None,
    help="Spread techniques evenly: rank a top three, take the best one under its share.",
)
@click.option(
    "--balance-target",
    help='--balance towards this spread: "Evidence-Based Questioning=0.3,Reality Testing=0.1"'
    " (fractions; the other techniques share the rest evenly).",
)
@click.option("--rpm", type=click.IntRange(min=1), help="Known requests-per-minute limit.")
@click.option("--tpm", type=click.IntRange(min=1), help="Known tokens-per-minute limit.")
@click.option("--plan", help="A named rate-limit plan, e.g. groq-free (30 RPM, 8K TPM).")
@click.option("--reasoning-effort", type=click.Choice(["low", "medium", "high"]))
@click.option(
    "--adapter",
    type=click.Path(exists=True, file_okay=False),
    help="LoRA adapter for --backend local.",
)
@batch_options("stage")
@handle_errors
def synth_command(db: Path, limit: int | None, config_path: Path | None, **options: Any) -> None:
    """Synthesize intake forms, techniques, plans and dialogues for seeds without a record and for
    records with pending, stale or failed stages. Finished stages are saved at once: after an
    interruption, run it again to finish the job (answers already received are not paid twice).
    Exits 1 when any stage failed (the summary counts the reasons), 130 on Ctrl-C.
    """
    batch = BatchOptions.take(options)
    use_batch = batch.batch or batch.wait or batch.cancel
    try:
        from studio.synth import SynthSettings

        settings = SynthSettings.load(config_path, **options)
        if batch.dry_run:  # reads the database only: no key, no lock needed
            from studio.commands.synth_batch import synth_batch

            synth_batch(db, limit, settings, batch)
            return
        settings = settings.validate()
        with one_run_per_database(db):  # one run per database, live or batch
            if use_batch:
                from studio.commands.synth_batch import synth_batch

                synth_batch(db, limit, settings, batch)
            else:
                _synth(db, limit, settings)
    except KeyboardInterrupt:
        # Ctrl-C outside the run itself (mostly while starting up: imports, the database, the
        # lock). Exit as the shell expects of an interrupted command, not click's "Aborted!" (1).
        click.echo("interrupted — finished work is saved; run `studio synth` again to go on")
        sys.exit(130)


def _synth(db: Path, limit: int | None, settings: Any) -> None:
    import sqlite3

    from studio.synth import Synthesizer, make_backend

    backend = make_backend(settings)
    interrupted = False
    try:
        with open_store(db) as store:
            synthesizer = Synthesizer(store, backend, settings)
            progress = _Progress()
            synthesizer.on_event = progress.update
            try:
                with progress:
                    asyncio.run(_run(synthesizer, backend, limit, progress))
            except KeyboardInterrupt:
                interrupted = True
    except sqlite3.Error as exc:
        # The run stops at the first failed write (all workers are cancelled), so on the next run
        # only the answers that were in flight are asked for again.
        raise StudioError(
            f"{db}: {_storage_problem(exc)}; the stages finished so far are saved, "
            "run `studio synth` again when it is fixed"
        ) from exc
    summary = synthesizer.summary
    _print_summary(summary, settings.model_id, interrupted)
    if interrupted:
        sys.exit(130)
    failed = summary.stages.get("failed", 0)
    if failed:
        raise StudioError(
            f"{failed} stage{'s' * (failed > 1)} failed ({_reasons(summary.failures)}); "
            "the stages' errors say more, and `studio synth` tries them again"
        )


def _storage_problem(exc: BaseException) -> str:
    """The cause worth telling from an exception chain: a full disk hides behind SQLite's
    "cannot rollback - no transaction is active" (SQLite already rolled back by itself)."""
    import sqlite3

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, sqlite3.Error) and (
            getattr(error, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(error)
        ):
            return "the disk is full (database or disk is full)"
    causes = [e for e in chain if "cannot rollback" not in str(e)] or chain
    return f"the database failed while synthesizing ({causes[-1]})"


def _reasons(failures: dict[str, int]) -> str:
    return ", ".join(
        f"{n} {reason}" for reason, n in sorted(failures.items(), key=lambda i: (-i[1], i[0]))
    )


@contextmanager
def one_run_per_database(db: Path, command: str = "synth") -> Iterator[None]:
    """Two `studio synth` runs on one database would both pick the same unfinished stages and pay
    twice; advisory locks let one run at a time (released when the process ends, even by
    `kill -9`).

    The lock belongs to the file, not to its spelling: one lock sits beside the resolved path
    (symlinks, `./` and relative spellings all meet there, on a shared folder too), and one is
    keyed by the file's device and inode (hard links, bind mounts). `command` names whose runs
    exclude each other (`studio judge` runs beside `studio synth`, one of each)."""
    import fcntl

    try:
        target = db.resolve()
    except RuntimeError as exc:  # Python 3.11 reports a symlink loop this way
        raise BadInputError(f"{db}: a symlink loop, not a database") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    beside = target.with_name(f"{target.name}.{command}.lock")
    with ExitStack() as held:
        for lock in (beside, _inode_lock(target, command)):
            if lock is None:
                continue
            try:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError as exc:
                if lock != beside:
                    continue  # the lock beside the database still holds
                raise StudioError(f"{lock}: cannot create the run lock ({exc.strerror})") from exc
            held.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                named = str(db) if db.absolute() == target else f"{db} (that is {target})"
                raise BadInputError(
                    f"{named}: another `studio {command}` is already running on this database; "
                    "wait for it (or stop it) and run again"
                ) from None
        yield


def _inode_lock(target: Path, command: str = "synth") -> Path | None:
    """The lock named after the database file's device and inode, in a private folder of this
    user's temp dir. None while the database does not exist yet (then no other name can reach
    it), or when that folder is not safely ours (the path lock still holds)."""
    try:
        info = target.stat()
    except FileNotFoundError:
        return None
    folder = Path(tempfile.gettempdir()) / f"cbt-studio-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        mine = folder.lstat()
    except OSError:
        return None
    # A folder someone else planted (or a symlink) could be used to block or watch our runs.
    if not stat.S_ISDIR(mine.st_mode) or mine.st_uid != os.getuid():
        return None
    return folder / f"{command}-{info.st_dev}-{info.st_ino}.lock"


async def _run(synthesizer: Any, backend: Any, limit: int | None, progress: _Progress) -> None:
    try:
        progress.start_records(synthesizer)
        await synthesizer.run(limit=limit)
    finally:
        await backend.aclose()


class _Progress:
    """A rich progress display fed by `SynthEvent`s."""

    def __init__(self) -> None:
        self.bar = progress_bar(info=True, transient=False)
        self.records = self.bar.add_task("records", total=None, info="")
        self.stages = self.bar.add_task("stages", total=None, info="")
        self.tokens = 0
        self.errors = 0
        self.retries = 0

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def start_records(self, synthesizer: Any) -> None:
        self._synthesizer = synthesizer

    def update(self, event: Any) -> None:
        summary = self._synthesizer.summary
        if summary.records and self.bar.tasks[self.records].total is None:
            self.bar.update(self.records, total=summary.records)
            self.bar.update(self.stages, total=summary.records * 4)
        if event.kind == "record_done":
            self.bar.advance(self.records)
        elif event.kind == "stage_done":
            self.bar.advance(self.stages)
            if event.status is not None and event.status.value in ("failed", "invalid"):
                self.errors += 1
        elif event.kind == "retry":
            self.retries += 1
        elif event.kind == "call":
            self.tokens += event.tokens
        info = f"{self.tokens:,} tokens · {self.errors} failed/invalid · {self.retries} retries"
        self.bar.update(self.stages, info=info)


def _print_summary(summary: Any, model: str, interrupted: bool) -> None:
    head = (
        "interrupted — finished work is saved; run `studio synth` again to go on"
        if interrupted
        else "done"
    )
    stages = (
        ", ".join(f"{n} {status}" for status, n in sorted(summary.stages.items())) or "no stages"
    )
    click.echo(
        f"{head}: {summary.records_finished}/{summary.records} records, {stages}; "
        f"{summary.calls} calls to {model} ({summary.cache_hits} from cache), "
        f"{summary.tokens_in + summary.tokens_out:,} tokens, {summary.retries} retries "
        f"({summary.rate_limited} rate-limited), {summary.elapsed_s:.1f} s"
        + (f"; failed: {_reasons(summary.failures)}" if summary.failures else "")
    )
