"""`studio assign` (issue 14): a deterministic, balanced split with a share reviewed by two."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.errors import BadInputError
from studio.ingest.load import add_rows
from studio.store import Store
from studio.store.assignments import assign_counts
from studio.team.assign import reviewer_names, split_records
from tests.test_store import _row


def test_the_split_is_deterministic_balanced_and_overlaps_by_the_share() -> None:
    ids = list(range(1, 101))
    split = split_records(ids, ["ana", "ben"], overlap=0.2, seed=7)
    assert split == split_records(list(reversed(ids)), ["ana", "ben"], overlap=0.2, seed=7)
    assert sorted(split.by_record) == ids
    assert split.double == 20
    assert split.load() == {"ana": 60, "ben": 60}
    other = split_records(ids, ["ana", "ben"], overlap=0.2, seed=8)
    doubles = {rid for rid, names in split.by_record.items() if len(names) == 2}
    assert doubles != {rid for rid, names in other.by_record.items() if len(names) == 2}


def test_three_reviewers_share_the_load_within_one_record() -> None:
    split = split_records(range(1, 32), ["ana", "ben", "cleo"], overlap=0.3, seed=1)
    loads = split.load().values()
    assert max(loads) - min(loads) <= 1
    assert split.double == 9
    assert all(len(set(names)) == len(names) for names in split.by_record.values())


def test_bad_splits_are_refused() -> None:
    with pytest.raises(BadInputError):
        split_records([1], [], overlap=0.0)
    with pytest.raises(BadInputError):
        split_records([1], ["ana"], overlap=0.5)
    with pytest.raises(BadInputError):
        split_records([1], ["ana", "ben"], overlap=1.5)
    assert reviewer_names(" ana, ben,,ana ") == ("ana", "ben")


def test_assign_writes_once_and_skips_what_is_assigned(run, db_path: Path) -> None:
    with Store(db_path) as store:
        add_rows(store, [_row(n) for n in range(10)])
    result = run("assign", "--reviewers", "ana,ben", "--overlap", "0.2", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "assigned 10 records" in result.output
    assert "ana 6, ben 6; 2 reviewed by two" in result.output
    again = run("assign", "--reviewers", "ana,ben", "--overlap", "0.2", "--seed", "3")
    assert again.exit_code == 0, again.output
    assert "assigned 0 records" in again.output
    assert "skipped 10 records already assigned" in again.output
    with Store(db_path) as store:
        assert assign_counts(store) == {"ana": 6, "ben": 6}
        plan = store.conn.execute("SELECT plan FROM assignments LIMIT 1").fetchone()[0]
        assert '"seed":3' in plan and '"overlap":0.2' in plan


def test_assign_filters_like_the_queue(run, db_path: Path) -> None:
    with Store(db_path) as store:
        ids = add_rows(store, [_row(n) for n in range(4)]).record_ids
        store.reject_record(ids[0], reviewer="cleo")
    result = run("assign", "--reviewers", "ana", "--status", "in_review")
    assert result.exit_code == 0, result.output
    assert "assigned 3 records" in result.output
    bad = run("assign", "--reviewers", "ana", "--technique", "Astrology")
    assert bad.exit_code == 2
    assert "not one of the 12 CBT techniques" in bad.output


def test_decided_records_are_assigned_again_only_when_named(run, db_path: Path) -> None:
    # Assigning a record one reviewer already accepted would send it back for two reviews:
    # by default only the records still to review are assigned.
    with Store(db_path) as store:
        ids = add_rows(store, [_row(n) for n in range(4)]).record_ids
        store.reject_record(ids[0], reviewer="cleo")
    result = run("assign", "--reviewers", "ana,ben", "--overlap", "1")
    assert result.exit_code == 0, result.output
    assert "assigned 3 records (still to review" in result.output
    assert "skipped 1 records already decided" in result.output
    with Store(db_path) as store:
        assert not store.conn.execute(
            "SELECT 1 FROM assignments WHERE record_id = ?", (ids[0],)
        ).fetchone()
    named = run("assign", "--reviewers", "ana,ben", "--overlap", "1", "--status", "rejected")
    assert "assigned 1 records" in named.output, named.output
