"""The `studio` command line. Exit codes: 0 success, 1 failure while working, 2 bad usage or input.

Start-up time matters for every command, so heavy modules (datasets, the LLM SDKs, torch) are
imported inside the commands that need them, never at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from studio import __version__
from studio.commands.agreement import agreement_command
from studio.commands.assign import assign_command
from studio.commands.common import (
    db_option,
    group_db,
    group_options,
    group_reviewer,
    handle_errors,
    new_db_option,
    open_store,
    resolve_db,
)
from studio.commands.evaluate import chat_command, eval_command
from studio.commands.judge import judge_command
from studio.commands.merge import merge_command
from studio.commands.review import is_interactive, open_review, review_command
from studio.commands.synth import synth_command
from studio.commands.train import train_command
from studio.errors import BadInputError

# Shared helpers re-exported for command modules written against `studio.cli`.
__all__ = ["cli", "db_option", "handle_errors", "main", "open_store"]

DEMO_DB = "studio-demo.db"
MAX_PROBLEMS_SHOWN = 50


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="CBT Studio")
@group_options
@click.pass_context
def cli(ctx: click.Context, db: Path | None, reviewer: str | None) -> None:
    """CBT Studio: synthesize, review and train on CBT counseling dialogues.

    Run `studio demo` to try it on a small demo database, offline. Without a command, opens the
    review app (at a terminal; elsewhere it prints `studio stats`). `--db` and `--reviewer` given
    here reach every command.
    """
    if ctx.invoked_subcommand is None:
        _no_command(ctx, db=resolve_db(db), reviewer=reviewer)


@handle_errors
def _no_command(ctx: click.Context, db: Path, reviewer: str | None) -> None:
    if is_interactive():
        open_review(db, reviewer)
    else:
        ctx.invoke(stats, db=db, as_json=False)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True)
@new_db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "patternreframe", "seeds", "cactus"]),
    default="auto",
    show_default=True,
    help="Input format; auto decides per file from its first row.",
)
@click.option(
    "--status",
    type=click.Choice(["accepted"]),
    default=None,
    help="Mark imported CACTUS rows as already reviewed (one event per record).",
)
@click.option("--reviewer", default=None, help="Who reviewed them (with --status accepted).")
@click.option("--strict", is_flag=True, help="Import nothing and exit 2 if any row is bad.")
@handle_errors
def import_cmd(
    paths: tuple[str, ...],
    db: Path,
    fmt: str,
    status: str | None,
    reviewer: str | None,
    strict: bool,
) -> None:
    """Import seeds or CACTUS rows from files, `save_to_disk` folders or hub ids.

    PATHS are JSONL / JSON / CSV / parquet files, dataset folders, or Hugging Face hub ids
    (owner/name; needs the network or a cached copy). Bad rows are reported as FILE:LINE and
    skipped; the good rows are imported. Content already in the database is skipped.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from studio.ingest import StrictImportError, import_sources
    from studio.ingest.readers import Source, resolve_source

    if reviewer and status != "accepted":
        raise BadInputError(
            "--reviewer names who reviewed imported rows; use it with --status accepted"
        )
    accepted_by = None
    if status == "accepted":
        accepted_by = reviewer or group_reviewer() or _default_reviewer()
    for spec in paths:
        resolve_source(spec)  # a missing or unreadable input: exit 2 before the database exists
    err = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )

    def progress_for(source: Source) -> Callable[[int, int], None]:
        task = bar.add_task(Path(source.label).name, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update

    with open_store(db) as store, bar:
        try:
            report = import_sources(
                store, paths, fmt=fmt, accepted_by=accepted_by, strict=strict, progress=progress_for
            )
        except StrictImportError as exc:
            _print_problems(exc.report.messages())
            click.echo(exc.report.summary())
            raise
    _print_problems(report.messages())
    click.echo(report.summary())
    if report.failed:
        raise BadInputError(f"{report.failed} file(s) could not be read to the end (see above)")


def _print_problems(problems: list[Any]) -> None:
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(str(problem), err=True)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        click.echo(f"… and {len(problems) - MAX_PROBLEMS_SHOWN} more", err=True)


@cli.command()
@click.argument("out", type=click.Path(dir_okay=True, path_type=Path))
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cactus-jsonl", "sft-jsonl", "hf"]),
    default="cactus-jsonl",
    show_default=True,
)
@click.option(
    "--include-notes", is_flag=True, help="Add the reviewers' notes (left out by default)."
)
@click.option("--force", is_flag=True, help="Replace OUT (and its provenance) if it exists.")
@click.option(
    "--with-provenance",
    is_flag=True,
    help="Add record_id, accepted_by and accepted_at to each row.",
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Name reviewers reviewer-1, reviewer-2, … (by first decision) in the provenance and rows.",
)
@handle_errors
def export(
    out: Path,
    db: Path,
    fmt: str,
    include_notes: bool,
    force: bool,
    with_provenance: bool,
    pseudonymize: bool,
) -> None:
    """Export accepted records (edited text wins over the LLM original) to OUT, with where they
    came from: counts, spreads, reviewers, agreement, guideline versions, models and prompt
    versions (hf: the dataset card README.md; the JSONL formats: OUT's NAME.provenance.json).

    OUT is written under a temporary name and renamed into place; an existing OUT is replaced
    only with --force, and never when it is the database or one of its files.
    """
    from studio.export import export_records

    with open_store(db, must_exist=True, read_only_ok=True) as store:
        result = export_records(
            store,
            out,
            fmt=fmt,
            include_notes=include_notes,
            force=force,
            with_provenance=with_provenance,
            pseudonymize=pseudonymize,
        )
    notes = "".join(f"; {note}" for note in result.notes)
    beside = f" (provenance: {result.provenance})" if result.provenance else ""
    click.echo(f"exported {result.records} accepted records to {out}{beside}{notes}")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@handle_errors
