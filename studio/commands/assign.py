"""`studio assign`: split records among reviewers, a share of them reviewed by two (blind)."""

from __future__ import annotations

from pathlib import Path

import click

from studio.commands.common import db_option, handle_errors, open_store
from studio.errors import BadInputError
from studio.model import RecordStatus


@click.command("assign")
@db_option
@click.option(
    "--reviewers", required=True, help="Who reviews, comma-separated: --reviewers ana,ben."
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="The share of records reviewed by two reviewers, each blind to the other's decision.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in RecordStatus]),
    default=None,
    help="Only records with this status (as the queue's filter) [default: the records still to"
    " review, pending or in review; decided ones are assigned again only when named here].",
)
@click.option(
    "--technique", default=None, help="Only records with this CBT technique [default: all]."
)
@handle_errors
def assign_command(
    db: Path,
    reviewers: str,
    overlap: float,
    seed: int,
    status: str | None,
    technique: str | None,
) -> None:
    """Assign the records the filter matches to REVIEWERS: each reviewer's queue shows their
    records first; a record assigned to two is final once both decided alike, else it waits for
    adjudication. Records assigned before are skipped, so running it again adds only new ones.
    """
    from studio.cbt.techniques import normalize_technique
    from studio.store.assignments import already_assigned, assign, undecided
    from studio.store.queue import QueueFilter, queue_ids
    from studio.team.assign import reviewer_names, split_records

    names = reviewer_names(reviewers)
    if technique is not None and technique != "":
        known = normalize_technique(technique)
        if known is None:
            raise BadInputError(f"{technique!r} is not one of the 12 CBT techniques")
        technique = known
    flt = QueueFilter(status=RecordStatus(status) if status else None, technique=technique)
    with open_store(db) as store:
        matching = queue_ids(store, flt)
        decided: list[int] = []
        if status is None:  # a decided record is reviewed again only when asked for by name
            decided = sorted(set(matching) - set(undecided(store, matching)))
            matching = [rid for rid in matching if rid not in set(decided)]
        taken = already_assigned(store, matching)
        todo = [rid for rid in matching if rid not in taken]
        split = split_records(todo, names, overlap=overlap, seed=seed)
        plan = {
            "reviewers": list(names),
            "overlap": overlap,
            "seed": seed,
            "filter": {"status": status, "technique": technique},
        }
        assign(store, split.by_record, plan=plan)
    scope = flt.describe()
    if status is None:
        scope = scope.replace("all statuses", "still to review")
    loads = ", ".join(f"{name} {n}" for name, n in split.load().items())
    click.echo(
        f"assigned {len(split.by_record)} records ({scope}; seed {seed}): {loads};"
        f" {split.double} reviewed by two"
    )
    if taken:
        click.echo(f"skipped {len(taken)} records already assigned")
    if decided:
        click.echo(
            f"skipped {len(decided)} records already decided (accepted, rejected or disputed);"
            " --status accepted (or rejected) assigns them for a second review"
        )
