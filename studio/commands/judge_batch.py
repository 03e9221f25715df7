"""`studio judge --batch` (and `--wait`, `--cancel`, `--dry-run`): the judge through a server's
batch endpoints. The work is `studio.judge.batch`; the run and its report are `studio synth
--batch`'s (`run_batches`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from studio.commands.common import BatchOptions, open_store
from studio.commands.synth_batch import print_estimate, run_batches
from studio.errors import StudioError


def judge_batch(
    db: Path, settings: Any, limit: int | None, rejudge: bool, batch: BatchOptions
) -> None:
    from studio.judge.batch import BatchJudge

    runner = run_batches(
        db,
        lambda store, client: BatchJudge(
            store, client, settings, rejudge=rejudge, window=batch.completion_window
        ),
        settings,
        batch,
        again="studio judge --batch",
        reasons="the records stay unjudged",
        limit=limit,
    )
    judged = runner.judged
    if judged.records:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(judged.failures.items()))
        click.echo(
            f"judged {judged.records} records: {judged.scored} scored ({judged.flagged} flagged),"
            f" {judged.failed} failed{f' ({reasons})' if reasons else ''}"
        )
    if judged.failed:
        raise StudioError(
            f"{judged.failed} judgement{'s' * (judged.failed > 1)} failed; they are stored with"
            " the reason and the raw answer, and `studio judge --batch` tries them again"
        )


def judge_dry_run(db: Path, settings: Any, limit: int | None, rejudge: bool) -> None:
    from studio.judge.batch import estimate_judging
    from studio.judge.engine import judge_settings

    settings = judge_settings(settings)
    with open_store(db, must_exist=True) as store:
        found = estimate_judging(store, settings, limit=limit, rejudge=rejudge)
    click.echo(f"dry run: {found.requests} judge requests")
    if found.in_flight:
        click.echo(f"{found.in_flight} judge requests are in flight already (not counted)")
    learned = "answer sizes learned from the scores so far"
    print_estimate(found, settings, learned if found.learned else "a typical answer size")
