"""`studio train`'s side of a run: help, the progress view and how outcomes are reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from studio.cli import cli
from studio.commands.train import EventEcho, ProgressView, RunOutcome, finish, watch_runner
from studio.errors import BadInputError, StudioError
from studio.train.events import (
    EndEvent,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    TrainEvent,
    event_to_json,
)

EVENTS: list[TrainEvent] = [
    StartEvent(
        run_id=7,
        pid=1,
        output_dir="/runs/7",
        config={"notes": ["optim: paged_adamw_8bit -> adamw_torch (no CUDA)"]},
        dataset={"records": 2, "examples": 6, "train_examples": 5, "validation_examples": 1},
    ),
    StepEvent(step=1, max_steps=2, loss=2.5, lr=1e-4, epoch=0.5, tokens_per_s=1234.0, eta_s=61),
    EvalEvent(step=1, eval_loss=2.4),
    StepEvent(step=2, max_steps=2, loss=2.0, lr=1e-4, epoch=1.0, tokens_per_s=1300.0, eta_s=0),
    EndEvent(
        status="completed", adapter_path="/runs/7", metrics={"global_step": 2, "train_loss": 2.25}
    ),
]


def fake_runner(tmp_path: Path, *, exit_code: int = 0) -> list[str]:
    """A stand-in for `python -m studio.train --events` that prints EVENTS and some noise."""
    lines = "".join(event_to_json(e) + "\n" for e in EVENTS)
    (tmp_path / "events.txt").write_text("not an event\n" + lines)
    script = (
        "import sys; sys.stderr.write('loading…\\n' * 5000); "
        f"sys.stdout.write(open({str(tmp_path / 'events.txt')!r}).read()); sys.exit({exit_code})"
    )
    return [sys.executable, "-c", script]


def test_help_documents_the_spec_options() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in (
        "--base-model", "--db", "--recipe", "--output", "--max-steps", "--epochs",
        "--4bit / --no-4bit", "--context", "--events", "accelerate launch",
    ):  # fmt: skip
        assert option in result.output, option


def test_progress_view_draws_the_run_and_reports_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = watch_runner(fake_runner(tmp_path), ProgressView())
    assert outcome.exit_code == 0
    assert outcome.end is not None and outcome.end.status == "completed"
    assert len(outcome.stderr_tail) == 40  # drained while it ran, only the tail kept
    finish(outcome, tmp_path)
    err = capsys.readouterr().err
    assert "run 7 → /runs/7" in err and "2 accepted records → 6 examples" in err
    assert "optim: paged_adamw_8bit -> adamw_torch" in err
    assert "step 1: eval loss 2.4000" in err
    assert "completed: step 2, train loss 2.2500; adapter saved to /runs/7" in err


def test_events_mode_passes_the_lines_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = watch_runner(fake_runner(tmp_path, exit_code=0), EventEcho())
    out = capsys.readouterr().out.splitlines()
    assert out == [event_to_json(e) for e in EVENTS]  # the noise line is not an event
    assert outcome.end == EVENTS[-1]


def test_outcomes_map_to_exit_codes() -> None:
    with pytest.raises(BadInputError, match="nothing to train on"):
        finish(
            RunOutcome(2, error=ErrorEvent(message="nothing to train on", exit_code=2)), Path("r")
        )
    with pytest.raises(StudioError, match="training failed: OOM"):
        finish(RunOutcome(1, error=ErrorEvent(message="OOM")), Path("r"))
    with pytest.raises(StudioError, match=r"training failed: Killed \(exit code -9"):
        finish(RunOutcome(-9, stderr_tail=["loading", "Killed"]), Path("r"))


def test_the_light_modules_import_no_ml_library() -> None:
    light = ["dataset", "recipes", "hardware", "preflight", "launch", "events", "monitor"]
    code = (
        "import sys, studio.commands.train, studio.export; "
        + "; ".join(f"import studio.train.{name}" for name in light)
        + "; print([m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'textual')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_reviewers_install_without_torch_says_how_to_train(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from studio.errors import BadInputError
    from studio.train.preflight import check_training_installed

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(BadInputError, match=r"training needs torch: install the train extra"):
        check_training_installed()
