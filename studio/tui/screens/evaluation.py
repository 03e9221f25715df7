"""Evaluations side by side (e.g. base model, adapter, teacher): per CTRS item a bar with its 95 %
interval, the PANAS change, the same per attitude; every session, lowest score first, opens as a
transcript with the judge's explanations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Header, Label, SelectionList, Static

from studio.cbt.ctrs import CTRS_ITEMS
from studio.evaluate.report import comparison
from studio.evaluate.storage import SessionRow, send_back
from studio.tui.evaluating import (
    EvaluationProgress,
    EvaluationProgressed,
    counselor_of_run,
    start_evaluation,
)
from studio.tui.screens.base import StudioScreen
from studio.tui.widgets.footer import StudioFooter

#: Characters of a 0-6 bar.
BAR_WIDTH = 18
SCALE_MAX = 6.0


@dataclass
class EvaluationsLoaded(Message, bubble=False):
    """Each evaluation's summary, and its finished sessions lowest score first."""

    evaluations: list[tuple[dict[str, Any], list[SessionRow]]]


def interval_bar(stat: dict[str, Any], width: int = BAR_WIDTH) -> Text:
    """The mean as a filled bar on 0-6 with its 95 % interval shaded around the bar's end."""
    mean = stat.get("mean")
    if mean is None:
        return Text("—", style="dim")
    low, high = stat["ci95"]

    def cell(value: float) -> int:
        return max(0, min(width, round(value / SCALE_MAX * width)))

    filled = cell(mean)
    lo = cell(low) if low is not None else filled
    hi = cell(high) if high is not None else filled
    # █ up to the interval's low end, ▓ from there to the mean, ░ from the mean to the high end.
    bar = Text()
    for n in range(width):
        if n < min(lo, filled):
            bar.append("█", style="green")
        elif n < filled:
            bar.append("▓", style="green")
        elif n < hi:
            bar.append("░", style="yellow")
        else:
            bar.append("·", style="dim")
    numbers = f" {mean:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")
    bar.append(numbers)
    return bar


def _stat(stat: dict[str, Any], signed: bool = False) -> str:
    if stat.get("mean") is None:
        return "—"
    low, high = stat["ci95"]
    fmt = "{:+.1f}" if signed else "{:.2f}"
    text = fmt.format(stat["mean"])
    return text + (f" [{fmt.format(low)}, {fmt.format(high)}]" if low is not None else "")


def items_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(
        title="CTRS items (0-6), mean and 95% interval", title_justify="left", expand=True
    )
    table.add_column("item")
    for s in summaries:
        table.add_column(f"{s['label']} (n={s['sessions']})")
    for item in CTRS_ITEMS:
        table.add_row(item.replace("_", " "), *(interval_bar(s["items"][item]) for s in summaries))
    table.add_row("CTRS mean", *(interval_bar(s["ctrs_mean"]) for s in summaries))
    return table


def panas_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(
        title="PANAS change (after - before; affect sums 10-50)", title_justify="left", expand=True
    )
    table.add_column("")
    for s in summaries:
        table.add_column(s["label"])
    table.add_row(
        "positive affect", *(_stat(s["panas"]["positive_change"], True) for s in summaries)
    )
    table.add_row(
        "negative affect", *(_stat(s["panas"]["negative_change"], True) for s in summaries)
    )
    table.add_row("flagged sessions", *(str(s["flagged"]) for s in summaries))
    return table


def attitude_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Per attitude: CTRS mean · PANAS positive / negative change",
        title_justify="left",
        expand=True,
    )
    table.add_column("attitude")
    for s in summaries:
        table.add_column(s["label"])
    attitudes = sorted({a for s in summaries for a in s["per_attitude"]})
    for attitude in attitudes:
        cells = []
        for s in summaries:
            part = s["per_attitude"].get(attitude)
            if part is None:
                cells.append("—")
                continue
            panas = part["panas"]
            cells.append(
                f"{_stat(part['ctrs_mean'])} · {_stat(panas['positive_change'], True)}"
                f" / {_stat(panas['negative_change'], True)} (n={part['sessions']})"
            )
        table.add_row(attitude, *cells)
    return table


