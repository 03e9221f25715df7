"""The Training pane's run history: one row per run with its evaluation, newest first.

Enter on a row posts `RunChosen`; each load posts `RunHistoryShown`. The app's evaluation of a
run reports under the table, and its end reloads the table (its summary is in it then).
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Label
from textual.worker import Worker

from studio.evaluate.report import run_summaries
from studio.store import Store
from studio.store.runs import RunRow, RunStatus
from studio.tui.evaluating import EvaluationProgress
from studio.tui.formatting import short_time
from studio.tui.messages import RunChosen, RunHistoryLoaded, RunHistoryShown
from studio.tui.screens.base import report_worker_failure
from studio.tui.store_lane import StoreLane
from studio.tui.training import run_history

RUN_STATUS_COLOR = {
    RunStatus.RUNNING: "primary",
    RunStatus.COMPLETED: "success",
    RunStatus.STOPPED: "warning",
    RunStatus.FAILED: "error",
}
HISTORY_COLUMNS: tuple[tuple[str, int], ...] = (
    ("#", 4),
    ("Status", 10),
    ("Recipe", 6),
    ("Started", 11),
    ("Steps", 6),
    ("Loss", 7),
    ("Eval", 7),
    ("Evaluation", 52),
    ("Examples", 8),
    ("Folder", 24),
)


def history_cells(run: RunRow, evaluation: str | None = None) -> tuple[Content | str, ...]:
    status = Content.styled(run.status.value, f"${RUN_STATUS_COLOR[run.status]}")
    metrics = run.metrics

    def loss(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.4f}" if isinstance(value, int | float) else "—"

    steps = metrics.get("global_step")
    return (
        str(run.id),
        status,
        str(run.config.get("recipe", "?")),
        short_time(run.started_at)[5:],
        str(steps) if steps is not None else "—",
        loss("train_loss"),
        loss("eval_loss"),
        evaluation or "—",
        f"{run.n_examples:,}",
        Path(run.output_dir).name,
    )


class RunHistory(Vertical):
    """Styled from training.tcss (`#runs`)."""

    def __init__(self, lane: StoreLane, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lane = lane
        self.history: list[RunRow] = []
        self.evaluations: dict[int, str] = {}
        """Each evaluated run's summary line, by run id."""
        self.progress_shown: EvaluationProgress | None = None
        """The app's evaluation as last shown under the history."""

    def compose(self) -> ComposeResult:
        yield Label("Runs (enter shows one)", classes="section")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        # The table is wider than the pane: the selected run's evaluation, always seen.
        yield Label("", id="run-evaluation")
        yield Label("", id="eval-progress")

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, width in HISTORY_COLUMNS:
            table.add_column(label, width=width)

    @work(
        group="training-history",
        exclusive=True,
        exit_on_error=False,
        description="Read the run history",
    )
    async def load(self) -> None:
        def job(store: Store) -> tuple[list[RunRow], dict[int, str]]:
            return run_history(store), run_summaries(store)

        self.post_message(RunHistoryLoaded(*await self.lane.run(job)))

    def on_run_history_loaded(self, message: RunHistoryLoaded) -> None:
        self.history = message.rows
        self.evaluations = message.evaluations
        table = self.query_one("#runs", DataTable)
        # Keep the cursor on the same run (an evaluation's end reloads the history).
        selected = self.selected_run()
        table.clear()
        for row in message.rows:
            table.add_row(*history_cells(row, message.evaluations.get(row.id)), key=str(row.id))
        if selected is not None and selected.id in (row.id for row in message.rows):
            table.move_cursor(row=table.get_row_index(str(selected.id)))
        self.show_run_evaluation()
        self.post_message(RunHistoryShown(message.rows))

    def selected_run(self) -> RunRow | None:
        """The run under the cursor."""
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        run_id = int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
        return next((row for row in self.history if row.id == run_id), None)

    @on(DataTable.RowHighlighted, "#runs")
    def show_run_evaluation(self) -> None:
        run = self.selected_run()
        line = self.evaluations.get(run.id) if run is not None else None
        self.query_one("#run-evaluation", Label).update(
            "" if run is None else f"Run {run.id}: {line or 'not evaluated yet'}"
        )

    @on(DataTable.RowSelected, "#runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        run_id = int(str(event.row_key.value))
        for row in self.history:
            if row.id == run_id:
                self.post_message(RunChosen(row))

    def show_evaluation(self, progress: EvaluationProgress) -> None:
        """The app's evaluation said more; once it ends, its summary is in the history."""
        self.progress_shown = progress
        self.query_one("#eval-progress", Label).update(progress.describe())
        if not progress.running:
            self.load()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)
