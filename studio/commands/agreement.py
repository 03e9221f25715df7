"""`studio agreement`: how far reviewers agree with each other, per stage (team review)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from studio.commands.common import db_option, handle_errors, open_store


@click.command("agreement")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@handle_errors
def agreement_command(db: Path, as_json: bool) -> None:
    """Agreement between reviewers on records two or more of them decided: per stage, Cohen's
    kappa (two reviewers) or Krippendorff's alpha (more) on the decision kinds (accept, edit,
    reject), a 95% bootstrap interval, the share of agreeing decisions and the raw table. Stages
    with fewer than 10 double-reviewed items say so instead of giving numbers."""
    from studio.team.agreement import agreement_report

    with open_store(db, must_exist=True, read_only_ok=True) as store:
        report = agreement_report(store)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    from rich.console import Console

    from studio.team.agreement_tables import agreement_view

    Console().print(agreement_view(report))