def stats(db: Path, as_json: bool) -> None:
    """Counts of seeds, records, stages and training runs per status."""
    import json

    from studio.store.judging import judged_counts

    with open_store(db, must_exist=True, read_only_ok=True) as store:
        data = store.stats()
        data["judged"] = judged_counts(store)
        techniques = {} if as_json else store.technique_counts()
        read_only = store.read_only_reason
    if as_json:
        click.echo(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    where = f" (read-only: {read_only})" if read_only else ""
    console.print(f"[bold]{db}[/]: {data['seeds']} seeds{where}", highlight=False)
    for title, counts in (
        ("Records", data["records"]),
        ("Stages", data["stages"]),
        ("Techniques", techniques),
        ("Training runs", data["runs"]),
        (
            "Judged",
            {
                "records with current scores": data["judged"]["records"],
                "flagged": data["judged"]["flagged"],
                "rated by clinicians": data["judged"]["rated_by_clinicians"],
            },
        ),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column({"Techniques": "technique", "Judged": "what"}.get(title, "status"))
        table.add_column("count", justify="right")
        for key, value in counts.items():
            table.add_row(key, str(value))
        console.print(table)


@cli.command()
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to create the demo database [default: the group's --db, else {DEMO_DB}; "
    "STUDIO_DB is ignored, to keep real data apart].",
)
@click.option("--no-open", is_flag=True, help="Only build it and print its counts.")
@handle_errors
def demo(db: Path | None, no_open: bool) -> None:
    """Create (once) a demo database with hand-written records, then open the studio on it.
    A database that already has seeds is used as it is, never filled with demo content."""
    from studio.demo import build_demo

    db = db or group_db() or Path(DEMO_DB)
    with open_store(db) as store:
        created = build_demo(store)
    click.echo(f"{'created' if created else 'using'} demo database {db}")
    if no_open or not is_interactive():
        cli.main(["stats", "--db", str(db)], standalone_mode=False)
        return
    open_review(db, group_reviewer())


def _default_reviewer() -> str:
    import getpass
    import os

    return os.environ.get("STUDIO_REVIEWER") or getpass.getuser()


def main() -> None:
    cli(prog_name="studio")


# Subcommands that live beside their layer (each imports its heavy modules inside the command).
cli.add_command(synth_command)
cli.add_command(review_command)
cli.add_command(train_command)
cli.add_command(judge_command)
cli.add_command(eval_command)
cli.add_command(chat_command)
cli.add_command(agreement_command)
cli.add_command(assign_command)
cli.add_command(merge_command)
