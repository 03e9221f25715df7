"""How much to evaluate: a capped validation set, evaluated at an interval that keeps evaluation
at most ~10 % of the training time.

At CACTUS size (~291k training and ~32k validation examples) the seed notebook's habit — the whole
10 % split every 50 steps — would spend ~100x more time evaluating than training. An evaluation
is a forward pass per validation example; a training step is a forward and a backward pass
(about three forwards' worth, more with gradient checkpointing) per example in the step. So with
`E` validation examples, `B` examples per optimizer step, `T` steps and a budget `b`, the budget
buys `n = b * 3 * B * T / E` evaluations (the one at the end counted); evaluating every `T / n`
steps costs at most `b` of the training time.

Pure Python: the review app shows the plan without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import xxhash

from studio.train.dataset import SftExample
from studio.train.recipes import RunConfig

#: A training step's forward + backward costs about this many forward passes (a conservative
#: 3: with gradient checkpointing it is nearer 4, which only makes evaluation cheaper still).
TRAIN_FORWARD_COST = 3.0


@dataclass(frozen=True, slots=True)
class EvalPlan:
    """When and on how much a run evaluates, and what that costs relative to training."""

    eval_examples: int
    """Validation examples evaluated each time (the split, capped at `max_eval_examples`)."""
    validation_examples: int
    """The whole held-out split."""
    eval_steps: int
    """Optimizer steps between evaluations."""
    train_steps: int
    evaluations: int
    """Evaluations in the run, the one at the end included."""
    cost_share: float
    """Estimated evaluation time / training time."""
    automatic: bool
    """`eval_steps` was chosen by the budget (not set by the user)."""

    def describe(self) -> str:
        how = "the interval chosen for the budget" if self.automatic else "eval_steps as set"
        capped = (
            f" of {self.validation_examples:,}"
            if self.eval_examples < self.validation_examples
            else ""
        )
        return (
            f"evaluation: {self.eval_examples:,}{capped} validation examples every "
            f"{self.eval_steps:,} steps ({self.evaluations:,} in {self.train_steps:,} steps, "
            f"≈{self.cost_share:.0%} of the training time; {how})"
        )


def examples_per_step(config: RunConfig, world_size: int = 1) -> int:
    return config.per_device_train_batch_size * config.gradient_accumulation_steps * world_size


def planned_train_steps(config: RunConfig, train_examples: int, world_size: int = 1) -> int:
    """Optimizer steps the run will take (`max_steps`, else the epochs' worth)."""
    if config.max_steps > 0:
        return config.max_steps
    per_epoch = math.ceil(train_examples / examples_per_step(config, world_size))
    return max(1, math.ceil(per_epoch * config.num_train_epochs))


def plan_evaluation(
    config: RunConfig, *, train_examples: int, validation_examples: int, world_size: int = 1
) -> EvalPlan:
    """The evaluation plan for a run of this size (see the module docstring for the rule)."""
    eval_examples = min(validation_examples, config.max_eval_examples)
    train_steps = planned_train_steps(config, train_examples, world_size)
    per_step = examples_per_step(config, world_size)
    automatic = config.eval_steps is None
    train_cost = train_steps * per_step * TRAIN_FORWARD_COST
    if config.eval_steps is not None:
        eval_steps = config.eval_steps
    else:
        # As many evaluations as the budget buys, the one at the end included (at least that one).
        affordable = math.floor(config.eval_budget * train_cost / max(eval_examples, 1))
        eval_steps = math.ceil(train_steps / max(affordable, 1))
    evaluations = 0
    if eval_examples:
        evaluations = train_steps // eval_steps + (1 if train_steps % eval_steps else 0)
    cost_share = evaluations * eval_examples / train_cost if train_cost else 0.0
    return EvalPlan(
        eval_examples=eval_examples,
        validation_examples=validation_examples,
        eval_steps=eval_steps,
        train_steps=train_steps,
        evaluations=evaluations,
        cost_share=cost_share,
        automatic=automatic,
    )


def eval_subset(examples: Sequence[SftExample], count: int, seed: int) -> tuple[SftExample, ...]:
    """`count` of the examples, the same ones every time for a seed, in their original order.

    Chosen by a seeded hash of (record, turn), so the subset spreads over the held-out records
    instead of taking the first few dialogues whole.
    """
    if count >= len(examples):
        return tuple(examples)

    def rank(example: SftExample) -> str:
        return xxhash.xxh3_64_hexdigest(f"{seed}:{example.record_id}:{example.turn}".encode())

    chosen = {id(e) for e in sorted(examples, key=rank)[:count]}
    return tuple(e for e in examples if id(e) in chosen)
