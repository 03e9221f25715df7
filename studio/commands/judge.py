"""`studio judge`: LLM scores for every dialogue without current ones; `--agreement` checks the
judge against the clinicians' ratings."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from studio.commands.common import (
    BACKEND_CHOICE,
    BatchOptions,
    batch_options,
    db_option,
    handle_errors,
    open_store,
)
from studio.errors import BadInputError, StudioError


@click.command("judge")
@db_option
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records this run.")
@click.option(
    "--rejudge",
    is_flag=True,
    help="Judge every dialogue again, asking the model afresh (e.g. after editing prompts/judge.md).",
)
@click.option("--agreement", is_flag=True, help="Report judge against clinician; judge nothing.")
@click.option(
    "--per-item",
    is_flag=True,
    help="One call per CTRS item (prompts/judge_<item>.md) instead of one structured call.",
)
@click.option("--backend", type=BACKEND_CHOICE, help="[groq]")
@click.option("--model", help="Model id (groq default: openai/gpt-oss-120b).")
@click.option("--base-url", help="Server URL; for openai-compatible servers the …/v1 URL.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Records in flight at once [32].")
@click.option("--rpm", type=click.IntRange(min=1), help="Known requests-per-minute limit.")
@click.option("--tpm", type=click.IntRange(min=1), help="Known tokens-per-minute limit.")
@click.option("--plan", help="A named rate-limit plan, e.g. groq-free.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@batch_options("judgement")
@handle_errors
def judge_command(
    db: Path,
    limit: int | None,
    rejudge: bool,
    agreement: bool,
    per_item: bool,
    as_json: bool,
    config_path: Path | None,
    **options: Any,
) -> None:
    """Score every dialogue that has text and no current scores: six CTRS items (0-6), technique
    fidelity with the plan steps covered, and safety flags with turn and quote. A score belongs to
    the text it read; an edit or a regeneration makes it stale. Unreadable answers are stored as
    failed with the raw text (exit 1); run again to retry them.
    """
    if agreement:
        _agreement(db, as_json)
        return
    from studio.commands.synth import one_run_per_database
    from studio.synth import SynthSettings

    batch = BatchOptions.take(options)
    use_batch = batch.batch or batch.wait or batch.cancel or batch.dry_run
    if use_batch and per_item:
        raise BadInputError("--per-item runs live only; leave out --batch (or --per-item)")
    settings = SynthSettings.load(config_path, **options)
    if use_batch and batch.dry_run:  # reads the database only: no key, no lock needed
        from studio.commands.judge_batch import judge_dry_run

        judge_dry_run(db, settings, limit, rejudge)
        return
    settings = settings.validate()
    if not db.is_file():  # before the lock, which would leave a file beside a mistyped path
        raise BadInputError(
            f"{db}: no such database (import something first, or try `studio demo`)"
        )
    try:
        with one_run_per_database(db, "judge"):
            if use_batch:
                from studio.commands.judge_batch import judge_batch

                judge_batch(db, settings, limit, rejudge, batch)
                return
            summary = _judge(db, settings, limit, rejudge, per_item=per_item)
    except KeyboardInterrupt:
        click.echo("interrupted — finished judgements are saved; run `studio judge` again to go on")
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(summary.to_json()))
    else:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.failures.items()))
        click.echo(
            f"judged {summary.records} records: {summary.scored} scored ({summary.flagged} flagged),"
            f" {summary.failed} failed{f' ({reasons})' if reasons else ''}; {summary.calls} calls"
            f" to {settings.model_id} ({summary.cache_hits} from cache), {summary.tokens:,} tokens,"
            f" {summary.elapsed_s:.1f} s"
        )
    if summary.failed:
        raise StudioError(
            f"{summary.failed} judgement{'s' * (summary.failed > 1)} failed; they are stored with"
            " the reason and the raw answer, and `studio judge` tries them again"
        )


def _judge(
    db: Path, settings: Any, limit: int | None, rejudge: bool, *, per_item: bool = False
) -> Any:
    from studio.judge.per_item import ONE_CALL, PER_ITEM, judge_class
    from studio.synth import make_backend

    backend = make_backend(settings)
    with open_store(db, must_exist=True) as store:
        judge = judge_class(PER_ITEM if per_item else ONE_CALL)(
            store, backend, settings, fresh=rejudge
        )

        async def go() -> Any:
            try:
                return await judge.run(limit=limit, rejudge=rejudge)
            finally:
                await judge.aclose()
                await backend.aclose()

        return asyncio.run(go())


def _agreement(db: Path, as_json: bool) -> None:
    from studio.judge.agreement import agreement_report

    with open_store(db, must_exist=True) as store:
        report = agreement_report(store)
    print_agreement(report, as_json=as_json)


def print_agreement(report: Any, *, as_json: bool = False, title: str = "") -> None:
    """`--agreement`'s table (or JSON); `bench/judge_modes.py` prints one per mode with it."""
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"{title}Judge against clinician ({report.pairs} paired ratings,"
        f" {report.rated_records} records)",
        title_justify="left",
    )
    for column in ("item", "pairs", "kappa (quadratic)", "Spearman [95% CI]", "bias", "AUC"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for item in report.items:
        if not item.enough:
            rho = "too few"
        elif item.spearman is None:
            rho = "undefined"
        else:
            ci = item.spearman_ci
            rho = f"{item.spearman:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        table.add_row(
            item.item,
            str(item.pairs),
            "—" if item.kappa is None else f"{item.kappa:.2f}",
            rho,
            "—" if item.bias is None else f"{item.bias:+.2f}",
            "—" if item.auc is None else f"{item.auc:.2f} (n={item.auc_records})",
        )
    console.print(table)
    for item in report.items:
        if "overrates" in item.verdict or not item.enough:
            console.print(item.verdict)
    for note in report.notes:
        console.print(note)
