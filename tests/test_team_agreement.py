"""Agreement between reviewers: the statistics on textbook data with known values, the per-stage
report from hand-made rows of `decisions`, `studio agreement` on a real SQLite file, and the
Stats screen's panel."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.widgets import Static

from studio.cli import cli
from studio.model import STAGES
from studio.reliability import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_interval,
    cohen_kappa,
    coincidences,
    kappa_from_pairs,
    krippendorff_alpha,
    observed_agreement,
    pattern_tally,
)
from studio.store import Store
from studio.team.agreement import (
    MIN_ITEMS,
    StageAgreement,
    Statistic,
    TableKind,
    TeamAgreement,
    agreement_report,
)
from studio.tui.screens.stats import StatsScreen
from tests.test_tui_support import SIZE, demo_db, open_screen, plain_text, studio_app

# Cohen's kappa, the textbook example (Wikipedia, "Cohen's kappa"): 50 proposals read by two
# readers; both yes 20, A yes / B no 5, A no / B yes 10, both no 15. p_o = 0.7, p_e = 0.5.
WIKIPEDIA_A = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
WIKIPEDIA_B = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1-5, missing values; nominal alpha = 0.743 (unit 12 is unpairable).
NA = None
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, 3],
    [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NA],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
]
# Krippendorff (2011), section A: two observers, binary data, ten units; alpha = 0.095.
KRIPPENDORFF_BINARY = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]


def units(coders: Sequence[Sequence[object]]) -> list[list[object]]:
    return [list(unit) for unit in zip(*coders, strict=True)]


def test_cohen_kappa_of_the_textbook_example() -> None:
    assert cohen_kappa(WIKIPEDIA_A, WIKIPEDIA_B) == pytest.approx(0.4)
    assert kappa_from_pairs(Counter(zip(WIKIPEDIA_A, WIKIPEDIA_B, strict=True)), ["yes", "no"]) == (
        pytest.approx(0.4)
    )


def test_kappa_is_one_for_perfect_agreement_and_undefined_without_spread() -> None:
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None


def test_krippendorff_alpha_of_his_worked_examples() -> None:
    assert krippendorff_alpha(units(KRIPPENDORFF_2011)) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units(KRIPPENDORFF_BINARY)) == pytest.approx(0.095, abs=5e-4)


def test_the_coincidence_matrix_of_krippendorffs_example() -> None:
    """Krippendorff (2011) prints this matrix: 40 pairable values, margins 9, 13, 10, 5, 3."""
    matrix = coincidences(pattern_tally(units(KRIPPENDORFF_2011)), [1, 2, 3, 4, 5])
    assert [sum(row) for row in matrix] == pytest.approx([9, 13, 10, 5, 3])
    assert matrix[0] == pytest.approx([7, 4 / 3, 1 / 3, 1 / 3, 0])
    assert (matrix[1][1], matrix[4][4]) == pytest.approx((10, 3))
    assert observed_agreement(matrix) == pytest.approx(32 / 40)


def scotts_pi(first: Sequence[str], second: Sequence[str]) -> float:
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    pooled = Counter([*first, *second])
    expected = sum((count / (2 * n)) ** 2 for count in pooled.values())
    return (observed - expected) / (1 - expected)


def test_alpha_for_two_coders_without_missing_values_is_scotts_pi_corrected() -> None:
    """Theory: 1 - alpha = (2n - 1) / 2n * (1 - pi), n items; so alpha tends to pi (and to
    kappa, when the coders' marginals are alike) as n grows."""
    n = len(WIKIPEDIA_A)
    alpha = krippendorff_alpha(units([WIKIPEDIA_A, WIKIPEDIA_B]))
    pi = scotts_pi(WIKIPEDIA_A, WIKIPEDIA_B)
    assert alpha is not None
    assert 1 - alpha == pytest.approx((2 * n - 1) / (2 * n) * (1 - pi))
    assert alpha == pytest.approx(0.4)  # kappa 0.4, pi 0.394 here
    same_margins_a, same_margins_b = ["x", "x", "y", "y"] * 25, ["x", "y", "x", "y"] * 25
    kappa = cohen_kappa(same_margins_a, same_margins_b)
    alpha = krippendorff_alpha(units([same_margins_a, same_margins_b]))
    assert kappa == pytest.approx(scotts_pi(same_margins_a, same_margins_b))
    assert kappa is not None and alpha is not None
    assert alpha - kappa == pytest.approx((1 - kappa) / (2 * 100))


def test_the_bootstrap_interval_is_seeded_and_holds_the_estimate() -> None:
    tally = Counter(zip(WIKIPEDIA_A, WIKIPEDIA_B, strict=True))

    def kappa(t: Mapping[tuple[str, str], int]) -> float | None:
        return kappa_from_pairs(t, ["yes", "no"])

    interval = bootstrap_interval(tally, kappa)
    assert interval is not None
    low, high = interval
    assert low < 0.4 < high
    # The analytic large-sample SE of this kappa is about 0.13: the interval is near ±0.25.
    assert 0.35 < high - low < 0.65
    assert bootstrap_interval(tally, kappa) == interval
    assert bootstrap_interval(dict(reversed(tally.items())), kappa) == interval
    assert bootstrap_interval({}, kappa) is None
    assert BOOTSTRAP_RESAMPLES == 1000


# --- the report, from rows of `decisions` -----------------------------------------------------

YES_NO_STATUS = {"yes": "accepted", "no": "rejected"}


def make_records(db: Path, count: int) -> list[int]:
    """`count` bare records (with their seed) to hang decisions on."""
    with Store(db) as store, store.conn:
        ids = []
        first = store.conn.execute("SELECT COUNT(*) FROM seeds").fetchone()[0]
        for n in range(first, first + count):
            seed = store.conn.execute(
                "INSERT INTO seeds (content_hash, thought, created_at) VALUES (?, 't', '2026')",
                (f"agreement-{n}",),
            ).lastrowid
            ids.append(
                store.conn.execute(
                    "INSERT INTO records (seed_id, dedupe_key, created_at, updated_at)"
                    " VALUES (?, ?, '2026', '2026')",
                    (seed, f"agreement-{n}"),
                ).lastrowid
            )
    return [i for i in ids if i is not None]


def decide(db: Path, rows: Iterable[tuple[int, str, str, str]]) -> None:
    """(record, stage, reviewer, status) rows straight into `decisions`."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO decisions (record_id, stage, reviewer, status, decided_at)"
            " VALUES (?, ?, ?, ?, '2026-12-01T00:00:00')",
            rows,
        )
    conn.close()


def two_reviewers_on(db: Path, stage: str = "cbt_plan") -> list[int]:
    """The textbook kappa data as two reviewers' decisions on one stage of 50 new records."""
    records = make_records(db, 50)
    decide(
        db,
        [
            row
            for record, a, b in zip(records, WIKIPEDIA_A, WIKIPEDIA_B, strict=True)
            for row in (
                (record, stage, "ana", YES_NO_STATUS[a]),
                (record, stage, "ben", YES_NO_STATUS[b]),
            )
        ],
    )
    return records


def counts(stage: StageAgreement) -> list[list[int]]:
    return [[round(v) for v in row] for row in stage.table]


def stage_of(report: TeamAgreement, name: str) -> StageAgreement:
    return next(s for s in report.stages if s.stage == name)


def test_two_reviewers_get_cohens_kappa_with_the_raw_table(db_path: Path) -> None:
    two_reviewers_on(db_path)
    with Store(db_path) as store:
        report = agreement_report(store)
    plan = stage_of(report, "cbt_plan")
    assert plan.statistic is Statistic.KAPPA and plan.reviewers == ("ana", "ben")
    assert plan.items == 50 and plan.enough
    assert plan.value == pytest.approx(0.4)
    assert plan.percent_agreement == pytest.approx(0.7)
    assert plan.ci is not None and plan.ci[0] < 0.4 < plan.ci[1]
    assert plan.table_kind is TableKind.CONFUSION
    assert plan.categories == ("accept", "edit", "reject")
    assert counts(plan) == [[20, 0, 5], [0, 0, 0], [10, 0, 15]]  # rows ana, columns ben
    assert report.double_reviewed == 50
    intake = stage_of(report, "intake_form")
    assert intake.items == 0 and intake.value is None and intake.note.startswith("too few items")


def test_three_reviewers_get_krippendorffs_alpha_with_missing_decisions(db_path: Path) -> None:
    """Three reviewers, each record decided by two or three of them: alpha with missing values,
    the same number the pure function gives on the same units; `invalid` counts as an edit."""
    records = make_records(db_path, 12)
    reviewers = ("ana", "ben", "cy")
    kinds = {"accepted": "accept", "edited": "edit", "invalid": "edit", "rejected": "reject"}
    table = [
        ("accepted", "accepted", None),
        ("accepted", "edited", "accepted"),
        ("rejected", None, "rejected"),
        (None, "edited", "invalid"),
        ("edited", "edited", "edited"),
        ("accepted", "rejected", None),
        ("rejected", "rejected", "rejected"),
        ("accepted", None, "accepted"),
        ("invalid", "edited", None),
        ("accepted", "accepted", "edited"),
        (None, "rejected", "accepted"),
        ("accepted", "accepted", "accepted"),
    ]
    decide(
        db_path,
        [
            (record, "dialogue", reviewer, status)
            for record, statuses in zip(records, table, strict=True)
            for reviewer, status in zip(reviewers, statuses, strict=True)
            if status is not None
        ],
    )
    with Store(db_path) as store:
        dialogue = stage_of(agreement_report(store), "dialogue")
    expected = krippendorff_alpha([[kinds.get(s or "") for s in unit] for unit in table])
    assert dialogue.statistic is Statistic.ALPHA and dialogue.reviewers == reviewers
    assert dialogue.items == 12 and dialogue.value == pytest.approx(expected)
    assert dialogue.table_kind is TableKind.COINCIDENCE
    # 7 items with two decisions, 5 with three: 14 + 15 pairable decisions.
    assert sum(sum(row) for row in dialogue.table) == pytest.approx(29)


def test_too_few_items_says_so_instead_of_numbers(db_path: Path) -> None:
    records = make_records(db_path, 3)
    decide(db_path, [(r, "intake_form", who, "accepted") for r in records for who in ("a", "b")])
    decide(db_path, [(records[0], "dialogue", "a", "accepted")])  # single-reviewed: left out
    with Store(db_path) as store:
        report = agreement_report(store)
    intake = stage_of(report, "intake_form")
    assert intake.items == 3 and not intake.enough
    assert intake.note == f"too few items (n=3; {MIN_ITEMS} needed)"
    assert intake.value is None and intake.ci is None and intake.percent_agreement is None
    assert counts(intake) == [[3, 0, 0], [0, 0, 0], [0, 0, 0]]  # the counts are still shown
    assert stage_of(report, "dialogue").items == 0


def test_the_record_as_a_whole_compares_keeping_with_rejecting(db_path: Path) -> None:
    """A reviewer counts on the record level once they rejected it as a whole or decided all
    four stages: here both did so on ten records and disagree on two."""
    records = make_records(db_path, 11)
    rows = []
    for n, record in enumerate(records[:10]):
        for who in ("ana", "ben"):
            if (who == "ana" and n < 3) or (who == "ben" and n in (0, 1, 5)):
                rows.append((record, "record", who, "rejected"))
            else:
                rows += [(record, stage.value, who, "accepted") for stage in STAGES]
    rows.append((records[10], "intake_form", "ana", "accepted"))  # undecided: not counted
    rows.append((records[10], "record", "ben", "rejected"))
    decide(db_path, rows)
    with Store(db_path) as store:
        whole = stage_of(agreement_report(store), "record")
    assert whole.categories == ("keep", "reject") and whole.items == 10
    assert counts(whole) == [[6, 1], [1, 2]]
    assert whole.value == pytest.approx(cohen_kappa(list("rrrkkkkkkk"), list("rrkkkrkkkk")))


def test_without_double_review_the_report_says_so(db_path: Path) -> None:
    records = make_records(db_path, 2)
    decide(db_path, [(records[0], "dialogue", "ana", "accepted")])
    with Store(db_path) as store:
        report = agreement_report(store)
    assert report.double_reviewed == 0
    assert report.note == "Nobody has double-reviewed a record yet."


# --- studio agreement -------------------------------------------------------------------------


def test_the_agreement_command_prints_tables_and_stable_json(db_path: Path) -> None:
    two_reviewers_on(db_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["agreement", "--db", str(db_path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    plan = next(line for line in result.output.splitlines() if "cbt plan" in line)
    for shown in ("ana, ben", "50", "kappa", "0.40", "70%"):
        assert shown in plan
    assert "too few items (n=0; 10 needed)" in result.output
    assert "cbt plan: ana ↓ × ben →" in result.output

    result = runner.invoke(cli, ["agreement", "--db", str(db_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["min_items"] == MIN_ITEMS and data["double_reviewed_records"] == 50
    assert data["interval"]["method"] == "percentile bootstrap over items"
    assert [s["stage"] for s in data["stages"]] == [*(s.value for s in STAGES), "record"]
    plan_json = data["stages"][2]
    assert plan_json["statistic"] == "kappa" and plan_json["value"] == 0.4
    assert plan_json["percent_agreement"] == 0.7 and len(plan_json["ci"]) == 2
    assert plan_json["table"] == {
        "kind": "confusion",
        "categories": ["accept", "edit", "reject"],
        "rows": "ana",
        "columns": "ben",
        "counts": [[20, 0, 5], [0, 0, 0], [10, 0, 15]],
    }
    assert data["stages"][0]["enough"] is False and data["stages"][0]["value"] is None


def test_the_agreement_command_refuses_a_missing_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["agreement", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no such database" in result.output


# --- the Stats screen -------------------------------------------------------------------------


async def test_the_stats_screen_shows_the_reviewers_kappa(tmp_path: Path) -> None:
    db = demo_db(tmp_path / "demo.db")
    two_reviewers_on(db, "dialogue")
    text = await stats_panel(db)
    assert "Agreement between reviewers (50 records double-reviewed)" in text
    dialogue = next(line for line in text.splitlines() if "dialogue" in line and "kappa" in line)
    assert "0.40" in dialogue and "ana, ben" in dialogue


async def test_the_stats_screen_says_when_nobody_double_reviewed(tmp_path: Path) -> None:
    text = await stats_panel(demo_db(tmp_path / "demo.db"))
    assert text.strip() == "Agreement between reviewers: Nobody has double-reviewed a record yet."


async def stats_panel(db: Path) -> str:
    async with studio_app(db).run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, "s", StatsScreen)
        return plain_text(screen.query_one("#team-agreement", Static).content)
