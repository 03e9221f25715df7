"""`python -m studio.train`: one training run in this process (see `studio.train.runner`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from studio.train.launch import RunnerOptions


def _pin_single_gpu() -> None:
    """Outside `accelerate launch`, train on one GPU.

    With several GPUs visible, the trainer would wrap a 4-bit model in `DataParallel`, which
    cannot work; `accelerate launch` is the way to use more than one (see `studio.train.launch`).
    """
    if "RANK" in os.environ or "CUDA_VISIBLE_DEVICES" in os.environ:
        return
    gpus = Path("/proc/driver/nvidia/gpus")
    count = len(list(gpus.iterdir())) if gpus.is_dir() else 0
    if count > 1:
        print(
            f"{count} GPUs found; training on the first. For all of them: "
            f"accelerate launch --multi_gpu --num_processes {count} -m studio.train …",
            file=sys.stderr,
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STUDIO_DB",
    default="studio.db",
    show_default=True,
    help="The SQLite database file.",
)
@click.option(
    "--base-model",
    required=True,
    metavar="PATH_OR_HUB_ID",
    help="A local model folder or a Hugging Face hub id (hub ids need a download).",
)
@click.option("--recipe", default="seed", show_default=True, help="Preset: seed or fast.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The run folder (new or empty). Default: runs/<time>-<recipe>.",
)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimizer steps."
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Epochs (default 1).",
)
@click.option(
    "--4bit/--no-4bit",
    "load_in_4bit",
    default=None,
    help="4-bit base model (QLoRA). Default: 4-bit with CUDA, plain LoRA on CPU.",
)
@click.option(
    "--context",
    type=click.Choice(["history", "plan"]),
    default=None,
    help="System message: the dialogue only (default), or also intake, technique and plan.",
)
@click.option("--events", is_flag=True, help="Write one JSON event per line to stdout.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override any RunConfig field, e.g. --set learning_rate=1e-4 (repeatable).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Start from a saved run_config.json instead of a recipe.",
)
def main(
    db: Path,
    base_model: str,
    recipe: str,
    output: Path | None,
    max_steps: int | None,
    epochs: float | None,
    load_in_4bit: bool | None,
    context: str | None,
    events: bool,
    overrides: tuple[str, ...],
    config_file: Path | None,
) -> None:
    """Train a LoRA adapter on the accepted records of a CBT Studio database."""
    _pin_single_gpu()
    from studio.train.runner import quiet_libraries, run

    quiet_libraries()
    options = RunnerOptions(
        db=db,
        base_model=base_model,
        recipe=recipe,
        output=output,
        max_steps=max_steps,
        epochs=epochs,
        load_in_4bit=load_in_4bit,
        context=context,
        events=events,
        overrides=overrides,
        config_file=config_file,
    )
    sys.exit(run(options))


if __name__ == "__main__":
    main(prog_name="python -m studio.train")