class EvaluationScreen(StudioScreen):
    CSS_PATH = "evaluation.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,escape", "back", "Back", id="evaluation.back"),
        Binding("ctrl+r", "reload", "Reload", id="evaluation.reload"),
        Binding(
            "e",
            "evaluate",
            "Evaluate run",
            id="evaluation.evaluate",
            tooltip="Evaluate the newest finished training run in the background (studio eval)",
        ),
        Binding(
            "c",
            "chat",
            "Chat",
            id="evaluation.chat",
            tooltip="Talk to the selected session's counselor (a training run's adapter)",
        ),
        Binding(
            "b",
            "send_back",
            "Send back",
            id="evaluation.send_back",
            tooltip="The selected session's client gets a new record to synthesize and review",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[str, SessionRow]] = []
        """Every finished session of the chosen evaluations with its evaluation's label, lowest
        score first (the sessions table's rows)."""
        self.summaries: list[dict[str, Any]] = []
        """Every evaluation with finished sessions, as `studio eval --json` prints them."""
        self.evaluations: list[tuple[dict[str, Any], list[SessionRow]]] = []
        """Each of those with its finished sessions."""
        self.chosen: set[int] = set()
        """The ids of the evaluations compared side by side (all at first)."""
        self.known: set[int] = set()
        """The ids of the evaluations the choice was made among."""
        self.progress_shown: EvaluationProgress | None = None
        """The app's evaluation as last shown."""
        self.eval_args: list[str] = []
        """More `studio eval` options for an evaluation started here (e.g. `--sessions 10`)."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="evaluation"):
            yield Label("", id="progress")
            yield Label("Compare (space toggles)", classes="section")
            yield SelectionList[int](id="chosen")
            yield Static("Loading evaluations…", id="items", classes="panel")
            yield Static(id="panas", classes="panel")
            yield Static(id="attitudes", classes="panel")
            yield Label("Sessions, lowest score first (enter: transcript)", classes="section")
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield StudioFooter()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        table.add_columns("evaluation", "client", "attitude", "CTRS", "PANAS +/-", "turns", "flags")
        self.load()

    @work(group="evaluations", exclusive=True, exit_on_error=False, description="Read evaluations")
    async def load(self) -> None:
        self.post_message(EvaluationsLoaded(await self.studio.lane.run(comparison)))

    def on_evaluations_loaded(self, message: EvaluationsLoaded) -> None:
        self.evaluations = message.evaluations
        self.summaries = [summary for summary, _ in message.evaluations]
        ids = [summary["evaluation"] for summary in self.summaries]
        # A reload keeps the choice; an evaluation new since then is compared too.
        self.chosen = {i for i in ids if i in self.chosen or i not in self.known}
        self.known = set(ids)
        choices = self.query_one("#chosen", SelectionList)
        with choices.prevent(SelectionList.SelectedChanged):
            choices.clear_options()
            choices.add_options(
                (
                    f"{s['label']} (n={s['sessions']})",
                    s["evaluation"],
                    s["evaluation"] in self.chosen,
                )
                for s in self.summaries
            )
        self.show_chosen()

    @on(SelectionList.SelectedChanged, "#chosen")
    def _choice_changed(self, event: SelectionList.SelectedChanged[int]) -> None:
        self.chosen = set(event.selection_list.selected)
        self.show_chosen()

    def show_chosen(self) -> None:
        """The bars, the tables and the sessions of the chosen evaluations only."""
        items = self.query_one("#items", Static)
        panels = [self.query_one(f"#{name}", Static) for name in ("panas", "attitudes")]
        table = self.query_one("#sessions", DataTable)
        table.clear()
        self.sessions = []
        if not self.evaluations:
            items.update(
                "No evaluation yet: run `studio eval --run N` (and `--model BASE --run N` for the"
                " base model) to compare counselors here."
            )
            return
        chosen = [(s, rows) for s, rows in self.evaluations if s["evaluation"] in self.chosen]
        summaries = [summary for summary, _ in chosen]
        if not summaries:
            items.update("Choose the evaluations to compare above (space toggles one).")
            for panel in panels:
                panel.update("")
            return
        items.update(items_table(summaries))
        panels[0].update(panas_table(summaries))
        panels[1].update(attitude_table(summaries))
        self.sessions = [(summary["label"], s) for summary, rows in chosen for s in rows]
        self.sessions.sort(key=lambda pair: (pair[1].ctrs_mean is None, pair[1].ctrs_mean or 0.0))
        for label, s in self.sessions:
            table.add_row(
                label,
                s.client_key,
                s.attitude,
                "—" if s.ctrs_mean is None else f"{s.ctrs_mean:.2f}",
                "—"
                if s.positive_change is None
                else f"{s.positive_change:+.0f} / {s.negative_change or 0:+.0f}",
                str(s.turns),
                str(len(s.flags)),
            )
        if not isinstance(self.focused, SelectionList):
            table.focus()

    @on(DataTable.RowSelected, "#sessions")
    def open_session(self, event: DataTable.RowSelected) -> None:
        label, session = self.sessions[event.cursor_row]
        self.app.push_screen(TranscriptScreen(label, session))

    def action_reload(self) -> None:
        self.load()

    def action_evaluate(self) -> None:
        self.evaluate()

    @work(group="evaluate", exclusive=True, exit_on_error=False, description="Evaluate a run")
    async def evaluate(self) -> None:
        """The newest finished run, evaluated in its own process (it goes on if the screen is
        left; the same command again resumes it)."""
        from studio.store.runs import RunStatus, list_runs

        def newest(store: Any) -> int | None:
            runs = list_runs(store, status=RunStatus.COMPLETED, limit=1)
            return runs[0].id if runs else None

        run_id = await self.studio.lane.run(newest)
        if run_id is None:
            self.notify("No finished training run to evaluate", severity="warning")
        elif not start_evaluation(self.studio, run_id, self.eval_args):
            running = self.studio.evaluation
            which = f"Run {running.run_id}" if running is not None else "A run"
            self.notify(f"{which} is being evaluated: one at a time", severity="warning")

    def on_evaluation_progressed(self, message: EvaluationProgressed) -> None:
        self.progress_shown = message.progress
        self.query_one("#progress", Label).update(message.progress.describe())
        if not message.progress.running:
            self.load()

    def on_screen_resume(self) -> None:
        # What the app's evaluation said while another screen was on top went to that screen.
        progress = self.studio.evaluation
        if progress is not None and progress is not self.progress_shown:
            self.on_evaluation_progressed(EvaluationProgressed(progress))

    def action_chat(self) -> None:
        table = self.query_one("#sessions", DataTable)
        if not self.sessions or table.cursor_row >= len(self.sessions):
            return
        session = self.sessions[table.cursor_row][1]
        runs = {s["evaluation"]: s["run"] for s in self.summaries}
        run_id = runs.get(session.evaluation_id)
        if run_id is None:
            self.notify("This counselor is not a training run's adapter", severity="warning")
            return
        self.open_chat(run_id)

    @work(group="chat-open", exclusive=True, exit_on_error=False, description="Find the run")
    async def open_chat(self, run_id: int) -> None:
        from studio.tui.screens.chat import ChatScreen

        counselor = await self.studio.lane.run(counselor_of_run(run_id))
        self.app.push_screen(ChatScreen(counselor))

    def action_send_back(self) -> None:
        table = self.query_one("#sessions", DataTable)
        if not self.sessions or table.cursor_row >= len(self.sessions):
            return
        self.send_back(self.sessions[table.cursor_row][1])

    @work(group="send-back", exclusive=True, exit_on_error=False, description="Send a session back")
    async def send_back(self, session: SessionRow) -> None:
        reviewer = self.studio.settings.reviewer

        def job(store: Any) -> int | None:
            return send_back(store, session.id, reviewer=reviewer)

        record_id = await self.studio.lane.run(job)
        if record_id is None:
            self.notify(
                "This client is not a record of the database (a file's client or a chat):"
                " nothing to synthesize",
                severity="warning",
            )
        else:
            self.notify(
                f"Record {record_id} waits for `studio synth`: {session.client_key}"
                f" ({session.attitude}) comes back to review"
            )

    def action_back(self) -> None:
        self.dismiss(None)


def transcript_text(label: str, session: SessionRow) -> Text:
    text = Text()
    text.append(f"{label} · {session.client_key} · {session.attitude}\n", style="bold")
    for line in session.transcript.splitlines():
        role, _, said = line.partition(":")
        text.append(f"{role}:", style="bold cyan" if role == "Counselor" else "bold magenta")
        text.append(f"{said}\n")
    text.append("\nThe judge\n", style="bold")
    for item, value in session.ctrs.items():
        text.append(f"{item.replace('_', ' ')}: {value['score']}", style="bold")
        text.append(f" — {value['explanation']}\n")
    for flag in session.flags:
        text.append(f"flag {flag.get('kind')} (turn {flag.get('turn')}): ", style="bold red")
        text.append(f"{flag.get('explanation', '')}\n")
    return text


class TranscriptScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,escape", "close", "Close", id="transcript.close"),
    ]
    CSS_PATH = "evaluation.tcss"

    def __init__(self, label: str, session: SessionRow) -> None:
        super().__init__()
        self.label = label
        self.session = session

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(transcript_text(self.label, self.session), id="transcript")

    def action_close(self) -> None:
        self.dismiss(None)
