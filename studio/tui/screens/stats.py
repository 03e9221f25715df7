"""Counts: records and stages per status, records per technique (a bar chart), per reviewer;
reviewers against each other, the judge against clinicians, and how accepted records cover
techniques, attitudes, patterns and score bands."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Label, Static

from studio.judge.agreement import agreement_report
from studio.judge.coverage import coverage
from studio.store.queue import ReviewStats, review_stats
from studio.team.agreement import decided_kinds, team_agreement
from studio.team.agreement_tables import agreement_view
from studio.tui.formatting import status_label
from studio.tui.messages import JudgeStatsLoaded, StatsLoaded, TeamAgreementLoaded
from studio.tui.screens.base import StudioScreen
from studio.tui.widgets.bar_chart import BarChart
from studio.tui.widgets.footer import StudioFooter
from studio.tui.widgets.judge_stats import agreement_table, coverage_table


def counts_table(title: str, counts: dict[str, int], *, first: str = "status") -> Table:
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column(first)
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(status_label(key), f"{value:,}")
    return table


def reviewers_table(stats: ReviewStats) -> Table:
    table = Table(title="Per reviewer (decisions)", title_justify="left", expand=True)
    for column in ("reviewer", "accepted", "edited", "rejected", "records rejected", "undone"):
        table.add_column(column, justify="left" if column == "reviewer" else "right")
    for a in stats.reviewers:
        table.add_row(
            a.reviewer,
            f"{a.accepted:,}",
            f"{a.edited:,}",
            f"{a.rejected:,}",
            f"{a.records_rejected:,}",
            f"{a.undone:,}",
        )
    if not stats.reviewers:
        table.add_row("nobody yet", "", "", "", "", "")
    return table


class StatsScreen(StudioScreen):
    CSS_PATH = "stats.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,escape", "back", "Back", id="stats.back"),
        Binding("ctrl+r", "reload", "Reload", id="stats.reload"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="stats"):
            with Horizontal(id="status-tables"):
                yield Static(id="records", classes="counts")
                yield Static(id="stages", classes="counts")
            yield Label("Records per technique", classes="section")
            yield BarChart(id="techniques", width=36)
            yield Static(id="reviewers", classes="counts")
            yield Static(id="team-agreement", classes="counts")
            yield Static(id="agreement", classes="counts")
            # Two by two: a technique name is 30 characters, four tables in a row would wrap.
            for row in range(2):
                with Horizontal(classes="coverage"):
                    for n in (2 * row, 2 * row + 1):
                        yield Static(id=f"coverage-{n}", classes="counts")
        yield StudioFooter()

    def on_mount(self) -> None:
        self.load()

    def load(self) -> None:
        self.count()
        self.load_team_agreement()
        self.load_judge_stats()

    @work(group="stats", exclusive=True, exit_on_error=False, description="Count the database")
    async def count(self) -> None:
        self.post_message(StatsLoaded(await self.studio.lane.run(review_stats)))

    @work(
        group="team-agreement",
        exclusive=True,
        exit_on_error=False,
        description="Reviewers against each other",
    )
    async def load_team_agreement(self) -> None:
        levels = await self.studio.lane.run(decided_kinds)
        # Off the store's thread: the bootstrap would hold every other database job up.
        self.post_message(TeamAgreementLoaded(await asyncio.to_thread(team_agreement, levels)))

    def on_team_agreement_loaded(self, message: TeamAgreementLoaded) -> None:
        self.query_one("#team-agreement", Static).update(agreement_view(message.report))

    @work(
        group="judge-stats",
        exclusive=True,
        exit_on_error=False,
        description="Judge against clinician, and coverage",
    )
    async def load_judge_stats(self) -> None:
        report = await self.studio.lane.run(agreement_report)
        spreads = await self.studio.lane.run(coverage)
        self.post_message(JudgeStatsLoaded(report, spreads))

    def on_judge_stats_loaded(self, message: JudgeStatsLoaded) -> None:
        self.query_one("#agreement", Static).update(agreement_table(message.report))
        for n, spread in enumerate(message.coverage):
            self.query_one(f"#coverage-{n}", Static).update(coverage_table(spread))

    def on_stats_loaded(self, message: StatsLoaded) -> None:
        stats = message.stats
        self.query_one("#records", Static).update(counts_table("Records", stats.records))
        self.query_one("#stages", Static).update(counts_table("Stages", stats.stages))
        self.query_one("#techniques", BarChart).plot(stats.techniques)
        self.query_one("#reviewers", Static).update(reviewers_table(stats))

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.dismiss(None)
