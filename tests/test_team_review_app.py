"""Team review in the real app (issue 14): two reviewers, one after the other, on one database;
each sees only their own decision on a double-reviewed record until both decided."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from studio.cli import cli
from studio.model import RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store.assignments import assign
from studio.tui import StudioApp, make_app
from studio.tui.screens.dialogs import ReasonScreen
from studio.tui.screens.queue import QueueScreen
from studio.tui.screens.review import ReviewScreen
from studio.tui.settings import ReviewSettings
from tests.conftest import FixedClock
from tests.test_tui_support import SIZE, demo_db, settle, stage_row

ANA, BEN = "ana", "ben"
SHARED, AGREED = 3, 4  # demo records awaiting review, assigned to both


def app_for(db: Path, reviewer: str) -> StudioApp:
    settings = ReviewSettings(
        reviewer=reviewer,
        cursor_blink=False,
        refresh_interval=None,
        draft_interval=60.0,
        status_timeout=None,
    )
    return make_app(db, reviewer=reviewer, clock=FixedClock(), settings=settings)


async def open_from_queue(pilot: Any, record_id: int) -> ReviewScreen:
    """Open `record_id` from wherever the queue lists it (assigned records come first)."""
    await settle(pilot)
    queue = pilot.app.screen
    assert isinstance(queue, QueueScreen)
    await pilot.press("home", *["down"] * queue.loaded_ids.index(record_id), "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ReviewScreen) and screen.record_id == record_id
    return screen


def shown(screen: ReviewScreen, stage: Stage) -> StageStatus:
    assert screen.item is not None
    return screen.item.record.stages[stage].status


async def test_two_reviewers_decide_blind_and_disagreement_is_disputed(tmp_path: Path) -> None:
    db = demo_db(tmp_path / "team.db")
    with Store(db) as store:
        assign(store, {SHARED: (ANA, BEN), AGREED: (ANA, BEN)}, plan={})

    app = app_for(db, ANA)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        assert queue.loaded_ids[:2] == [SHARED, AGREED]  # her assignment first
        screen = await open_from_queue(pilot, SHARED)
        await pilot.press("a")  # accept the intake form
        await settle(pilot)
        assert shown(screen, Stage.INTAKE_FORM) is StageStatus.ACCEPTED
        await pilot.press("n")  # the next record in her queue: the other shared one
        await settle(pilot)
        assert screen.record_id == AGREED
        await pilot.press("A")  # accept all
        await settle(pilot)
        assert screen.item is not None
        assert screen.item.record.status is RecordStatus.ACCEPTED  # as she sees it
    # Nothing is final yet: only her own decisions are written.
    assert stage_row(db, SHARED, Stage.INTAKE_FORM).status is StageStatus.GENERATED
    assert stage_row(db, AGREED, Stage.DIALOGUE).status is StageStatus.GENERATED

    app = app_for(db, BEN)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_queue(pilot, SHARED)
        assert shown(screen, Stage.INTAKE_FORM) is StageStatus.GENERATED  # not her accept
        await pilot.press("x")
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press(*"wrong age", "enter")
        await settle(pilot)
        assert screen.item is not None
        assert screen.item.record.status is RecordStatus.DISPUTED
        screen = await open_agreed(pilot)
        assert shown(screen, Stage.DIALOGUE) is StageStatus.GENERATED
        await pilot.press("A")
        await settle(pilot)
        assert screen.item is not None
        assert screen.item.record.status is RecordStatus.ACCEPTED
    with Store(db) as store:
        shared, agreed = store.record(SHARED), store.record(AGREED)
        decided = store.conn.execute(
            "SELECT reviewer, status, note FROM decisions WHERE record_id = ?"
            " AND stage = 'intake_form' ORDER BY reviewer",
            (SHARED,),
        ).fetchall()
    assert shared.status is RecordStatus.DISPUTED
    assert shared.stages[Stage.INTAKE_FORM].status is StageStatus.GENERATED
    assert decided == [(ANA, "accepted", ""), (BEN, "rejected", "wrong age")]
    assert agreed.status is RecordStatus.ACCEPTED
    assert {v.status for v in agreed.stages.values()} == {StageStatus.ACCEPTED}


async def open_agreed(pilot: Any) -> ReviewScreen:
    await pilot.press("q")
    await settle(pilot)
    return await open_from_queue(pilot, AGREED)


async def test_two_reviewers_on_their_own_copies_meet_in_a_merge(tmp_path: Path) -> None:
    """Each reviewer works on a copy on their own machine; `studio merge` brings ben's copy into
    ana's, and the app there shows what the two together decided."""
    base = demo_db(tmp_path / "team.db")
    with Store(base) as store:
        assign(store, {SHARED: (ANA, BEN), AGREED: (ANA, BEN)}, plan={})
    ana_db, ben_db = tmp_path / "ana.db", tmp_path / "ben.db"
    shutil.copy(base, ana_db)
    shutil.copy(base, ben_db)

    for db, reviewer in ((ana_db, ANA), (ben_db, BEN)):
        app = app_for(db, reviewer)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_from_queue(pilot, SHARED)
            if reviewer == ANA:
                await pilot.press("A")  # she accepts everything
            else:
                await pilot.press("a", "a", "a", "x")  # he rejects the dialogue
                assert isinstance(app.screen, ReasonScreen)
                await pilot.press(*"lectures", "enter")
            await settle(pilot)
            screen = await open_agreed(pilot)
            await pilot.press("A")
            await settle(pilot)
            assert screen.item is not None
            assert screen.item.record.status is RecordStatus.ACCEPTED  # as each sees it alone
    # Apart, nothing is final in either copy: each has one reviewer's decisions.
    assert stage_row(ana_db, AGREED, Stage.DIALOGUE).status is StageStatus.GENERATED

    runner = CliRunner()
    merged = runner.invoke(cli, ["merge", str(ben_db), "--db", str(ana_db)])
    assert merged.exit_code == 0, merged.output
    again = runner.invoke(cli, ["merge", str(ben_db), "--db", str(ana_db)])
    assert "nothing new" in again.output

    app = app_for(ana_db, ANA)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_queue(pilot, SHARED)
        assert screen.item is not None
        assert screen.item.record.status is RecordStatus.DISPUTED
        assert shown(screen, Stage.INTAKE_FORM) is StageStatus.ACCEPTED  # both accepted it
        screen = await open_agreed(pilot)
        assert screen.item is not None
        assert screen.item.record.status is RecordStatus.ACCEPTED
    with Store(ana_db) as store:
        assert store.record(AGREED).status is RecordStatus.ACCEPTED
        assert store.record(SHARED).status is RecordStatus.DISPUTED
        decided = store.conn.execute(
            "SELECT reviewer, status, note FROM decisions WHERE record_id = ?"
            " AND stage = 'dialogue' ORDER BY reviewer",
            (SHARED,),
        ).fetchall()
    assert decided == [(ANA, "accepted", ""), (BEN, "rejected", "lectures")]
