"""`studio train` end to end on a tiny random Llama: events, adapter, stop, bad input, failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.model import BackendName
from studio.store import Store
from studio.store.runs import RunStatus, get_run, list_runs, run_metrics
from studio.train.control import RunControl, find_live_run
from studio.train.dataset import build_sft_dataset, render_prompt
from studio.train.events import (
    CheckpointEvent,
    EndEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    parse_event,
)
from studio.train.launch import RunnerOptions
from studio.train.monitor import replay
from tests.conftest import cactus_row
from tests.tiny_model import build_tiny_llama

RECORDS = 6
LONG_RUN = "100000"  # steps: runs until it is stopped

pytestmark = pytest.mark.train_extra


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def training_db(db_path: Path) -> Path:
    with Store(db_path) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    return db_path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.delenv("STUDIO_DB", raising=False)
    yield {k: v for k, v in os.environ.items() if k != "STUDIO_DB"}


def test_train_end_to_end_then_the_adapter_loads_and_generates(
    run, training_db: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = run(
        "train", "--base-model", str(tiny_model_dir), "--output", str(out), "--max-steps", "3",
        "--events",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    events = [parse_event(line) for line in lines]
    assert None not in events, lines  # stdout carries events and nothing else
    start, *middle, end = events
    assert isinstance(start, StartEvent) and isinstance(end, EndEvent)
    assert start.dataset["records"] == RECORDS and start.dataset["examples"] == RECORDS * 3
    assert start.dataset["validation_records"] == 1 and start.dataset["reviewers"] == ["ann"]
    assert start.dataset["token_lengths"]["max"] > 0 and start.dataset["chat_template"] == "model"
    assert start.config["optim"] == "adamw_torch" and start.config["notes"]  # CPU: recorded
    steps = [e for e in middle if isinstance(e, StepEvent)]
    assert [s.step for s in steps] == [1, 2, 3] and all(s.max_steps == 3 for s in steps)
    assert all(s.loss is not None and s.loss > 0 for s in steps)
    assert steps[-1].eta_s == 0 and steps[-1].tokens_per_s
    assert any(isinstance(e, EvalEvent) and e.eval_loss for e in middle)
    assert end.status == "completed" and end.adapter_path == str(out.resolve())
    assert end.metrics["global_step"] == 3 and end.metrics["train_loss"] > 0
    assert end.metrics["eval_loss"] > 0

    # The run folder: a PEFT adapter folder plus the config and the same events.
    for name in ("adapter_config.json", "adapter_model.safetensors", "run_config.json"):
        assert (out / name).is_file(), name
    assert (out / "events.jsonl").read_text().splitlines() == lines
    assert json.loads((out / "run_config.json").read_text()) == start.config
    # No checkpoint at the last step: the adapter above is the same weights, and nothing resumes.
    assert not list(out.glob("checkpoints/checkpoint-*"))
    assert not [e for e in events if isinstance(e, CheckpointEvent)]

    with Store(training_db) as store:
        (row,) = list_runs(store)
        metrics = run_metrics(store, row.id)
    assert row.status is RunStatus.COMPLETED and row.id == start.run_id
    assert (row.n_records, row.n_examples, row.reviewers) == (RECORDS, RECORDS * 3, ("ann",))
    assert row.dataset_hash == start.dataset["hash"] and row.metrics == end.metrics
    assert [(m.step, m.kind) for m in metrics if m.kind == "train"] == [
        (1, "train"),
        (2, "train"),
        (3, "train"),
    ]

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora_b = [
        t for k, t in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k
    ]
    assert lora_b and any(bool(t.abs().sum() > 0) for t in lora_b)  # trained: B starts at zero
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(out))
    tokenizer = AutoTokenizer.from_pretrained(out)
    with Store(training_db) as store:
        example = build_sft_dataset(store.accepted_records()).train[0]
    inputs = tokenizer(
        render_prompt(tokenizer, example), return_tensors="pt", add_special_tokens=False
    )
    with torch.no_grad():
        # PeftModel.generate has no annotations.
        generated = model.generate(  # type: ignore[no-untyped-call]
            **inputs, max_new_tokens=5, do_sample=False
        )
    assert generated.shape[1] > inputs["input_ids"].shape[1]

    # The adapter speaks its own format: `studio synth --backend local --adapter` loads the
    # tokenizer (chat template) it was trained with, and its system prompt and context mode.
    from studio.synth import SynthSettings
    from studio.synth.backends import LocalBackend
    from studio.train.adapter import AdapterInfo
    from studio.train.dataset import SYSTEM_PROMPT

    info = AdapterInfo.load(out)
    assert info is not None and info.system_prompt == SYSTEM_PROMPT
    assert (info.context, info.chat_template) == ("history", "model")
    local = LocalBackend(
        SynthSettings(
            backend=BackendName.LOCAL, model=str(tiny_model_dir), adapter=str(out), max_tokens=4
        )
    )
    local._load()
    assert local._tokenizer.name_or_path == str(out) and local._adapter_info == info


def _kill_after(proc: subprocess.Popen[str], seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proc.kill)  # a hung run must not hang the test suite
    timer.start()
    return timer


def test_sigint_to_studio_train_stops_the_run_and_saves_the_adapter(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "run"
    argv = [
        sys.executable, "-m", "studio", "train", "--db", str(training_db),
        "--base-model", str(tiny_model_dir), "--output", str(out), "--max-steps", LONG_RUN,
        "--events",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env
    )
    timer = _kill_after(proc, 120)
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = parse_event(line)
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 2:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C would: `studio train` passes it on
    assert proc.wait() == 0
    timer.cancel()
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "stopped"
    assert 2 <= end.metrics["global_step"] < int(LONG_RUN)
    assert (out / "adapter_model.safetensors").is_file()
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.STOPPED


def test_sigterm_to_the_runner_stops_it_and_a_viewer_can_reattach(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "run"
    argv = [
        sys.executable, "-m", "studio.train", "--db", str(training_db),
        "--base-model", str(tiny_model_dir), "--output", str(out), "--max-steps", LONG_RUN,
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=clean_env
    )
    timer = _kill_after(proc, 120)
    log = out / "events.jsonl"
    seen = []
    found = None
    for event in (e for batch in RunControl.attach(out).follow(interval=0.05) for e in batch):
        seen.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            # A pane opened now (or a reopened studio) finds the run and replays it from the start.
            with Store(training_db) as store:
                found = find_live_run(store)
            assert found is not None and found.folder / "events.jsonl" == log.resolve()
            assert found.pid == proc.pid
            assert [s for s, _ in replay(log).losses][:3] == [1, 2, 3]
            proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 0
    timer.cancel()
    assert isinstance(seen[0], StartEvent) and seen[0].pid == proc.pid
    end = seen[-1]
    assert isinstance(end, EndEvent) and end.status == "stopped" and end.adapter_path
    steps = [e.step for e in seen if isinstance(e, StepEvent)]
    assert steps == list(range(1, len(steps) + 1))  # no point dropped
    assert (out / "adapter_config.json").is_file()
    assert found is not None
    with Store(training_db) as store:
        row = get_run(store, found.run_id)
        logged = run_metrics(store, row.id, kind="train")
    assert row.status is RunStatus.STOPPED and len(logged) == len(steps)


def test_bad_input_exits_2_with_a_clear_message(
    run, db_path: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = str(tiny_model_dir)
    Store(db_path).close()  # train refuses a missing database before it counts records
    empty = run("train", "--base-model", model)
    assert empty.exit_code == 2
    assert "has 0 records and none is accepted" in empty.stderr
    assert "studio import FILE --status accepted" in empty.stderr

    with Store(db_path) as store:
        add_rows(store, [parse_cactus(cactus_row(1))], accepted_by="ann")
    missing = run("train", "--base-model", str(tmp_path / "no-such-model"))
    assert missing.exit_code == 2 and "no such model folder" in missing.stderr

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub = run("train", "--base-model", "meta-llama/Llama-2-7b-hf")
    assert hub.exit_code == 2 and "hub ids need a download" in hub.stderr

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "adapter_config.json").write_text("{}")
    busy = run("train", "--base-model", model, "--output", str(taken))
    assert busy.exit_code == 2 and "not an empty folder" in busy.stderr


def test_runner_refuses_dialogues_without_trainable_turns(
    db_path: Path, tiny_model_dir: Path
) -> None:
    from studio.errors import BadInputError
    from studio.train.runner import prepare

    with Store(db_path) as store:
        add_rows(
            store,
            [parse_cactus(cactus_row(1, dialogue="Counselor: Hi.\nClient: Hello."))],
            accepted_by="a",
        )
    options = RunnerOptions(db=db_path, base_model=str(tiny_model_dir), output=db_path.parent / "r")
    # Such a dialogue breaks the stage rule (it must end on a closing Counselor turn), so it
    # imports `invalid` and never reaches training, not even with --status accepted.
    with pytest.raises(BadInputError, match="none is accepted"):
        prepare(options)


def test_a_crash_ends_failed_with_the_traceback_tail(
    training_db: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from studio.train.runner import run as run_training

    out = tmp_path / "run"
    options = RunnerOptions(
        db=training_db,
        base_model=str(tiny_model_dir),
        output=out,
        max_steps=1,
        overrides=("attn_implementation=no_such_kernel",),
    )
    assert run_training(options) == 1
    progress = replay(out / "events.jsonl")
    assert progress.status == "failed" and "no_such_kernel" in progress.error
    assert "Traceback" in progress.traceback or "File " in progress.traceback
    assert progress.adapter_path is None
    with Store(training_db) as store:
        (row,) = list_runs(store)
    assert row.status is RunStatus.FAILED


def test_checkpoints_come_at_save_steps_but_not_again_at_the_last_step(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from studio.train.callbacks import SkipFinalCheckpoint

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    skip = SkipFinalCheckpoint()

    def saves(step: int, max_steps: int, save_steps: int) -> bool:
        state = TrainerState(global_step=step, max_steps=max_steps, save_steps=save_steps)
        control = TrainerControl(should_save=True)  # as the trainer's flow left it
        skip.on_step_end(args, state, control)
        return control.should_save

    assert saves(100, max_steps=250, save_steps=100)  # a checkpoint that is due stays
    assert not saves(250, max_steps=250, save_steps=100)  # the adapter is saved there anyway
    assert saves(200, max_steps=200, save_steps=100)  # due anyway: the trainer's own rule
