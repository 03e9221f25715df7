"""`studio merge OTHER.db`: two reviewers' copies of one database become one, without duplicates,
without overwriting anyone, idempotently; disagreements go to adjudication."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from studio.cli import cli
from studio.demo import build_demo
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import Store
from studio.store.review import accept_remaining, accept_stage, reject_stage, save_edit
from studio.team.merge import merge_database


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    """One demo database, copied for two reviewers (as they would: `cp studio.db ana.db`)."""
    base = tmp_path / "studio.db"
    with Store(base) as store:
        build_demo(store)
    ana, ben = tmp_path / "ana.db", tmp_path / "ben.db"
    shutil.copy(base, ana)
    shutil.copy(base, ben)
    return ana, ben


def _reviewable(store: Store) -> list[int]:
    rows = store.conn.execute(
        "SELECT record_id FROM stages GROUP BY record_id"
        " HAVING SUM(status = 'generated') = 4 ORDER BY record_id"
    ).fetchall()
    return [r[0] for r in rows]


def _counts(path: Path) -> dict[str, int]:
    with Store(path) as store:
        return {
            table: store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("seeds", "records", "stages", "decisions", "events", "assignments")
        }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_decisions_on_different_records_come_together_once(copies: tuple[Path, Path]) -> None:
    ana, ben = copies
    with Store(ana) as store:
        first, second, *_ = _reviewable(store)
        accept_remaining(store, first, reviewer="ana")
    with Store(ben) as store:
        reject_stage(store, second, Stage.DIALOGUE, reviewer="ben", reason="counselor lectures")
        save_edit(
            store,
            second,
            Stage.CBT_PLAN,
            "1. Notice the thought.\n2. Weigh the evidence.\n3. Try a small experiment.",
            reviewer="ben",
        )
    before = _digest(ben)

    with Store(ana) as store:
        report = merge_database(store, ben)
        assert report.decisions == 2 and report.records == 0 and report.disputed == []
        assert report.events == 2
        assert store.record(first).status is RecordStatus.ACCEPTED
        merged = store.record(second)
        assert merged.stages[Stage.DIALOGUE].status is StageStatus.REJECTED
        assert merged.stages[Stage.DIALOGUE].note == "counselor lectures"
        assert merged.stages[Stage.CBT_PLAN].status is StageStatus.EDITED
        assert merged.stages[Stage.CBT_PLAN].text.startswith("1. Notice the thought.")
        reviewers = {
            r[0]
            for r in store.conn.execute(
                "SELECT reviewer FROM decisions WHERE record_id IN (?, ?)", (first, second)
            )
        }
        assert reviewers == {"ana", "ben"}
    assert _digest(ben) == before, "the other copy is only read"

    counts = _counts(ana)
    with Store(ana) as store:
        again = merge_database(store, ben)
    assert not again.changed
    assert again.lines() == ["nothing new: this copy already has everything the other one has"]
    assert _counts(ana) == counts


def test_different_decisions_by_different_reviewers_wait_for_adjudication(
    copies: tuple[Path, Path],
) -> None:
    ana, ben = copies
    with Store(ana) as store:
        record = _reviewable(store)[0]
        accept_remaining(store, record, reviewer="ana")
    with Store(ben) as store:
        for stage in STAGES:
            accept_stage(store, record, stage, reviewer="ben")
        reject_stage(store, record, Stage.DIALOGUE, reviewer="ben", reason="unsafe advice")

    with Store(ana) as store:
        report = merge_database(store, ben)
        assert report.disputed == [record]
        assert store.record(record).status is RecordStatus.DISPUTED
        kept = dict(
            store.conn.execute(
                "SELECT reviewer, status FROM decisions WHERE record_id = ? AND stage = ?",
                (record, Stage.DIALOGUE.value),
            ).fetchall()
        )
        assert kept == {"ana": "accepted", "ben": "rejected"}, "nobody's decision is overwritten"
        # The stages the two agreed on are final; the dialogue is not.
        view = store.record(record)
        assert view.stages[Stage.INTAKE_FORM].status is StageStatus.ACCEPTED
        assert view.stages[Stage.DIALOGUE].status is StageStatus.GENERATED
    counts = _counts(ana)
    with Store(ana) as store:
        assert not merge_database(store, ben).changed
    assert _counts(ana) == counts


def test_same_decisions_by_two_reviewers_are_final(copies: tuple[Path, Path]) -> None:
    ana, ben = copies
    with Store(ana) as store:
        record = _reviewable(store)[0]
        accept_remaining(store, record, reviewer="ana")
    with Store(ben) as store:
        accept_remaining(store, record, reviewer="ben")
    with Store(ana) as store:
        report = merge_database(store, ben)
        assert report.disputed == []
        assert store.record(record).status is RecordStatus.ACCEPTED


def test_the_same_reviewer_on_two_machines_keeps_the_newer_decision(
    copies: tuple[Path, Path],
) -> None:
    ana, laptop = copies
    with Store(ana) as store:
        record = _reviewable(store)[0]
        accept_stage(store, record, Stage.INTAKE_FORM, reviewer="ana")
    with Store(laptop) as store:
        reject_stage(store, record, Stage.INTAKE_FORM, reviewer="ana", reason="second thoughts")
    with Store(ana) as store:
        report = merge_database(store, laptop)
        assert report.decisions_replaced == 1 and report.disputed == []
        stage = store.record(record).stages[Stage.INTAKE_FORM]
        assert stage.status is StageStatus.REJECTED and stage.note == "second thoughts"
        actions = [
            r[0]
            for r in store.conn.execute(
                "SELECT action FROM events WHERE record_id = ? AND stage = ? ORDER BY ts",
                (record, Stage.INTAKE_FORM.value),
            )
        ]
        assert actions[-2:] == ["accept", "reject"], "both decisions stay in the audit log"


def test_records_only_the_other_copy_has_arrive_with_their_stages(
    copies: tuple[Path, Path], tmp_path: Path
) -> None:
    ana, ben = copies
    with Store(ben) as store:
        before = store.conn.execute("SELECT count(*) FROM records").fetchone()[0]
        store.conn.execute("BEGIN")
        store.conn.execute(
            "INSERT INTO seeds (content_hash, thought, created_at) VALUES ('h-new', 'I fail', 'now')"
        )
        seed = store.conn.execute("SELECT id FROM seeds WHERE content_hash = 'h-new'").fetchone()[0]
        store.conn.execute(
            "INSERT INTO records (seed_id, dedupe_key, mode, created_at, updated_at)"
            " VALUES (?, ?, 'script', 'now', 'now')",
            (seed, f"synth:{seed}:script:1"),
        )
        record = store.conn.execute("SELECT max(id) FROM records").fetchone()[0]
        for position, stage in enumerate(STAGES):
            store.conn.execute(
                "INSERT INTO stages (record_id, name, position, status, original_text, updated_at)"
                " VALUES (?, ?, ?, 'pending', NULL, 'now')",
                (record, stage.value, position),
            )
        store.conn.execute("COMMIT")
        assert store.conn.execute("SELECT count(*) FROM records").fetchone()[0] == before + 1
    # In ana's copy the same seed arrives later under another id: the synthesized record's key
    # names its seed by id, and must still match.
    with Store(ana) as store:
        store.conn.execute(
            "INSERT INTO seeds (content_hash, thought, created_at) VALUES ('h-other', 'x', 'now')"
        )
    with Store(ana) as store:
        first = merge_database(store, ben)
        assert (first.seeds, first.records) == (1, 1)
        key = store.conn.execute(
            "SELECT r.dedupe_key, s.id FROM records r JOIN seeds s ON s.id = r.seed_id"
            " WHERE s.content_hash = 'h-new'"
        ).fetchone()
        assert key[0] == f"synth:{key[1]}:script:1"
        assert store.conn.execute(
            "SELECT count(*) FROM stages s JOIN records r ON r.id = s.record_id"
            " WHERE r.dedupe_key = ?",
            (key[0],),
        ).fetchone()[0] == len(STAGES)
    with Store(ana) as store:
        assert not merge_database(store, ben).changed


def test_cli_merges_and_refuses_what_is_not_another_copy(
    copies: tuple[Path, Path], tmp_path: Path
) -> None:
    ana, ben = copies
    with Store(ben) as store:
        accept_remaining(store, _reviewable(store)[0], reviewer="ben")
    runner = CliRunner()
    result = runner.invoke(cli, ["merge", str(ben), "--db", str(ana)])
    assert result.exit_code == 0, result.output
    assert "4 decisions" in result.output
    result = runner.invoke(cli, ["merge", str(ben), "--db", str(ana)])
    assert result.exit_code == 0 and "nothing new" in result.output

    for other, says in (
        (ana, "is this database"),
        (tmp_path / "missing.db", "no such database file"),
    ):
        result = runner.invoke(cli, ["merge", str(other), "--db", str(ana)])
        assert result.exit_code == 2 and says in result.output, result.output
    junk = tmp_path / "notes.db"
    junk.write_text("not sqlite at all " * 100)
    result = runner.invoke(cli, ["merge", str(junk), "--db", str(ana)])
    assert result.exit_code == 2 and "not a CBT Studio database" in result.output, result.output
