"""`python -m studio.train`: one training run in this process (see `studio.train.runner`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from studio.train.launch import RunnerOptions, run_options


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
@run_options
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
