"""Judge against clinician: the numbers on hand-made ratings whose values are known."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from studio.cbt.ctrs import RATED_ITEMS
from studio.judge.agreement import (
    MIN_PAIRS,
    agreement_report,
    auc,
    fisher_interval,
    item_agreement,
    quadratic_weighted_kappa,
    spearman,
)
from studio.store import Store
from studio.store.judging import (
    SCORED,
    ItemScore,
    JudgeResult,
    dialogue_hash,
    rate,
    save_judgement,
)
from studio.store.review import accept_remaining, reject_record
from tests.test_judge import add_records, dialogue


def test_quadratic_kappa_of_a_small_table_worked_by_hand() -> None:
    judge = [0, 0, 1, 2]
    clinician = [0, 1, 1, 2]
    # Observed: one pair one point apart, so the weighted disagreement is 1 (weights (i-j)^2).
    # Expected from the margins (judge 0:2 1:1 2:1, clinician 0:1 1:2 2:1), sum of
    # (i-j)^2 * row_i * col_j / n over all cells:
    #   i=0: 1*2*2 + 4*2*1 = 12;  i=1: 1*1*1 + 1*1*1 = 2;  i=2: 4*1*1 + 1*1*2 = 6;  20 / 4 = 5.
    # kappa = 1 - 1/5.
    assert quadratic_weighted_kappa(judge, clinician) == pytest.approx(0.8)
    # The declared range does not matter (unused categories have empty margins).
    assert quadratic_weighted_kappa(judge, clinician, high=2) == pytest.approx(0.8)


def test_kappa_edges() -> None:
    assert quadratic_weighted_kappa([1, 3, 5], [1, 3, 5]) == pytest.approx(1.0)
    assert quadratic_weighted_kappa([0, 6], [6, 0]) == pytest.approx(-1.0)
    assert quadratic_weighted_kappa([4, 4, 4], [4, 4, 4]) is None  # no spread: undefined
    assert quadratic_weighted_kappa([], []) is None


def test_spearman_with_ties_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    first = [1, 2, 2, 3, 5, 6, 6, 0]
    second = [2, 2, 3, 3, 4, 6, 5, 1]
    assert spearman(first, second) == pytest.approx(stats.spearmanr(first, second).statistic)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_fisher_interval_worked_by_hand() -> None:
    # z = atanh(0.5) = 0.5493; se = 1/sqrt(28 - 3) = 0.2; z ± 1.96 * 0.2, back through tanh.
    low, high = fisher_interval(0.5, 28) or (0.0, 0.0)
    assert low == pytest.approx(math.tanh(math.atanh(0.5) - 1.959964 * 0.2), abs=1e-6)
    assert (round(low, 3), round(high, 3)) == (0.156, 0.736)
    assert fisher_interval(0.5, 3) is None


def test_auc_counts_ties_half() -> None:
    # Accepted 3 and 4 against rejected 1 and 4: 3>1, 3<4, 4>1, 4=4 -> (1 + 0 + 1 + 0.5) / 4.
    assert auc([3, 4, 1, 4], [True, True, False, False]) == pytest.approx(0.625)
    assert auc([3, 4], [True, True]) is None


def test_an_item_with_too_few_pairs_says_so_and_reports_nothing() -> None:
    found = item_agreement("focus", [4, 5, 6], [4, 5, 6])
    assert found.pairs == 3 and not found.enough
    assert found.kappa is None and found.spearman is None and found.bias is None
    assert "too few ratings to tell (3 of the 10 needed)" in found.verdict


def test_a_judge_that_overrates_is_told_plainly() -> None:
    clinician = [0, 1, 2, 3, 4, 2, 1, 3, 2, 1, 0, 2]
    judge = [min(6, c + 2) for c in clinician]
    found = item_agreement("strategy", judge, clinician)
    assert found.bias == pytest.approx(2.0)
    assert "the judge overrates by 2.0 points" in found.verdict
    fair = item_agreement("strategy", clinician, clinician)
    assert fair.kappa == pytest.approx(1.0) and "overrates" not in fair.verdict
    assert fair.spearman_ci == (1.0, 1.0)


def judged(store: Store, record_id: int, score: int) -> None:
    items = {item: ItemScore(score, "why") for item in RATED_ITEMS}
    result = JudgeResult(status=SCORED, items=items, model="m", template_version="judge@1")
    save_judgement(store, record_id, dialogue_hash(store, record_id), result)


def test_the_report_from_the_store(store: Store) -> None:
    ids = add_records(store, [dialogue(f"r{n}") for n in range(12)])
    judge_scores = [1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 6]
    for record_id, score in zip(ids, judge_scores, strict=True):
        judged(store, record_id, score)
        # The clinician is one point stricter on focus, in step with the judge on fidelity.
        rate(store, record_id, "focus", score - 1, reviewer="dr-a")
        rate(store, record_id, "fidelity", score, reviewer="dr-a")
    accept_remaining(store, ids[5], reviewer="dr-a")  # judged 6
    reject_record(store, ids[0], reviewer="dr-a")  # judged 1
    report = agreement_report(store)
    by_item = {a.item: a for a in report.items}
    assert report.pairs == 24 and report.rated_records == 12
    focus = by_item["focus"]
    assert focus.pairs == 12 and focus.bias == pytest.approx(1.0)
    assert focus.spearman == pytest.approx(1.0)
    assert "overrates by 1.0" in focus.verdict
    assert by_item["fidelity"].kappa == pytest.approx(1.0)
    assert by_item["fidelity"].auc == pytest.approx(1.0) and by_item["fidelity"].auc_records == 2
    assert not by_item["understanding"].enough  # nobody rated it
    assert any("The judge overrates: Focus on key cognitions" in n for n in report.notes)


def test_a_rating_of_another_text_is_not_paired(store: Store) -> None:
    """A clinician who rated the dialogue before an edit rated another text than the judge."""
    from studio.model import Stage
    from studio.store.review import save_edit

    (record_id,) = add_records(store, [dialogue()])
    rate(store, record_id, "focus", 2, reviewer="dr-a")
    save_edit(store, record_id, Stage.DIALOGUE, dialogue("changed"), reviewer="dr-a")
    judged(store, record_id, 5)
    assert agreement_report(store).pairs == 0


def test_cli_agreement(db_path: Path, run: Any) -> None:
    with Store(db_path) as store:
        ids = add_records(store, [dialogue(f"r{n}") for n in range(3)])
        for record_id in ids:
            judged(store, record_id, 4)
            rate(store, record_id, "focus", 4, reviewer="dr-a")
    result = run("judge", "--agreement", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pairs"] == 3 and data["min_pairs"] == MIN_PAIRS
    assert data["items"]["focus"]["pairs"] == 3 and data["items"]["focus"]["kappa"] is None
    assert any("Too few ratings to tell" in n for n in data["notes"])
    table = run("judge", "--agreement")
    assert table.exit_code == 0
    assert "too few ratings to tell (3 of the 10 needed)" in table.output


def test_coverage_counts_accepted_against_all(store: Store) -> None:
    from studio.judge.coverage import coverage

    ids = add_records(store, [dialogue(f"c{n}") for n in range(3)])
    judged(store, ids[0], 1)
    judged(store, ids[1], 5)
    accept_remaining(store, ids[1], reviewer="dr-a")
    spreads = {s.dimension: {k: (a, n) for k, a, n in s.rows} for s in coverage(store)}
    assert spreads["technique"]["Decatastrophizing"] == (1, 3)
    assert spreads["technique"]["Reality Testing"] == (0, 0)  # all twelve are listed
    assert spreads["attitude"]["neutral"] == (1, 3)
    assert spreads["distortion pattern"]["catastrophizing"] == (1, 3)
    assert spreads["judge score band"] == {
        "0–2": (0, 1),
        "2–4": (0, 0),
        "4–6": (1, 1),
        "not judged": (0, 1),
    }
