"""Adjudication: the records double reviewers decided differently, their versions side by side.

The adjudicator is the app's reviewer. For the stage on screen they pick one reviewer's version
(`1`, `2`, …), merge (the stage editor, prefilled with reviewer 1's version), or reject; each is
one audited event, and `u` undoes it like any decision (`studio.store.adjudication`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Header, OptionList, Static
from textual.widgets.option_list import Option

from studio.store.adjudication import (
    Dispute,
    Outcome,
    StageDispute,
    Version,
    adjudicate,
    disputes,
)
from studio.store.store import Store
from studio.store.undo import Undone, undo_last
from studio.tui.formatting import one_line
from studio.tui.messages import DisputesLoaded
from studio.tui.screens.base import StudioScreen
from studio.tui.screens.dialogs import ReasonScreen
from studio.tui.screens.editor import EditorScreen
from studio.tui.widgets.diff_view import diff_text
from studio.tui.widgets.footer import StudioFooter

#: Versions shown side by side (a record is rarely assigned to more than two reviewers).
MAX_VERSIONS = 4
#: Actions that write: off (hidden) on a read-only database.
WRITE_ACTIONS = frozenset({"pick", "merge", "reject", "undo"})
PICK_BINDINGS: list[BindingType] = [
    Binding(
        str(n),
        f"pick({n - 1})",
        f"Pick {n}",
        id=f"adjudication.pick_{n}",
        show=n <= 2,
        tooltip=f"Reviewer {n}'s version of the stage becomes the final one",
    )
    for n in range(1, MAX_VERSIONS + 1)
]


def _version_content(number: int, version: Version) -> Content:
    parts: list[Content | str] = [
        Content.styled(f"{number} · {version.reviewer} · {version.kind}", "bold"),
        "\n",
    ]
    if version.note:
        parts += [Content.styled("Reason: ", "italic"), version.note, "\n"]
    if version.text:
        parts += ["\n", version.text]
    return Content.assemble(*parts)


class AdjudicationScreen(StudioScreen):
    CSS_PATH = "adjudication.tcss"
    #: The keys the footer keeps when the terminal is too narrow for all (80 columns).
    FOOTER_PRIORITY = (
        "adjudication.pick_1",
        "adjudication.pick_2",
        "adjudication.merge",
        "adjudication.reject",
        "adjudication.undo",
        "app.help",
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        *PICK_BINDINGS,
        Binding(
            "m",
            "merge",
            "Merge",
            id="adjudication.merge",
            tooltip="Write the final text yourself, starting from reviewer 1's version",
        ),
        Binding("x", "reject", "Reject", id="adjudication.reject", tooltip="Reject the stage"),
        Binding("u", "undo", "Undo", id="adjudication.undo", tooltip="Undo your last decision"),
        Binding("j", "next_stage", "Next stage", id="adjudication.next_stage"),
        Binding("k", "previous_stage", "Prev stage", id="adjudication.previous_stage"),
        Binding("n", "next_record", "Next", id="adjudication.next", tooltip="Next disputed record"),
        Binding("p", "previous_record", "Prev", id="adjudication.previous"),
        Binding("q,escape", "back", "Queue", id="adjudication.back", tooltip="Back to the queue"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.disputes: list[Dispute] = []
        """The records waiting for adjudication, as last read."""
        self.position = 0
        """The record on screen (an index into `disputes`)."""
        self.stage_position = 0
        """The stage on screen (an index into its `stages`): what 1, 2, m and x act on."""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="adjudication"):
            yield OptionList(id="disputes")
            with Vertical(id="detail"):
                yield Static(id="where")
                with Horizontal(id="versions"):
                    for n in range(MAX_VERSIONS):
                        with VerticalScroll(id=f"version-{n}", classes="version"):
                            yield Static(id=f"version-text-{n}")
                with VerticalScroll(id="diff"):
                    yield Static(id="diff-text")
                yield Static(id="last-action")
        yield StudioFooter()

    def on_mount(self) -> None:
        self.title = "Adjudication"
        listing = self.query_one(OptionList)
        listing.can_focus = False  # every key is the screen's; the list only shows the records
        for scroll in self.query(VerticalScroll):
            scroll.can_focus = False
        self.reload(self.studio.lane.submit(disputes))

    @property
    def adjudicator(self) -> str:
        return self.studio.settings.reviewer

    # -- reading ----------------------------------------------------------------------------

    @work(group="adjudication", exit_on_error=False, description="Read the disputes")
    async def reload(self, pending: Future[list[Dispute]]) -> None:
        self.post_message(DisputesLoaded(await asyncio.wrap_future(pending)))

    def on_disputes_loaded(self, message: DisputesLoaded) -> None:
        was = self.current.record_id if self.current else None
        self.disputes = message.disputes
        self.loaded = True
        ids = [d.record_id for d in self.disputes]
        wanted = message.record_id if message.record_id is not None else was
        if wanted in ids:
            self.position = ids.index(wanted)
        self.position = max(0, min(self.position, len(ids) - 1))
        listing = self.query_one(OptionList)
        listing.clear_options()
        listing.add_options(
            Option(f"#{d.record_id} {one_line(d.thought, 24)}", id=str(d.record_id))
            for d in self.disputes
        )
        self.title = f"Adjudication · {len(ids)} disputed"
        self._show_record()
        if message.summary:
            self.query_one("#last-action", Static).update(Content(message.summary))

    @property
    def current(self) -> Dispute | None:
        return self.disputes[self.position] if self.disputes else None

    @property
    def current_stage(self) -> StageDispute | None:
        dispute = self.current
        return dispute.stages[self.stage_position] if dispute else None

    def _show_record(self) -> None:
        dispute = self.current
        if dispute is not None:
            first_open = next((i for i, s in enumerate(dispute.stages) if s.open), 0)
            self.stage_position = first_open
            self.query_one(OptionList).highlighted = self.position
        self._show_stage()

    def _show_stage(self) -> None:
        dispute, on = self.current, self.current_stage
        where = self.query_one("#where", Static)
        diff = self.query_one("#diff", VerticalScroll)
        if dispute is None or on is None:
            where.update("No disputed records: every double-reviewed record is settled.")
            for n in range(MAX_VERSIONS):
                self.query_one(f"#version-{n}").display = False
            diff.display = False
            self.refresh_bindings()
            return
        state = "to settle" if on.open else "agreed"
        if on.adjudication is not None:
            done = on.adjudication
            state = f"settled by {done.adjudicator}: {done.outcome.value} {done.picked}".rstrip()
        where.update(
            Content.assemble(
                Content.styled(f"Record {dispute.record_id}", "bold"),
                f" · {on.label} ({self.stage_position + 1}/{len(dispute.stages)}) · {state}",
                f" · {len(dispute.open_stages)} left to settle in this record",
            )
        )
        for n in range(MAX_VERSIONS):
            pane = self.query_one(f"#version-{n}", VerticalScroll)
            pane.display = n < len(on.versions)
            if n < len(on.versions):
                self.query_one(f"#version-text-{n}", Static).update(
                    _version_content(n + 1, on.versions[n])
                )
                pane.scroll_home(animate=False)
        texts = [v.text for v in on.versions]
        diff.display = len(texts) >= 2 and bool(texts[0] or texts[1])
        if diff.display:
            first, second = on.versions[0].reviewer, on.versions[1].reviewer
            diff.border_title = f"Diff: − {first} · + {second}"
            same = "The two versions have the same text: they differ in the decision only."
            self.query_one("#diff-text", Static).update(diff_text(texts[0], texts[1], same=same))
            diff.scroll_home(animate=False)
        self.refresh_bindings()

    # -- moving -----------------------------------------------------------------------------

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.position = event.option_index
        self._show_record()

    def action_next_stage(self) -> None:
        self._move_stage(1)

    def action_previous_stage(self) -> None:
        self._move_stage(-1)

    def _move_stage(self, step: int) -> None:
        dispute = self.current
        if dispute is not None:
            self.stage_position = (self.stage_position + step) % len(dispute.stages)
            self._show_stage()

    def action_next_record(self) -> None:
        self._move_record(1)

    def action_previous_record(self) -> None:
        self._move_record(-1)

    def _move_record(self, step: int) -> None:
        if self.disputes:
            self.position = (self.position + step) % len(self.disputes)
            self._show_record()

    def action_back(self) -> None:
        self.dismiss(None)

    # -- settling ---------------------------------------------------------------------------

    def _settle(self, job: Callable[[Store], object], summary: str) -> None:
        """Submit now (key-press order is the order they land), then read the list again."""
        dispute = self.current
        record_id = dispute.record_id if dispute else None

        def then(store: Store) -> list[Dispute]:
            job(store)
            return disputes(store)

        self.wait_for_adjudication(self.studio.lane.submit(then), record_id, summary)

    @work(group="adjudication", exit_on_error=False, description="Save the adjudication")
    async def wait_for_adjudication(
        self, pending: Future[list[Dispute]], record_id: int | None, summary: str
    ) -> None:
        # Shielded: leaving the screen must not cancel an adjudication already submitted.
        found = await asyncio.shield(asyncio.wrap_future(pending))
        self.post_message(DisputesLoaded(found, record_id, summary))

    def _adjudicate(
        self,
        outcome: Outcome,
        summary: str,
        *,
        picked: str = "",
        text: str | None = None,
        note: str = "",
        invalid_ok: bool = False,
    ) -> None:
        dispute, on = self.current, self.current_stage
        if dispute is None or on is None:
            return
        job = partial(
            adjudicate,
            record_id=dispute.record_id,
            stage=on.stage,
            adjudicator=self.adjudicator,
            outcome=outcome,
            picked=picked,
            text=text,
            note=note,
            invalid_ok=invalid_ok,
            guideline=self.studio.guideline_version,
        )
        self._settle(job, f"{summary} · {on.label} of record {dispute.record_id}")

    def action_pick(self, number: int) -> None:
        on = self.current_stage
        if on is not None and number < len(on.versions):
            picked = on.versions[number].reviewer
            self._adjudicate(Outcome.PICK, f"✓ Picked {picked}'s version", picked=picked)

    def action_reject(self) -> None:
        on = self.current_stage
        if on is None:
            return

        def rejected(reason: str | None) -> None:
            if reason is not None:
                self._adjudicate(Outcome.REJECT, "✗ Rejected", note=reason)

        screen = ReasonScreen(
            f"Reject the {on.label}?", cursor_blink=self.studio.settings.cursor_blink
        )
        self.app.push_screen(screen, rejected)

    def action_merge(self) -> None:
        dispute, on = self.current, self.current_stage
        if dispute is None or on is None or on.stage is None:
            return

        def merged(text: str | None) -> None:
            # The editor asked before returning a text that breaks the stage rule.
            if text is not None:
                self._adjudicate(Outcome.MERGE, "✎ Merged", text=text, invalid_ok=True)

        editor = EditorScreen(
            record_id=dispute.record_id,
            stage=on.stage,
            text=on.versions[0].text,
            base_text=on.original_text,
            restored=False,
            settings=self.studio.settings,
            lane=self.studio.lane,
        )
        self.app.push_screen(editor, merged)

    def action_undo(self) -> None:
        adjudicator = self.adjudicator

        def job(store: Store) -> tuple[Undone | None, list[Dispute]]:
            return undo_last(store, reviewer=adjudicator), disputes(store)

        self.undo(self.studio.lane.submit(job))

    @work(group="adjudication", exit_on_error=False, description="Undo")
    async def undo(self, pending: Future[tuple[Undone | None, list[Dispute]]]) -> None:
        undone, found = await asyncio.shield(asyncio.wrap_future(pending))
        if undone is None:
            self.post_message(DisputesLoaded(found, None, "Nothing left to undo."))
        else:
            self.post_message(DisputesLoaded(found, undone.record_id, f"↶ {undone.describe()}"))

    # -- which keys apply -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS and self.studio.read_only:
            return False
        if action in ("next_stage", "previous_stage", "next_record", "previous_record"):
            return self.current is not None
        if action not in ("pick", "merge", "reject"):
            return True
        on = self.current_stage
        if on is None or not (on.differs or on.adjudication is not None):
            return False
        if action == "pick":
            number = parameters[0] if parameters else 0
            if not isinstance(number, int) or number >= len(on.versions):
                return False
            version = on.versions[number]
            return on.stage is None or version.decision is not None
        if action == "merge":
            return on.stage is not None
        return True
