"""The queue: every record, a page at a time, filtered by status, technique and text."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, Header, Input, Static

from studio.model import RecordStatus
from studio.store.queue import (
    QueueFilter,
    QueueRow,
    queue_count,
    queue_page,
    queue_rows,
    status_counts,
)
from studio.store.store import Store
from studio.tui.formatting import one_line, short_time, status_content, status_label
from studio.tui.messages import QueueCounted, QueuePageLoaded, QueueRowsRefreshed
from studio.tui.screens.base import StudioScreen
from studio.tui.screens.dialogs import TechniqueChoice, TechniqueScreen
from studio.tui.widgets.footer import StudioFooter
from studio.tui.widgets.queue_table import QueueTable

#: `f` steps through these status filters.
STATUS_CYCLE: tuple[RecordStatus | None, ...] = (
    None,
    RecordStatus.IN_REVIEW,
    RecordStatus.PENDING,
    RecordStatus.ACCEPTED,
    RecordStatus.REJECTED,
    RecordStatus.DISPUTED,
)
#: Columns other than the thought, with their widths; the thought takes what is left.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "#", 6),
    ("status", "Status", 11),
    ("technique", "Technique", 24),
    ("thought", "Thought", 0),
    ("score", "CTRS", 6),
    ("attitude", "Attitude", 8),
    ("reviewer", "Reviewer", 10),
    ("updated", "Updated", 11),
)
SEARCH_DELAY_S = 0.3


def score_content(row: QueueRow) -> Content:
    """The judge's CTRS mean and a flag mark (— when not judged or stale)."""
    mean = "—" if row.ctrs_mean is None else f"{row.ctrs_mean:.1f}"
    if row.flagged:
        return Content.assemble(mean, " ", Content.styled("⚑", "bold $error"))
    return Content(mean)


def count_queue(store: Store, flt: QueueFilter) -> QueueCounted:
    return QueueCounted(flt, status_counts(store), queue_count(store, flt))


