"""`studio synth --batch` (and `--wait`, `--cancel`, `--dry-run`): synthesis through a server's
batch endpoints, stage by stage. The work itself is `studio.synth.batch`; this prints it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from studio.commands.common import BatchOptions, open_store, progress_bar
from studio.errors import StudioError


def synth_batch(db: Path, limit: int | None, settings: Any, batch: BatchOptions) -> None:
    if batch.dry_run:
        _dry_run(db, limit, settings)
        return
    from studio.synth.batch import BatchSynthesizer

    run_batches(
        db,
        lambda store, client: BatchSynthesizer(
            store, client, settings, window=batch.completion_window
        ),
        settings,
        batch,
        again="studio synth --batch",
        reasons="the stages' errors say more",
        limit=limit,
    )


def run_batches(
    db: Path,
    make_runner: Callable[[Any, Any], Any],
    settings: Any,
    batch: BatchOptions,
    *,
    again: str,
    reasons: str,
    limit: int | None,
) -> Any:
    """One batch run of any job kind (`make_runner(store, client)` builds its `BatchRunner`):
    collect, submit, maybe wait or cancel, and say what happened. Returns the runner."""
    from studio.synth.batch_api import BatchClient

    client = BatchClient(settings)
    with open_store(db) as store:
        runner = make_runner(store, client)
        progress = _Progress() if batch.wait and sys.stdout.isatty() else None
        if progress is not None:
            runner.on_poll = progress.update
        interrupted = False
        try:
            if batch.cancel:
                cancelled = asyncio.run(_cancel(runner, client))
                click.echo(f"cancelled {cancelled} batch{'es' * (cancelled != 1)}")
            else:
                asyncio.run(_run(runner, client, limit, batch.wait, batch.poll_interval))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if progress is not None:
                progress.close()
        _report(store, runner.summary, settings, again)
    if interrupted:
        click.echo(f"interrupted — batches in flight stay in flight; run `{again}` again")
        sys.exit(130)
    waiting = sum(runner.summary.waiting.values())
    if waiting and not batch.cancel:
        raise StudioError(
            f"{waiting} request{'s' * (waiting > 1)} came back without an answer"
            f" ({_counts(runner.summary.waiting)}); {reasons}, and `{again}` submits them"
            " again"
        )
    return runner


async def _run(synthesizer: Any, client: Any, limit: int | None, wait: bool, poll: float) -> None:
    try:
        await synthesizer.run(limit=limit, wait=wait, poll_s=poll)
    finally:
        await client.aclose()


async def _cancel(synthesizer: Any, client: Any) -> int:
    try:
        cancelled: int = await synthesizer.cancel()
        return cancelled
    finally:
        await client.aclose()


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(
        f"{n} {what}" for what, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
    )


def _report(store: Any, summary: Any, settings: Any, again: str) -> None:
    from studio.store.batches import batch_usage

    parts = []
    if summary.submitted:
        parts.append(
            f"submitted {summary.submitted} requests in {summary.batches_submitted}"
            f" batch{'es' * (summary.batches_submitted != 1)}"
        )
    if summary.cache_hits:
        parts.append(f"{summary.cache_hits} answered from the cache")
    if summary.stages:
        parts.append(f"collected {_counts(summary.stages)}")
    if summary.returned:
        parts.append(f"back to pending: {_counts(summary.returned)}")
    click.echo("; ".join(parts) or "nothing new to submit or collect")
    for row in summary.in_flight:
        where = f" (server id {row.batch_id})" if row.batch_id else ""
        click.echo(
            f"in flight: batch {row.id}, {row.stage.label.lower()}, {row.requests} requests,"
            f" {row.state.value} {row.done + row.failed}/{row.requests}{where}"
        )
    if summary.in_flight:
        click.echo(f"run `{again}` again to collect them (or `--wait`)")
    tokens_in, tokens_out = batch_usage(store)
    if tokens_in or tokens_out:
        price = _price(tokens_in, tokens_out, settings, batch=True)
        click.echo(
            f"usage of all batches so far: {tokens_in:,} tokens in, {tokens_out:,} out{price}"
        )


def _price(tokens_in: int, tokens_out: int, settings: Any, *, batch: bool) -> str:
    if settings.price_in is None or settings.price_out is None:
        return ""
    live = (tokens_in * settings.price_in + tokens_out * settings.price_out) / 1e6
    return f", ${live * settings.batch_price if batch else live:,.2f} at {'batch' if batch else 'live'} rates"


def _dry_run(db: Path, limit: int | None, settings: Any) -> None:
    from studio.synth.batch_estimate import estimate

    with open_store(db, must_exist=True) as store:
        found = estimate(store, settings, limit=limit)
    stages = ", ".join(f"{n} {stage.label.lower()}" for stage, n in found.requests.items())
    click.echo(f"dry run: {found.total_requests} requests ({stages or 'none'})")
    if found.in_flight:
        click.echo(f"{found.in_flight} requests are in flight already (not counted)")
    learned = "sizes learned from the stages so far" if found.learned else "typical stage sizes"
    print_estimate(found, settings, learned)


def print_estimate(found: Any, settings: Any, sizes: str) -> None:
    """The tokens and the price of a dry run (`found`: an estimate with `tokens_in`,
    `tokens_out` and `price(settings, batch=…)`); `sizes` says where the answer sizes came from."""
    click.echo(f"estimated tokens: {found.tokens_in:,} in, {found.tokens_out:,} out ({sizes})")
    live, batch = found.price(settings, batch=False), found.price(settings, batch=True)
    if live is None or batch is None:
        click.echo(
            "price: unknown — give the plan `price_in` and `price_out` (USD per million tokens)"
        )
    else:
        click.echo(f"price at the plan's rates: ${batch:,.2f} as batches (${live:,.2f} live)")


class _Progress:
    """A progress bar over the requests in flight, as the server counts them."""

    def __init__(self) -> None:
        self.bar = progress_bar(info=False, transient=True)
        self.task = self.bar.add_task("batches", total=None)
        self.bar.start()

    def update(self, summary: Any) -> None:
        rows = summary.in_flight
        stages = sorted({row.stage.label.lower() for row in rows})
        self.bar.update(
            self.task,
            total=sum(row.requests for row in rows) or None,
            completed=sum(row.done + row.failed for row in rows),
            description=", ".join(stages) or "done",
        )

    def close(self) -> None:
        self.bar.stop()
