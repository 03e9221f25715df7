"""Rich tables for the Stats screen: the judge against clinicians, and coverage of accepted
records against all records."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from studio.judge.agreement import AgreementReport
from studio.judge.coverage import Spread


def agreement_table(report: AgreementReport) -> RenderableType:
    table = Table(
        title=f"Judge against clinician ({report.pairs:,} paired ratings)",
        title_justify="left",
        expand=True,
    )
    for column in ("item", "pairs", "kappa", "Spearman [95% CI]", "bias", "AUC"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for item in report.items:
        ci = item.spearman_ci
        rho = (
            "too few"
            if not item.enough
            else "—"
            if item.spearman is None
            else f"{item.spearman:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        )
        table.add_row(
            item.item.replace("_", " "),
            str(item.pairs),
            "—" if item.kappa is None else f"{item.kappa:.2f}",
            rho,
            "—" if item.bias is None else f"{item.bias:+.2f}",
            "—" if item.auc is None else f"{item.auc:.2f}",
        )
    notes = [Text(n, style="italic") for n in report.notes]
    notes += [Text(i.verdict, style="bold red") for i in report.items if "overrates" in i.verdict]
    return Group(table, *notes)


def coverage_table(spread: Spread) -> RenderableType:
    table = Table(
        title=f"Accepted per {spread.dimension} (of all)", title_justify="left", expand=True
    )
    table.add_column(spread.dimension)
    table.add_column("accepted", justify="right")
    table.add_column("share", justify="right")
    table.add_column("all", justify="right")
    total = max(spread.accepted, 1)
    for label, accepted, every in spread.rows:
        table.add_row(label, f"{accepted:,}", f"{accepted / total:.0%}", f"{every:,}")
    return table