class QueueScreen(StudioScreen):
    CSS_PATH = "queue.tcss"
    #: The keys the footer keeps when the terminal is too narrow for all (80 columns).
    FOOTER_PRIORITY = ("queue.open", "queue.search", "queue.status", "app.help")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="queue.open", tooltip="Review the selected record"),
        Binding("slash", "search", "Search", id="queue.search", key_display="/"),
        Binding("f", "cycle_status", "Status", id="queue.status", tooltip="Filter by status"),
        Binding("g", "choose_technique", "Technique", id="queue.technique"),
        Binding(
            "o",
            "toggle_by_score",
            "By score",
            id="queue.by_score",
            tooltip="Sort by the judge's CTRS mean, lowest first (again: by id)",
        ),
        Binding(
            "F",
            "toggle_flagged",
            "Flagged",
            id="queue.flagged",
            tooltip="Only records the judge flagged for safety (again: all)",
        ),
        Binding("s", "stats", "Stats", id="queue.stats", tooltip="Counts and charts"),
        Binding(
            "D",
            "disputes",
            "Disputes",
            id="queue.disputes",
            tooltip="Adjudicate the records double reviewers decided differently",
        ),
        Binding(
            "t",
            "app.training",
            "Training",
            id="queue.training",
            tooltip="Train a counselor model on the accepted records",
        ),
        Binding("escape", "clear_filters", "Clear filters", id="queue.clear"),
        Binding("ctrl+r", "reload", "Reload", id="queue.reload", show=False),
    ]

    queue_filter: reactive[QueueFilter] = reactive(QueueFilter, bindings=True, init=False)
    """What the queue shows; `n` / `p` in a review walk the same filter."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded_ids: list[int] = []
        self.complete = False
        """True once the last page of the filter is on screen."""
        self.reading_page = False
        """True while a page is being read. Not `loading`: that is Textual's own `Widget.loading`,
        which covers the screen with a spinner and takes the focus from the search box."""
        self.matching: int | None = None
        """How many records the filter matches (counted apart from the pages)."""
        self._search_timer: Timer | None = None
        self._reviewing = False
        """True while a review opened from here is on top (back from it, the cursor follows)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="counts")
        with Horizontal(id="filters"):
            yield Static(id="filter-status", classes="filter")
            yield Static(id="filter-technique", classes="filter")
            search = Input(placeholder="Search thoughts and personas, or #id  (/)", id="search")
            search.cursor_blink = self.studio.settings.cursor_blink
            yield search
        yield QueueTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Static(id="showing")
        yield StudioFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        fixed = sum(width + 2 for _, _, width in COLUMNS)
        self.thought_width = max(self.app.size.width - fixed - 4, 24)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width or self.thought_width)
        table.focus()
        self._show_filter()
        self.reload()
        interval = self.studio.settings.refresh_interval
        if interval:
            self.set_interval(interval, self.recount)

    # -- loading ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Start the current filter from its first page."""
        self.reading_page = True
        self.complete = False
        self.matching = None
        self.load_page(self.queue_filter, after=0, reset=True)
        self.recount()

    def recount(self) -> None:
        self.count(self.queue_filter)

    @work(group="queue-page", exclusive=True, exit_on_error=False, description="Read the queue")
    async def load_page(
        self, flt: QueueFilter, *, after: int, reset: bool, offset: int = 0
    ) -> None:
        size = self.studio.settings.page_size
        rows = await self.studio.lane.run(
            partial(
                queue_page,
                flt=flt,
                after=after,
                limit=size + 1,
                offset=offset,
                reviewer=self.studio.settings.reviewer,
            )
        )
        self.post_message(QueuePageLoaded(flt, rows[:size], reset, complete=len(rows) <= size))

    @work(group="queue-count", exclusive=True, exit_on_error=False, description="Count the queue")
    async def count(self, flt: QueueFilter) -> None:
        self.post_message(await self.studio.lane.run(partial(count_queue, flt=flt)))

    @work(group="queue-page", exit_on_error=False, description="Refresh the queue")
    async def refresh_rows(self, ids: list[int]) -> None:
        rows = await self.studio.lane.run(partial(queue_rows, ids=ids))
        self.post_message(QueueRowsRefreshed(rows))

    def on_queue_page_loaded(self, message: QueuePageLoaded) -> None:
        if message.filter != self.queue_filter:
            return
        table = self.query_one(DataTable)
        if message.reset:
            table.clear()
            self.loaded_ids = []
        for row in message.rows:
            table.add_row(*self._cells(row), key=str(row.id))
            self.loaded_ids.append(row.id)
        self.reading_page = False
        self.complete = message.complete
        self._show_showing()

    def on_queue_counted(self, message: QueueCounted) -> None:
        shown = [
            RecordStatus.IN_REVIEW,
            RecordStatus.PENDING,
            RecordStatus.ACCEPTED,
            RecordStatus.REJECTED,
        ]
        if message.by_status.get(RecordStatus.DISPUTED):  # team review: waiting for adjudication
            shown.append(RecordStatus.DISPUTED)
        parts = [
            Content.assemble(status_content(status), f" {message.by_status[status]:,}")
            for status in shown
        ]
        self.query_one("#counts", Static).update(Content("   ").join(parts))
        if message.filter == self.queue_filter:
            self.matching = message.matching
            self._show_showing()

    def on_queue_rows_refreshed(self, message: QueueRowsRefreshed) -> None:
        table = self.query_one(DataTable)
        for row in message.rows:
            if str(row.id) not in table.rows:
                continue  # the filter changed meanwhile
            for (key, _, _), value in zip(COLUMNS, self._cells(row), strict=True):
                table.update_cell(str(row.id), key, value)

    def _cells(self, row: QueueRow) -> tuple[Content | str, ...]:
        return (
            str(row.id),
            status_content(row.status),
            one_line(row.technique, 24) if row.technique else "—",
            one_line(row.thought, self.thought_width),
            score_content(row),
            row.attitude or "—",
            row.last_reviewer or "—",
            short_time(row.updated_at)[5:],
        )

    def _show_showing(self) -> None:
        matching = self.matching
        shown = len(self.loaded_ids)
        total = "…" if matching is None else f"{matching:,}"
        more = "" if self.complete else " · more load as you scroll"
        self.query_one("#showing", Static).update(
            f"{shown:,} of {total} records · {self.queue_filter.describe()}{more}"
        )

    def _show_filter(self) -> None:
        flt = self.queue_filter
        status = status_label(flt.status) if flt.status else "all"
        technique = "all" if flt.technique is None else (flt.technique or "none")
        self.query_one("#filter-status", Static).update(f"Status: {status} (f)")
        self.query_one("#filter-technique", Static).update(f"Technique: {technique} (g)")

    def _move_to(self, record_id: int | None) -> None:
        if record_id is not None and record_id in self.loaded_ids:
            self.query_one(DataTable).move_cursor(row=self.loaded_ids.index(record_id))

    @on(DataTable.RowHighlighted)
    def load_more(self, event: DataTable.RowHighlighted) -> None:
        """Read the next page before the cursor reaches the end of what is loaded."""
        size = self.studio.settings.page_size
        near_end = event.cursor_row >= len(self.loaded_ids) - max(size // 2, 1)
        if near_end and not self.complete and not self.reading_page and self.loaded_ids:
            self.reading_page = True
            self.load_page(
                self.queue_filter,
                after=self.loaded_ids[-1],
                reset=False,
                offset=len(self.loaded_ids),
            )

    def on_screen_resume(self) -> None:
        # Back from a review: show the decisions just made, and the record the reviewer was on.
        if self._reviewing and self.loaded_ids:
            self.refresh_rows(list(self.loaded_ids))
            self._move_to(self.studio.last_record_id)
            self.recount()
        self._reviewing = False

    # -- filters ----------------------------------------------------------------------------

    def watch_queue_filter(self) -> None:
        self._show_filter()
        self.reload()

    def action_cycle_status(self) -> None:
        index = STATUS_CYCLE.index(self.queue_filter.status)
        status = STATUS_CYCLE[(index + 1) % len(STATUS_CYCLE)]
        self.queue_filter = replace(self.queue_filter, status=status)

    def action_toggle_by_score(self) -> None:
        self.queue_filter = replace(self.queue_filter, by_score=not self.queue_filter.by_score)

    def action_toggle_flagged(self) -> None:
        self.queue_filter = replace(self.queue_filter, flagged=not self.queue_filter.flagged)

    def set_status(self, status: RecordStatus | None) -> None:
        self.queue_filter = replace(self.queue_filter, status=status)

    def set_technique(self, technique: str | None) -> None:
        self.queue_filter = replace(self.queue_filter, technique=technique)

    def action_choose_technique(self) -> None:
        def chosen(choice: TechniqueChoice | None) -> None:
            if choice is not None:
                self.set_technique(choice.technique)

        screen = TechniqueScreen(
            "Show records with the technique", self.queue_filter.technique, for_filter=True
        )
        self.app.push_screen(screen, chosen)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def search_soon(self, event: Input.Changed) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DELAY_S, self._apply_search)

    @on(Input.Submitted, "#search")
    def search_now(self, event: Input.Submitted) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._apply_search()
        self.query_one(DataTable).focus()

    def _apply_search(self) -> None:
        text = self.query_one("#search", Input).value.strip()
        if text != self.queue_filter.search:
            self.queue_filter = replace(self.queue_filter, search=text)

    def action_clear_filters(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.query_one(DataTable).focus()
            return
        search.value = ""
        self.queue_filter = QueueFilter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filters":
            searching = self.is_mounted and self.query_one("#search", Input).has_focus
            return searching or self.queue_filter != QueueFilter()
        if action == "open":
            return bool(self.loaded_ids)
        return True

    # -- elsewhere --------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def open_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if not self.loaded_ids or table.cursor_row >= len(self.loaded_ids):
            return
        self._reviewing = True
        self.studio.open_record(self.loaded_ids[table.cursor_row], self.queue_filter)

    def action_stats(self) -> None:
        self.studio.open_stats()

    def action_disputes(self) -> None:
        self._reviewing = True  # back from it, the rows show what was settled
        self.studio.open_adjudication()

    def action_reload(self) -> None:
        self.reload()
