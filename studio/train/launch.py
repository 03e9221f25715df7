"""The command line of a training process, for one GPU (or the CPU) and for `accelerate launch`.

`studio train` and the review app start the runner as its own process with `runner_command`;
for several GPUs, `accelerate_command` builds the equivalent `accelerate launch` line (the studio
shows it; run it in a terminal). Every rank loads the same data; only rank 0 writes the event log,
the database row and the adapter.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from studio.train.recipes import CONTEXTS, RECIPES

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """The options of `python -m studio.train` (a superset of `studio train`'s)."""

    db: Path
    base_model: str
    recipe: str = "seed"
    output: Path | None = None
    """The run folder; default `runs/<time>-<recipe>`."""
    max_steps: int | None = None
    epochs: float | None = None
    load_in_4bit: bool | None = None
    """None: 4-bit when CUDA is present, plain LoRA otherwise."""
    context: str | None = None
    events: bool = False
    overrides: tuple[str, ...] = ()
    """`FIELD=VALUE` settings of `RunConfig` (`--set`), applied after the recipe."""
    config_file: Path | None = None
    """Start from a saved `run_config.json` instead of a recipe (to repeat a run)."""

    def args(self) -> list[str]:
        """The arguments after `-m studio.train`."""
        argv = ["--db", str(self.db), "--base-model", self.base_model, "--recipe", self.recipe]
        if self.output is not None:
            argv += ["--output", str(self.output)]
        if self.max_steps is not None:
            argv += ["--max-steps", str(self.max_steps)]
        if self.epochs is not None:
            argv += ["--epochs", str(self.epochs)]
        if self.load_in_4bit is not None:
            argv.append("--4bit" if self.load_in_4bit else "--no-4bit")
        if self.context is not None:
            argv += ["--context", self.context]
        if self.config_file is not None:
            argv += ["--config", str(self.config_file)]
        for assignment in self.overrides:
            argv += ["--set", assignment]
        if self.events:
            argv.append("--events")
        return argv


def run_options(func: F) -> F:
    """The options `studio train` and `python -m studio.train` share, declared once."""
    options = [
        click.option(
            "--base-model",
            required=True,
            metavar="PATH_OR_HUB_ID",
            help="A local model folder, or a Hugging Face hub id (needs a download unless cached).",
        ),
        click.option(
            "--recipe",
            type=click.Choice(list(RECIPES)),
            default="seed",
            show_default=True,
            help="seed: the notebook's QLoRA settings; fast: packed, padding-free, bf16, bigger batches.",
        ),
        click.option(
            "--output",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="The run folder, new or empty (adapter, config, event log). "
            "Default: runs/<time>-<recipe>.",
        ),
        click.option(
            "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N steps."
        ),
        click.option(
            "--epochs",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Passes over the data (default 1; ignored with --max-steps).",
        ),
        click.option(
            "--4bit/--no-4bit",
            "load_in_4bit",
            default=None,
            help="4-bit base model (QLoRA). Default: 4-bit with CUDA; plain LoRA on CPU, where "
            "--4bit uses bitsandbytes' CPU backend.",
        ),
        click.option(
            "--context",
            type=click.Choice(list(CONTEXTS)),
            default=None,
            help="history (the recipe's default): the dialogue so far; plan: also the intake, "
            "technique and plan.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def runner_command(options: RunnerOptions, *, python: str = sys.executable) -> list[str]:
    """`python -m studio.train …`: one process, one GPU or the CPU."""
    return [python, "-m", "studio.train", *options.args()]


def accelerate_command(options: RunnerOptions, *, num_processes: int) -> list[str]:
    """`accelerate launch --num_processes N -m studio.train …`: data parallel over N GPUs.

    Each GPU holds a whole (4-bit) copy of the model and trains on its share of every batch, so
    the effective batch is N times the recipe's. Set `--output` so every rank agrees on the folder.
    """
    multi_gpu = ["--multi_gpu"] if num_processes > 1 else []
    return [
        "accelerate",
        "launch",
        *multi_gpu,
        "--num_processes",
        str(num_processes),
        "-m",
        "studio.train",
        *options.args(),
    ]


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)
