"""The reviewers' agreement as rich tables: one for `studio agreement` and the Stats screen alike.
A summary row per stage, then each stage's raw table (who chose what against whom)."""

from __future__ import annotations

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from studio.reliability import LEVEL
from studio.team.agreement import StageAgreement, TableKind, TeamAgreement

TITLE = "Agreement between reviewers"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _count(value: float) -> str:
    """Whole counts as integers; coincidences (fractions when an item has 3+ decisions) to 2
    decimals."""
    text = f"{value:.2f}"
    return text.removesuffix(".00")


def _name(stage: StageAgreement) -> str:
    return stage.stage.replace("_", " ")


def summary_table(report: TeamAgreement) -> Table:
    table = Table(
        title=f"{TITLE} ({report.double_reviewed:,} records double-reviewed)",
        title_justify="left",
        expand=True,
    )
    for column in ("stage", "reviewers", "items", "statistic", "value", f"{LEVEL:.0%} CI"):
        table.add_column(column, justify="right" if column == "items" else "left")
    table.add_column("agreement", justify="right")
    for stage in report.stages:
        ci = "—" if stage.ci is None else f"[{stage.ci[0]:.2f}, {stage.ci[1]:.2f}]"
        percent = stage.percent_agreement
        table.add_row(
            _name(stage),
            ", ".join(stage.reviewers) or "—",
            str(stage.items),
            stage.statistic or "—",
            stage.note if stage.value is None else _number(stage.value),
            ci,
            "—" if percent is None else f"{percent:.0%}",
        )
    return table


def raw_table(stage: StageAgreement) -> Table:
    """Confusion counts (rows: the first reviewer, columns: the second) or, with more
    reviewers, Krippendorff's coincidence matrix."""
    if stage.table_kind is TableKind.CONFUSION:
        first, second = stage.reviewers
        title, corner = f"{_name(stage)}: {first} ↓ × {second} →", first
    else:
        title, corner = f"{_name(stage)}: coincidences", ""
    table = Table(title=title, title_justify="left")
    table.add_column(corner)
    for category in stage.categories:
        table.add_column(category, justify="right")
    for category, row in zip(stage.categories, stage.table, strict=True):
        table.add_row(category, *(_count(v) for v in row))
    return table


def agreement_view(report: TeamAgreement) -> RenderableType:
    """The whole report; one line when nobody double-reviewed anything."""
    if not report.double_reviewed:
        return Text.assemble((f"{TITLE}: ", "bold"), (report.note, "italic"))
    raw = [raw_table(s) for s in report.stages if s.items]
    return Group(summary_table(report), Columns(raw, padding=(0, 2)))
