"""Reviewing one record: the seed beside its four stages, decided from the keyboard."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.events import DescendantFocus
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Header, Static

from studio.cbt.ctrs import ITEM_LABELS, RATED_ITEMS
from studio.model import APPROVED, STAGES, RecordStatus, Stage, StageStatus
from studio.store.judging import rate
from studio.store.queue import QueueFilter, neighbor
from studio.store.review import (
    ReviewItem,
    accept_remaining,
    accept_stage,
    change_technique,
    load_item,
    reject_record,
    reject_stage,
    save_edit,
)
from studio.store.store import Store
from studio.store.undo import Undone, undo_last
from studio.tui.formatting import status_content
from studio.tui.messages import (
    DecisionSaved,
    JudgeFinished,
    NoMoreRecords,
    RecordLoaded,
    RegenerateFinished,
    UndoFinished,
)
from studio.tui.screens.base import StudioScreen
from studio.tui.screens.dialogs import (
    ConfirmScreen,
    DiffScreen,
    ReasonScreen,
    TechniqueChoice,
    TechniqueScreen,
)
from studio.tui.screens.editor import EditorScreen
from studio.tui.widgets.footer import StudioFooter
from studio.tui.widgets.judge_panel import JudgePanel
from studio.tui.widgets.seed_panel import SeedPanel
from studio.tui.widgets.stage_panel import StagePanel

#: Stage statuses a reviewer can accept: awaiting review, rejected (a change of mind), or stale
#: (the reviewer judges it still fits the changed upstream text).
ACCEPTABLE = frozenset({StageStatus.GENERATED, StageStatus.REJECTED, StageStatus.STALE})
#: Stage statuses a reviewer can reject: anything with text that is not rejected already.
REJECTABLE = frozenset(
    {
        StageStatus.GENERATED,
        StageStatus.ACCEPTED,
        StageStatus.EDITED,
        StageStatus.STALE,
        StageStatus.INVALID,
    }
)
#: Actions that work on the focused stage (hidden until a record is on screen).
RECORD_ACTIONS = frozenset(
    {"accept", "accept_all", "reject", "reject_record", "edit", "regenerate", "diff", "rate"}
    | {"rejudge"}
)
#: Actions that write: off (hidden) on a read-only database, rather than failing one by one.
WRITE_ACTIONS = frozenset(
    {"accept", "accept_all", "reject", "reject_record", "edit", "regenerate", "undo", "rate"}
    | {"rejudge"}
)
#: `0`-`6` rate the item under the rating cursor (the clinician's own CTRS / fidelity rating).
RATING_BINDINGS: list[BindingType] = [
    Binding(
        str(value),
        f"rate({value})",
        f"Rate {value}",
        id=f"review.rate_{value}",
        show=False,
        tooltip=f"Rate the item marked ▸ with {value} (0-6), then move to the next item",
    )
    for value in range(7)
]


class ReviewScreen(StudioScreen):
    CSS_PATH = "review.tcss"
    #: The keys the footer keeps when the terminal is too narrow for all (80 columns).
    FOOTER_PRIORITY = (
        "review.accept",
        "review.reject",
        "review.edit",
        "review.undo",
        "review.next",
        "app.help",
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "accept", "Accept", id="review.accept", tooltip="Accept the focused stage"),
        Binding(
            "A",
            "accept_all",
            "Accept all",
            id="review.accept_all",
            tooltip="Accept every stage still awaiting review",
        ),
        Binding("x", "reject", "Reject", id="review.reject", tooltip="Reject the focused stage"),
        Binding(
            "X",
            "reject_record",
            "Reject record",
            id="review.reject_record",
            tooltip="Reject the whole record",
        ),
        Binding("e", "edit", "Edit", id="review.edit", tooltip="Edit the focused stage"),
        Binding(
            "r",
            "regenerate",
            "Regenerate",
            id="review.regenerate",
            tooltip="Regenerate the focused stage; later stages become stale",
        ),
        Binding("u", "undo", "Undo", id="review.undo", tooltip="Undo your last decision or edit"),
        Binding("d", "diff", "Diff", id="review.diff", tooltip="Your edit against the original"),
        Binding("n", "next_record", "Next", id="review.next", tooltip="Next record in the queue"),
        Binding("p", "previous_record", "Prev", id="review.previous", tooltip="Previous record"),
        Binding(
            "j,tab",
            "next_stage",
            "Next stage",
            id="review.next_stage",
            show=False,
            key_display="j/tab",
        ),
        Binding(
            "k,shift+tab",
            "previous_stage",
            "Previous stage",
            id="review.previous_stage",
            show=False,
            key_display="k/shift+tab",
        ),
        Binding("q,escape", "back", "Queue", id="review.back", tooltip="Back to the queue"),
        Binding(
            "J",
            "rejudge",
            "Re-judge",
            id="review.rejudge",
            tooltip="Judge the dialogue again in the background (CTRS, fidelity, safety)",
        ),
        Binding(
            "i",
            "next_item",
            "Next item",
            id="review.next_item",
            show=False,
            tooltip="Move the rating cursor ▸ to the next item",
        ),
        *RATING_BINDINGS,
    ]

    item: reactive[ReviewItem | None] = reactive(
        None, bindings=True, init=False, always_update=True
    )
    """The record on screen with the reviewer's drafts; None until the first read."""
    stage: reactive[Stage] = reactive(Stage.INTAKE_FORM, bindings=True)
    """The focused stage: what a, x, e, r and d act on."""
    rating_item: reactive[str] = reactive(RATED_ITEMS[0])
    """The item a digit key rates (▸ in the judge panel); moves on after each rating."""

    def __init__(
        self, record_id: int, queue_filter: QueueFilter, *, resume_draft: Stage | None = None
    ) -> None:
        super().__init__()
        self.record_id = record_id
        self.queue_filter = queue_filter
        self.resume_draft = resume_draft
        """Open the editor on this stage's draft once the record is on screen."""
        self._lane_position = record_id
        """The record that n / p move from. Read and written only by jobs on the store lane, so
        pressing n three times quickly moves three records, even before the first is shown."""
        self._said_for: int | None = None
        """The record the status message at the right of the record bar is about."""
        self._said_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="record-bar"):
            yield Static(id="record-info")
            yield Static(id="last-action")
        with Horizontal(id="panes"):
            with VerticalScroll(id="seed"):
                yield SeedPanel(id="seed-panel")
                yield JudgePanel(id="judge-panel")
            with VerticalScroll(id="stages"):
                for stage in STAGES:
                    yield StagePanel(stage)
        yield StudioFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#stages").can_focus = False
        seed = self.query_one("#seed")
        seed.can_focus = False
        seed.border_title = "Seed"
        self.load(self.record_id)

    # -- reading ----------------------------------------------------------------------------

    @property
    def reviewer(self) -> str:
        return self.studio.settings.reviewer

    def load(self, record_id: int, focus: Stage | None = None) -> None:
        def job(store: Store) -> ReviewItem:
            self._lane_position = record_id
            return load_item(store, record_id, reviewer=self.reviewer)

        self.wait_for_record(self.studio.lane.submit(job), focus)

    @work(group="review-read", exit_on_error=False, description="Read the record")
    async def wait_for_record(self, pending: Future[ReviewItem], focus: Stage | None) -> None:
        self.post_message(RecordLoaded(await asyncio.wrap_future(pending), focus))

    def on_record_loaded(self, message: RecordLoaded) -> None:
        self._show_record(message.item, message.focus)

    def _show_record(self, item: ReviewItem, focus: Stage | None) -> None:
        first = self.item is None
        self.item = item
        self.record_id = item.record.id
        self.studio.last_record_id = self.record_id
        if self._said_for != self.record_id:
            self._unsay()  # another record's news is not this one's
        self.focus_stage(focus or self._first_to_review(item))
        if not first:
            self.query_one("#stages", VerticalScroll).scroll_home(animate=False)
            self.query_one("#seed", VerticalScroll).scroll_home(animate=False)
        if self.resume_draft is not None:
            stage, self.resume_draft = self.resume_draft, None
            self.focus_stage(stage)
            self.action_edit()

    def on_regenerate_finished(self, message: RegenerateFinished) -> None:
        if message.record_id == self.record_id:
            self.load(self.record_id, focus=self.stage)

    def on_judge_finished(self, message: JudgeFinished) -> None:
        if message.record_id == self.record_id:
            self.load(self.record_id, focus=self.stage)

    def watch_item(self, item: ReviewItem | None) -> None:
        if item is None:
            return
        record = item.record
        regenerating = self.studio.regenerating
        judgement = item.judgement
        flagged = frozenset(
            f.turn for f in (judgement.result.flags if judgement and judgement.current else ())
        )
        for panel in self.query(StagePanel):
            panel.show(
                record.stages[panel.stage],
                draft=item.drafts.get(panel.stage),
                regenerating=(record.id, panel.stage) in regenerating,
                flagged=flagged if panel.stage is Stage.DIALOGUE else frozenset(),
            )
        self.query_one(SeedPanel).show(record.seed)
        self._show_judge()
        decided = sum(
            1
            for view in record.stages.values()
            if view.status in APPROVED or view.status is StageStatus.REJECTED
        )
        parts: list[Content | str] = [
            Content.styled(f"Record {record.id}", "bold"),
            # Before the long parts, so that a narrow terminal still shows it.
            f"{decided}/{len(STAGES)} decided",
            status_content(record.status),
            record.technique or "no technique",
            f"attitude {record.attitude or '—'}",
        ]
        if record.status is RecordStatus.REJECTED:
            reason = f": {record.note}" if record.note else ""
            parts.append(Content.styled(f"rejected as a whole{reason} (u undoes)", "$error"))
        self.query_one("#record-info", Static).update(Content(" · ").join(parts))

    def _show_judge(self) -> None:
        item = self.item
        if item is None:
            return
        self.query_one(JudgePanel).show(
            item.judgement,
            item.ratings,
            self.rating_item,
            judging=item.record.id in self.studio.judging,
        )

    def watch_rating_item(self) -> None:
        if self.is_mounted:
            self._show_judge()

    def _first_to_review(self, item: ReviewItem) -> Stage:
        for stage in STAGES:
            if item.record.stages[stage].status not in APPROVED:
                return stage
        return Stage.INTAKE_FORM

    def say(self, text: str, record_id: int | None = None) -> None:
        """The outcome of the last key press, at the right of the record bar.

        It belongs to `record_id` (the record on screen unless given): news about a record the
        reviewer has already left is not shown, moving to another record clears it, and it
        fades after `settings.status_timeout` seconds.
        """
        about = self.record_id if record_id is None else record_id
        if about != self.record_id:
            return
        self._said_for = about
        self.query_one("#last-action", Static).update(Content(text))
        if self._said_timer is not None:
            self._said_timer.stop()
        timeout = self.studio.settings.status_timeout
        self._said_timer = self.set_timer(timeout, self._unsay) if timeout else None

    def _unsay(self) -> None:
        self._said_for = None
        if self._said_timer is not None:
            self._said_timer.stop()
            self._said_timer = None
        self.query_one("#last-action", Static).update("")

    # -- moving -----------------------------------------------------------------------------

    def focus_stage(self, stage: Stage) -> None:
        panel = self.query_one(f"#stage-{stage.value}", StagePanel)
        panel.focus(scroll_visible=False)
        self.stage = stage
        self.query_one("#stages", VerticalScroll).scroll_to_widget(panel, top=True, animate=False)

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, StagePanel):
            self.stage = event.widget.stage

    def action_next_stage(self) -> None:
        self.focus_stage(STAGES[(STAGES.index(self.stage) + 1) % len(STAGES)])

    def action_previous_stage(self) -> None:
        self.focus_stage(STAGES[(STAGES.index(self.stage) - 1) % len(STAGES)])

    def action_next_record(self) -> None:
        self._step(forward=True)

    def action_previous_record(self) -> None:
        self._step(forward=False)

    def _step(self, *, forward: bool) -> None:
        flt, reviewer = self.queue_filter, self.reviewer

        def job(store: Store) -> ReviewItem | None:
            found = neighbor(store, flt, self._lane_position, forward=forward, reviewer=reviewer)
            if found is None:
                return None
            self._lane_position = found
            return load_item(store, found, reviewer=reviewer)

        self.wait_for_step(self.studio.lane.submit(job), forward)

    @work(group="review-read", exit_on_error=False, description="Move to another record")
    async def wait_for_step(self, pending: Future[ReviewItem | None], forward: bool) -> None:
        item = await asyncio.wrap_future(pending)
        self.post_message(RecordLoaded(item) if item else NoMoreRecords(forward))

    def on_no_more_records(self, message: NoMoreRecords) -> None:
        self.say("No later record in this queue." if message.forward else "This is the first.")

    def action_back(self) -> None:
        self.studio.last_record_id = self.record_id
        self.dismiss(None)

    # -- deciding ---------------------------------------------------------------------------

    def decide(self, job: Callable[[Store], ReviewItem], summary: str) -> None:
        """Submit a decision now (key-press order is the order they land) and await it."""
        self.wait_for_decision(self.studio.lane.submit(job), summary)

    @work(group="decisions", exit_on_error=False, description="Save the decision")
    async def wait_for_decision(self, pending: Future[ReviewItem], summary: str) -> None:
        # Shielded: leaving the screen must not cancel a decision already submitted.
        item = await asyncio.shield(asyncio.wrap_future(pending))
        self.post_message(DecisionSaved(item, summary))

    def on_decision_saved(self, message: DecisionSaved) -> None:
        if message.item.record.id == self.record_id:
            self.item = message.item
        self.say(message.summary, message.item.record.id)

    def action_accept(self) -> None:
        stage = self.stage
        view = self.item.record.stages[stage] if self.item else None
        if view is not None and view.status is StageStatus.INVALID:
            # `a` says why instead of doing nothing; `A` skips invalid stages.
            reason = view.error or "it breaks its stage rule"
            self.notify(
                f"Can't accept the {stage.label}: it is invalid ({reason})."
                " Edit (e) or regenerate (r) it first.",
                title="Invalid",
                severity="warning",
            )
            return
        self.decide(
            partial(
                accept_stage,
                record_id=self.record_id,
                stage=stage,
                reviewer=self.reviewer,
                guideline=self.studio.guideline_version,
            ),
            f"✓ Accepted {stage.label}",
        )
        # The fast path: a, a, a, a walks the record.
        if stage is not STAGES[-1]:
            self.action_next_stage()

    def action_accept_all(self) -> None:
        record_id, reviewer = self.record_id, self.reviewer
        guideline = self.studio.guideline_version

        def job(store: Store) -> ReviewItem:
            return accept_remaining(store, record_id, reviewer=reviewer, guideline=guideline)[1]

        self.decide(job, "✓ Accepted all remaining stages")

    def action_reject(self) -> None:
        stage, record_id = self.stage, self.record_id

        def rejected(reason: str | None) -> None:
            if reason is None:
                return
            job = partial(
                reject_stage,
                record_id=record_id,
                stage=stage,
                reviewer=self.reviewer,
                reason=reason,
                guideline=self.studio.guideline_version,
            )
            self.decide(job, f"✗ Rejected {stage.label}")

        self.app.push_screen(self._reason_screen(f"Reject the {stage.label}?"), rejected)

    def action_reject_record(self) -> None:
        record_id = self.record_id

        def rejected(reason: str | None) -> None:
            if reason is None:
                return
            job = partial(
                reject_record,
                record_id=record_id,
                reviewer=self.reviewer,
                reason=reason,
                guideline=self.studio.guideline_version,
            )
            self.decide(job, f"✗ Rejected record {record_id}")

        self.app.push_screen(
            self._reason_screen(f"Reject record {record_id} as a whole?"), rejected
        )

    def _reason_screen(self, title: str) -> ReasonScreen:
        return ReasonScreen(title, cursor_blink=self.studio.settings.cursor_blink)

    def action_edit(self) -> None:
        item = self.item
        if item is None or self.studio.read_only:
            return
        stage, record_id = self.stage, self.record_id
        view = item.record.stages[stage]

        def save(text: str) -> None:
            job = partial(
                save_edit,
                record_id=record_id,
                stage=stage,
                text=text,
                reviewer=self.reviewer,
                base_text=view.text,
                guideline=self.studio.guideline_version,
            )
            self.decide(job, f"✎ Saved your edit of the {stage.label}")

        if stage is Stage.CBT_TECHNIQUE:

            def chosen(choice: TechniqueChoice | None) -> None:
                if choice is None or not choice.technique or choice.technique == view.text:
                    return
                later = [
                    s
                    for s in stage.downstream()
                    if item.record.stages[s].status
                    not in (StageStatus.PENDING, StageStatus.STALE, StageStatus.FAILED)
                ]
                if not later:
                    save(choice.technique)
                    return
                technique = choice.technique

                def answered(stale: bool | None) -> None:
                    # Either answer is an audited event (`stale` or `keep_downstream`).
                    job = partial(
                        change_technique,
                        record_id=record_id,
                        technique=technique,
                        reviewer=self.reviewer,
                        stale_downstream=bool(stale),
                        base_text=view.text,
                        guideline=self.studio.guideline_version,
                    )
                    kept = "marked stale" if stale else "kept as they are"
                    self.decide(job, f"✎ Technique is now {technique}; plan and dialogue {kept}")

                names = " and ".join(s.label.lower() for s in later)
                question = (
                    f"The {names} were written for {view.text or 'another technique'}. Mark them"
                    f" stale, to be regenerated for {technique}? (n keeps them as they are)"
                )
                self.app.push_screen(ConfirmScreen(question), answered)

            current = item.record.technique or None
            self.app.push_screen(TechniqueScreen("Choose the technique", current), chosen)
            return

        def edited(text: str | None) -> None:
            if text is not None:
                save(text)

        draft = item.drafts.get(stage)
        if draft is not None and draft.base_text and draft.base_text != view.text:
            self.notify(
                "This stage changed after your draft was written (regenerated or edited by "
                "someone else). Compare before saving: your draft replaces the current text.",
                title="Draft",
                severity="warning",
                timeout=10,
            )
        editor = EditorScreen(
            record_id=record_id,
            stage=stage,
            text=draft.text if draft else view.text,
            base_text=view.text,
            restored=draft is not None,
            settings=self.studio.settings,
            lane=self.studio.lane,
        )
        self.app.push_screen(editor, edited)

    def action_regenerate(self) -> None:
        self.studio.regenerate(self.record_id, self.stage)
        if self.item is not None:
            self.item = self.item  # shows "regenerating…" on the panel

    def action_rejudge(self) -> None:
        self.studio.rejudge(self.record_id)
        self._show_judge()  # shows "re-judging…"

    def action_next_item(self) -> None:
        self.rating_item = RATED_ITEMS[(RATED_ITEMS.index(self.rating_item) + 1) % len(RATED_ITEMS)]

    def action_rate(self, value: int) -> None:
        item_name, record_id, reviewer = self.rating_item, self.record_id, self.reviewer

        def job(store: Store) -> ReviewItem:
            rate(store, record_id, item_name, value, reviewer=reviewer)
            return load_item(store, record_id, reviewer=reviewer)

        self.decide(job, f"★ Rated {ITEM_LABELS[item_name]} {value}")
        self.action_next_item()

    def action_diff(self) -> None:
        if self.item is None:
            return
        view = self.item.record.stages[self.stage]
        title = f"{self.stage.label} of record {self.record_id}: your edit against the original"
        self.app.push_screen(DiffScreen(title, view.original_text or "", view.edited_text or ""))

    def action_undo(self) -> None:
        reviewer = self.reviewer

        def job(store: Store) -> tuple[Undone | None, ReviewItem | None]:
            undone = undo_last(store, reviewer=reviewer)
            if undone is None:
                return None, None
            self._lane_position = undone.record_id
            return undone, load_item(store, undone.record_id, reviewer=reviewer)

        self.wait_for_undo(self.studio.lane.submit(job))

    @work(group="decisions", exit_on_error=False, description="Undo")
    async def wait_for_undo(self, pending: Future[tuple[Undone | None, ReviewItem | None]]) -> None:
        undone, item = await asyncio.shield(asyncio.wrap_future(pending))
        self.post_message(UndoFinished(undone, item))

    def on_undo_finished(self, message: UndoFinished) -> None:
        if message.undone is None or message.item is None:
            self.say("Nothing left to undo.")
            return
        self._show_record(message.item, message.undone.stage)
        self.say(f"↶ {message.undone.describe()}")

    # -- which keys apply -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS and self.studio.read_only:
            return False
        if action not in RECORD_ACTIONS:
            return True
        item = self.item
        if item is None:
            return False
        record = item.record
        view = record.stages[self.stage]
        rejected = record.status is RecordStatus.REJECTED
        busy = (record.id, self.stage) in self.studio.regenerating
        if action == "accept":
            # Shown for an invalid stage too, so that `a` can say why it is not accepted.
            acceptable = view.status in ACCEPTABLE or view.status is StageStatus.INVALID
            return acceptable and not rejected and not busy
        if action == "accept_all":
            generated = any(v.status is StageStatus.GENERATED for v in record.stages.values())
            return generated and not rejected
        if action == "reject":
            return view.status in REJECTABLE and not busy
        if action == "reject_record":
            return not rejected
        if action in ("edit", "regenerate"):
            return not busy
        if action == "rejudge":
            return record.id not in self.studio.judging and bool(record.text(Stage.DIALOGUE))
        if action == "rate":
            return bool(record.text(Stage.DIALOGUE).strip())
        if action == "diff":
            return view.edited_text is not None and view.original_text is not None
        return True
