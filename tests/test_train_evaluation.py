"""The evaluation plan: a capped validation set, evaluated often enough and never too much.

The counts are CACTUS's: ~291k training and ~32k validation examples (a 10 % split of ~31k
dialogues with ~10 counselor turns each).
"""

from __future__ import annotations

import dataclasses

import pytest

from studio.errors import BadInputError
from studio.train.dataset import SftExample
from studio.train.evaluation import (
    TRAIN_FORWARD_COST,
    eval_subset,
    examples_per_step,
    plan_evaluation,
)
from studio.train.recipes import FAST, SEED, recipe_config

CACTUS_TRAIN = 291_000
CACTUS_VALIDATION = 32_000


def eval_cost_share(train_steps: int, per_step: int, eval_steps: int, eval_examples: int) -> float:
    """Evaluation time / training time, counted in forward passes, independently of the plan."""
    evaluations = len(range(eval_steps, train_steps + 1, eval_steps))
    if train_steps % eval_steps:
        evaluations += 1  # the final evaluation
    return evaluations * eval_examples / (train_steps * per_step * TRAIN_FORWARD_COST)


@pytest.mark.parametrize("config", [SEED, FAST], ids=["seed", "fast"])
def test_evaluation_costs_at_most_a_tenth_of_training_at_cactus_size(config: object) -> None:
    assert isinstance(config, type(SEED))
    plan = plan_evaluation(
        config, train_examples=CACTUS_TRAIN, validation_examples=CACTUS_VALIDATION
    )
    per_step = examples_per_step(config)
    assert plan.train_steps == -(-CACTUS_TRAIN // per_step)  # one epoch
    assert plan.eval_examples == config.max_eval_examples == 512  # capped, not 32k
    share = eval_cost_share(plan.train_steps, per_step, plan.eval_steps, plan.eval_examples)
    assert share == pytest.approx(plan.cost_share)
    assert 0.05 <= share <= 0.10  # within budget, and not needlessly rare
    assert plan.evaluations >= 50  # still a curve worth plotting
    assert "512 of 32,000 validation examples" in plan.describe()


def test_the_old_rule_would_cost_a_hundred_times_the_training() -> None:
    """The seed notebook's way: the whole split every 50 steps."""
    old = dataclasses.replace(SEED, eval_steps=50, max_eval_examples=CACTUS_VALIDATION)
    plan = plan_evaluation(old, train_examples=CACTUS_TRAIN, validation_examples=CACTUS_VALIDATION)
    assert plan.cost_share > 50  # ~107x: the reason for the budget
    assert not plan.automatic and "eval_steps as set" in plan.describe()


def test_both_knobs_are_configurable() -> None:
    config = recipe_config("seed", max_eval_examples=2000, eval_budget=0.05)
    plan = plan_evaluation(
        config, train_examples=CACTUS_TRAIN, validation_examples=CACTUS_VALIDATION
    )
    assert plan.eval_examples == 2000 and plan.cost_share <= 0.05
    fixed = plan_evaluation(
        recipe_config("seed", eval_steps=1000),
        train_examples=CACTUS_TRAIN,
        validation_examples=CACTUS_VALIDATION,
    )
    assert fixed.eval_steps == 1000 and not fixed.automatic
    with pytest.raises(BadInputError, match="eval_budget"):
        recipe_config("seed", eval_budget=0)
    with pytest.raises(BadInputError, match="eval_steps"):
        recipe_config("seed", eval_steps=0)


def test_a_tiny_run_evaluates_once_at_the_end_and_a_split_of_nothing_never() -> None:
    tiny = plan_evaluation(
        recipe_config("seed", max_steps=4), train_examples=15, validation_examples=3
    )
    assert tiny.eval_steps == tiny.train_steps == 4 and tiny.evaluations == 1  # at the end
    none = plan_evaluation(SEED, train_examples=100, validation_examples=0)
    assert none.evaluations == 0 and none.cost_share == 0


def test_the_eval_subset_is_seeded_spread_and_in_order() -> None:
    examples = [
        SftExample(record_id=r, turn=t, prompt=(), completion={"role": "assistant", "content": ""})
        for r in range(50)
        for t in (3, 5, 7)
    ]
    subset = eval_subset(examples, 30, seed=42)
    assert len(subset) == 30 and subset == eval_subset(examples, 30, seed=42)
    assert list(subset) == sorted(subset, key=lambda e: (e.record_id, e.turn))  # original order
    assert len({e.record_id for e in subset}) > 15  # spread over records, not the first ten
    assert eval_subset(examples, 30, seed=7) != subset
    assert eval_subset(examples, 500, seed=42) == tuple(examples)
