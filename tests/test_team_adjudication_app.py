"""Adjudication in the real app (issue 14): a disputed record, settled from the adjudication screen
by its adjudicator (the app's reviewer), leaves the list; `u` brings it back."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static, TextArea

from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store.assignments import assign
from studio.tui.screens.adjudication import AdjudicationScreen
from studio.tui.screens.queue import QueueScreen
from tests.test_team_review_app import ANA, BEN, app_for
from tests.test_tui_app import on_screen
from tests.test_tui_support import SIZE, demo_db, settle, stage_row, type_text
from tests.waiting import pilot_wait_until

SHARED = 3  # a demo record awaiting review
CLEO = "cleo"


def _dispute(db: Path) -> str:
    """Ana accepts every stage of the shared record; Ben accepts all but edits the plan."""
    with Store(db) as store:
        assign(store, {SHARED: (ANA, BEN)}, plan={})
        plan = store.stage(SHARED, Stage.CBT_PLAN).text + "\n4. Review the week together."
        for stage in STAGES:
            store.decide_stage(SHARED, stage, StageStatus.ACCEPTED, reviewer=ANA)
            if stage is not Stage.CBT_PLAN:
                store.decide_stage(SHARED, stage, StageStatus.ACCEPTED, reviewer=BEN)
        store.edit_stage(SHARED, Stage.CBT_PLAN, plan, reviewer=BEN, note="adds a review")
        assert store.record(SHARED).status is RecordStatus.DISPUTED
    return plan


def _status(db: Path) -> RecordStatus:
    with Store(db) as store:
        return store.record(SHARED).status


async def test_picking_a_version_settles_the_record_and_undo_brings_it_back(
    tmp_path: Path,
) -> None:
    db = demo_db(tmp_path / "team.db")
    plan = _dispute(db)
    app = app_for(db, CLEO)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        on_screen(app, QueueScreen)
        counts = str(app.screen.query_one("#counts", Static).render())
        assert "disputed 1" in counts, counts  # the queue's counts name what waits
        await pilot.press("D")
        await settle(pilot)
        screen = on_screen(app, AdjudicationScreen)
        await pilot_wait_until(pilot, lambda: screen.loaded, "the disputes")
        assert [d.record_id for d in screen.disputes] == [SHARED]
        assert screen.title == "Adjudication · 1 disputed"
        on = screen.current_stage
        assert on is not None and on.stage is Stage.CBT_PLAN  # the first stage to settle
        assert [(v.reviewer, v.kind) for v in on.versions] == [(ANA, "accept"), (BEN, "edit")]

        await pilot.press("2")  # Ben's version
        await settle(pilot)
        assert screen.disputes == []
        assert screen.title == "Adjudication · 0 disputed"
        assert _status(db) is RecordStatus.ACCEPTED
        final = stage_row(db, SHARED, Stage.CBT_PLAN)
        assert (final.status, final.edited_text) == (StageStatus.EDITED, plan)
        with Store(db) as store:
            settled = store.conn.execute(
                "SELECT adjudicator, outcome, picked, guideline FROM adjudications"
            ).fetchall()
        assert settled == [(CLEO, "pick", BEN, app.guideline_version)]

        await pilot.press("u")
        await settle(pilot)
        assert [d.record_id for d in screen.disputes] == [SHARED]
        assert _status(db) is RecordStatus.DISPUTED
        assert stage_row(db, SHARED, Stage.CBT_PLAN).status is StageStatus.GENERATED

        await pilot.press("escape")
        await settle(pilot)
        on_screen(app, QueueScreen)


async def test_a_merge_from_the_palette_is_the_editors_text(tmp_path: Path) -> None:
    from studio.tui.commands import StudioCommands
    from studio.tui.screens.editor import EditorScreen

    db = demo_db(tmp_path / "team.db")
    plan = _dispute(db)
    app = app_for(db, CLEO)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        commands = {c.name: c for c in StudioCommands(app.screen).commands()}
        await commands["Disputes"].run()
        await settle(pilot)
        screen = on_screen(app, AdjudicationScreen)
        await pilot_wait_until(pilot, lambda: screen.loaded, "the disputes")
        await pilot.press("m")  # prefilled with Ana's version: the plan as generated
        await settle(pilot)
        area = on_screen(app, EditorScreen).query_one(TextArea)
        area.text = plan
        area.move_cursor(area.document.end)
        await type_text(pilot, "\n5. Plan a reward.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert on_screen(app, AdjudicationScreen) is screen and screen.disputes == []
        final = stage_row(db, SHARED, Stage.CBT_PLAN)
        assert (final.status, final.edited_text) == (
            StageStatus.EDITED,
            plan + "\n5. Plan a reward.",
        )
        assert _status(db) is RecordStatus.ACCEPTED
        with Store(db) as store:
            assert store.conn.execute("SELECT COUNT(*) FROM drafts").fetchone()[0] == 0
