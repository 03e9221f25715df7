"""`studio merge OTHER.db`: bring another reviewer's copy of the database into this one."""

from __future__ import annotations

from pathlib import Path

import click

from studio.commands.common import db_option, handle_errors, open_store


@click.command("merge")
@click.argument("other", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@handle_errors
def merge_command(other: Path, db: Path) -> None:
    """Bring in the decisions, edits, ratings and audit events of OTHER.db, another reviewer's
    copy of this database.

    OTHER.db is only read. Records are matched by content, so nothing is duplicated and nothing
    is overwritten; records two reviewers decided differently wait for adjudication. Merging the
    same copy again changes nothing.
    """
    from studio.team.merge import merge_database

    with open_store(db, must_exist=True) as store:
        report = merge_database(
            store, other, progress=lambda step: click.echo(f"merging {step}…", err=True)
        )
    for line in report.lines():
        click.echo(line)
