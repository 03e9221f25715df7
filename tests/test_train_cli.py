"""`studio train`'s side of a run: help, the progress view and how outcomes are reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from studio.cli import cli
from studio.commands.train import EventEcho, ProgressView, finish, watch
from studio.errors import BadInputError, StudioError
from studio.store.runs import RunStatus
from studio.train.control import RunConclusion, RunControl
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
        dataset={
            "records": 2,
            "examples": 6,
            "train_examples": 5,
            "validation_examples": 1,
            "fit": {"max_length": 512, "examples": 6, "shortened": 2, "dropped_turns": 5},
        },
    ),
    StepEvent(step=1, max_steps=2, loss=2.5, lr=1e-4, epoch=0.5, tokens_per_s=1234.0, eta_s=61),
    EvalEvent(step=1, eval_loss=2.4),
    StepEvent(step=2, max_steps=2, loss=2.0, lr=1e-4, epoch=1.0, tokens_per_s=1300.0, eta_s=0),
    EndEvent(
        status=RunStatus.COMPLETED,
        adapter_path="/runs/7",
        metrics={"global_step": 2, "train_loss": 2.25},
    ),
]


def fake_runner(tmp_path: Path, *, exit_code: int = 0) -> RunControl:
    """A stand-in for `python -m studio.train` that writes EVENTS (and junk) to its event log."""
    lines = "".join(event_to_json(e) + "\n" for e in EVENTS)
    (tmp_path / "events.txt").write_text("not an event\n" + lines)
    folder = tmp_path / "run"
    folder.mkdir()
    script = (
        f"open({str(folder / 'events.jsonl')!r}, 'w').write("
        f"open({str(tmp_path / 'events.txt')!r}).read()); import sys; sys.exit({exit_code})"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    return RunControl(folder, process=process)


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
    conclusion = watch(fake_runner(tmp_path), ProgressView())
    assert conclusion.exit_code == 0
    assert conclusion.end is not None and conclusion.end.status is RunStatus.COMPLETED
    finish(conclusion, tmp_path)
    err = capsys.readouterr().err
    assert "run 7 → /runs/7" in err and "2 accepted records → 6 examples" in err
    assert "max length 512: 2 of 6 examples shortened from the start (5 oldest turns" in err
    assert "optim: paged_adamw_8bit -> adamw_torch" in err
    assert "step 1: eval loss 2.4000" in err
    assert "completed: step 2, train loss 2.2500; adapter saved to /runs/7" in err


def test_events_mode_passes_the_events_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conclusion = watch(fake_runner(tmp_path, exit_code=0), EventEcho())
    out = capsys.readouterr().out.splitlines()
    assert out == [event_to_json(e) for e in EVENTS]  # the junk is no event
    assert conclusion.end == EVENTS[-1]


def test_outcomes_map_to_exit_codes() -> None:
    failed = RunStatus.FAILED
    with pytest.raises(BadInputError, match="nothing to train on"):
        refused = "The runner refused to start: nothing to train on"
        finish(RunConclusion(failed, None, None, 2, refused, refused=True), Path("r"))
    with pytest.raises(StudioError, match="training failed: OOM"):
        finish(RunConclusion(failed, None, ErrorEvent(message="OOM"), 1, ""), Path("r"))
    early = "Stopped before the run started; nothing was written."
    finish(RunConclusion(RunStatus.STOPPED, None, None, 0, early), Path("r"))  # no error
    with pytest.raises(StudioError, match="training failed: the training process ended"):
        gone = "the training process ended without a final event (exit code -9)"
        finish(RunConclusion(failed, None, None, -9, gone), Path("r"))


def test_the_light_modules_import_no_ml_library() -> None:
    light = [
        "dataset", "recipes", "hardware", "preflight", "launch", "events", "monitor", "control",
    ]  # fmt: skip
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
