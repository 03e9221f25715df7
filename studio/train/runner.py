"""The training process: accepted records → SFT dataset → (Q)LoRA with TRL → a PEFT adapter folder.

Started as `python -m studio.train …` (by `studio train`, the review app, or `accelerate launch`).
It owns its run from start to end: the run folder, the event log, the `runs` row. The run folder
is a standard PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`, the
tokenizer with the chat template used) plus `run_config.json`, `events.jsonl` and `checkpoints/`.

Exit codes: 0 completed or stopped on request, 1 failed, 2 bad input (nothing was started),
130 stopped by a second signal before the adapter was saved.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from studio.errors import BadInputError
from studio.store import Store
from studio.store.runs import RunStatus, create_run, finish_run, record_metric, reviewers_of
from studio.train.adapter import AdapterInfo
from studio.train.control import create_run_folder
from studio.train.dataset import (
    SYSTEM_PROMPT,
    SftDataset,
    build_sft_dataset,
    dataset_hash,
    default_max_length,
    ensure_chat_template,
    fit_dataset,
    full_token_lengths,
    token_length_stats,
)
from studio.train.evaluation import eval_subset, plan_evaluation
from studio.train.events import (
    CONFIG_NAME,
    EVENT_LOG_NAME,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    EventWriter,
    StartEvent,
    StepEvent,
    TrainEvent,
)
from studio.train.hardware import Hardware, adapt_to_hardware, detect_hardware
from studio.train.launch import RunnerOptions
from studio.train.preflight import (
    ModelLocation,
    check_accepted_records,
    check_output_dir,
    check_training_installed,
    default_output_dir,
    download_failed,
    locate_base_model,
    model_context_length,
)
from studio.train.recipes import RECIPES, RunConfig, parse_override, with_overrides
from studio.train.signals import StopRequest

TRACEBACK_TAIL_LINES = 25
FORCED_STOP_EXIT = 130


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """Everything checked and loaded before the run exists (so bad input never leaves a run)."""

    config: RunConfig
    dataset: SftDataset
    reviewers: list[str]
    output: Path
    model_dir: str
    hardware: Hardware
    tokenizer: Any
    dataset_info: dict[str, Any]


class RunSink:
    """Where a run's events go: the event log (+ stdout) and the `runs` / `run_metrics` tables.

    The log file is the source of truth; a database write that fails (locked for longer than the
    busy timeout) is reported on stderr and training goes on.
    """

    def __init__(self, writer: EventWriter | None, store: Store | None, run_id: int | None) -> None:
        self.writer = writer
        self.store = store
        self.run_id = run_id

    def emit(self, event: TrainEvent) -> None:
        if self.writer is not None:
            self.writer.emit(event)
        if self.store is None or self.run_id is None:
            return
        try:
            if isinstance(event, StepEvent):
                record_metric(
                    self.store,
                    self.run_id,
                    step=event.step,
                    loss=event.loss,
                    lr=event.lr,
                    epoch=event.epoch,
                    data={"grad_norm": event.grad_norm, "tokens_per_s": event.tokens_per_s},
                )
            elif isinstance(event, EvalEvent):
                record_metric(
                    self.store,
                    self.run_id,
                    step=event.step,
                    kind="eval",
                    loss=event.eval_loss,
                    data=event.metrics,
                )
            elif isinstance(event, EndEvent):
                finish_run(self.store, self.run_id, status=event.status, metrics=event.metrics)
        except sqlite3.Error as exc:
            print(f"warning: could not record {event.kind} in the database: {exc}", file=sys.stderr)


def run(options: RunnerOptions) -> int:
    """Run one training process to the end; returns its exit code."""
    main_process = _rank() == 0
    event_stream = _claim_stdout() if options.events and main_process else None
    stop = StopRequest()
    stop.install()
    try:
        try:
            prepared = prepare(options, main_process=main_process)
        except BadInputError as exc:
            _report_bad_input(exc, event_stream)
            return exc.exit_code
        if stop.requested:  # asked to stop while checking: there is no run to save yet
            print("stopped before the run started; nothing was written", file=sys.stderr)
            return 0
        return execute(prepared, options, stop, event_stream, main_process=main_process)
    finally:
        stop.uninstall()


def resolve_config(options: RunnerOptions) -> tuple[RunConfig, set[str]]:
    """The recipe (or saved config) with the options applied, and the fields set explicitly."""
    if options.config_file is not None:
        # A saved config was fitted to the machine it ran on; this machine fits it anew.
        base = dataclasses.replace(RunConfig.load(options.config_file), notes=())
    elif options.recipe in RECIPES:
        base = RECIPES[options.recipe]
    else:
        raise BadInputError(
            f"unknown recipe {options.recipe!r}; expected one of {', '.join(RECIPES)}"
        )
    overrides: dict[str, Any] = {"base_model": options.base_model}
    if options.context is not None:
        overrides["context"] = options.context
    if options.max_steps is not None:
        overrides["max_steps"] = options.max_steps
    if options.epochs is not None:
        overrides["num_train_epochs"] = options.epochs
    if options.load_in_4bit is not None:
        overrides["load_in_4bit"] = options.load_in_4bit
    overrides.update(parse_override(assignment) for assignment in options.overrides)
    explicit = set(overrides) - {"base_model", "context"}
    return with_overrides(base, overrides), explicit


def prepare(options: RunnerOptions, *, main_process: bool = True) -> PreparedRun:
    """All the checks that end in exit 2, then the dataset and the tokenizer."""
    check_training_installed()
    config, explicit = resolve_config(options)
    output = options.output or default_output_dir(config.recipe)
    if main_process:
        check_output_dir(output)
    location = locate_base_model(config.base_model)
    with Store(options.db) as store:
        accepted = check_accepted_records(store)
        dataset = build_sft_dataset(
            store.accepted_records(),
            context=config.context,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
        )
        if not dataset.examples:
            raise BadInputError(
                f"nothing to train on: {accepted} accepted records, but no dialogue has a "
                "counselor turn after the opening exchange"
            )
        reviewers = reviewers_of(store, dataset.record_ids)
    hardware = detect_hardware()
    config = adapt_to_hardware(config, hardware, explicit=explicit)
    model_dir = _model_dir(location)
    tokenizer = _load_tokenizer(model_dir)
    template = ensure_chat_template(tokenizer, dataset.train[0])
    lengths = full_token_lengths(dataset.examples, tokenizer)
    if config.max_length is None:
        chosen, note = default_max_length(lengths, model_context_length(Path(model_dir)))
        config = dataclasses.replace(config, max_length=chosen, notes=(*config.notes, note))
    assert config.max_length is not None
    stats = token_length_stats(
        dataset.examples, tokenizer, max_length=config.max_length, lengths=lengths
    )
    dataset, fit = fit_dataset(dataset, tokenizer, config.max_length, lengths=lengths)
    if not dataset.train:
        raise BadInputError(
            f"nothing to train on: {fit.describe()}; raise max_length (--set max_length=N)"
        )
    plan = plan_evaluation(
        config,
        train_examples=len(dataset.train),
        validation_examples=len(dataset.validation),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )
    validation_examples = len(dataset.validation)
    if plan.eval_examples < validation_examples:
        subset = eval_subset(dataset.validation, plan.eval_examples, config.seed)
        dataset = dataclasses.replace(
            dataset, validation=subset, dataset_hash=dataset_hash(dataset.train, subset)
        )
    if config.eval_steps is None:
        config = dataclasses.replace(
            config, eval_steps=plan.eval_steps, notes=(*config.notes, plan.describe())
        )
    dataset_info = {
        **dataset.summary(),
        "validation_examples_held_out": validation_examples,
        "evaluation": plan.describe(),
        "token_lengths": stats.as_dict(),
        "fit": fit.as_dict(),
        "chat_template": template,
        "reviewers": reviewers,
    }
    return PreparedRun(
        config, dataset, reviewers, output, model_dir, hardware, tokenizer, dataset_info
    )


def execute(
    prepared: PreparedRun,
    options: RunnerOptions,
    stop: StopRequest,
    event_stream: IO[str] | None,
    *,
    main_process: bool = True,
) -> int:
    output = prepared.output
    store: Store | None = None
    writer: EventWriter | None = None
    run_id: int | None = None
    if main_process:
        create_run_folder(output)
        prepared.config.save(output / CONFIG_NAME)
        writer = EventWriter(output / EVENT_LOG_NAME, event_stream)
        store = Store(options.db)
        run_id = create_run(
            store,
            config=prepared.config.to_dict(),
            dataset_hash=prepared.dataset.dataset_hash,
            n_records=prepared.dataset.n_records,
            n_examples=len(prepared.dataset.examples),
            reviewers=prepared.reviewers,
            output_dir=str(output.resolve()),
        )
    sink = RunSink(writer, store, run_id)
    try:
        sink.emit(
            StartEvent(
                run_id=run_id,
                pid=os.getpid(),
                output_dir=str(output.resolve()),
                config=prepared.config.to_dict(),
                dataset=prepared.dataset_info,
                command=[sys.executable, "-m", "studio.train", *options.args()],
            )
        )
        metrics = train(prepared, sink, stop)
        status = RunStatus.STOPPED if stop.requested else RunStatus.COMPLETED
        sink.emit(EndEvent(status=status, adapter_path=str(output.resolve()), metrics=metrics))
        if event_stream is None and main_process:
            print(f"{status.value}: adapter saved to {output}")
        return 0
    except KeyboardInterrupt:
        sink.emit(
            EndEvent(
                status=RunStatus.STOPPED,
                adapter_path=None,
                metrics={"note": "stopped by a second signal before the adapter was saved"},
            )
        )
        return FORCED_STOP_EXIT
    except Exception as exc:
        tail = traceback.format_exc().rstrip().splitlines()[-TRACEBACK_TAIL_LINES:]
        sink.emit(ErrorEvent(message=f"{type(exc).__name__}: {exc}", traceback="\n".join(tail)))
        sink.emit(EndEvent(status=RunStatus.FAILED, adapter_path=None))
        print("\n".join(tail), file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()


def train(prepared: PreparedRun, sink: RunSink, stop: StopRequest) -> dict[str, Any]:
    """Load the model, train with TRL's SFTTrainer, save the adapter; returns the final metrics."""
    from transformers import PrinterCallback, ProgressCallback

    from studio.train.callbacks import EventCallback, SkipFinalCheckpoint
    from studio.train.model import (
        build_trainer,
        keep_cpu_4bit_weights_unpacked,
        load_base_model,
        match_adapter_dtype,
        prepare_4bit_model,
    )

    config, dataset = prepared.config, prepared.dataset
    model = load_base_model(config, prepared.model_dir, prepared.hardware)
    if config.load_in_4bit:
        keep_cpu_4bit_weights_unpacked(model)
        model = prepare_4bit_model(model, config)
    callback = EventCallback(sink, stop)
    trainer = build_trainer(
        config,
        model,
        prepared.tokenizer,
        dataset,
        output=prepared.output,
        hardware=prepared.hardware,
        callbacks=[callback, SkipFinalCheckpoint()],
    )
    if config.load_in_4bit and trainer.model is not None:
        match_adapter_dtype(trainer.model, config)
    # Our events replace the trainer's own printing (which would also pollute stdout).
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not stop.requested:
        trainer.train()
    trainer.save_model(str(prepared.output))  # the adapter, and the tokenizer as trained
    if _rank() == 0:
        AdapterInfo(
            system_prompt=SYSTEM_PROMPT,
            context=config.context,
            chat_template=str(prepared.dataset_info.get("chat_template", "")),
            base_model=config.base_model,
        ).save(prepared.output)
    if (
        not stop.requested
        and dataset.validation
        and callback.last_eval_step != trainer.state.global_step
    ):
        trainer.evaluate()
    metrics: dict[str, Any] = {
        **callback.final_metrics,
        "global_step": trainer.state.global_step,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
    }
    if callback.last_eval_loss is not None:
        metrics["eval_loss"] = callback.last_eval_loss
    if prepared.hardware.cuda:
        import torch

        metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return metrics


def _model_dir(location: ModelLocation) -> str:
    if location.local_dir is not None:
        return str(location.local_dir)
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(location.name))
    except Exception as exc:  # offline, unknown repo, gated model, no disk space…
        raise download_failed(location.name, exc) from exc


def _load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"--base-model {model_dir}: cannot load its tokenizer ({exc})") from exc


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _claim_stdout() -> IO[str]:
    """Keep stdout for events only: any other output (libraries, C code) goes to stderr."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    return events


def _report_bad_input(exc: BadInputError, event_stream: IO[str] | None) -> None:
    print(f"error: {exc}", file=sys.stderr)
    if event_stream is not None:
        from studio.train.events import event_to_json, now_iso

        event = ErrorEvent(message=str(exc), exit_code=exc.exit_code, ts=now_iso())
        event_stream.write(event_to_json(event) + "\n")
        event_stream.flush()


def quiet_libraries() -> None:
    """Progress bars and import-time warnings go to stderr, where nobody watches them."""
    # bitsandbytes warns at import that an optional CPU kernel package is missing; it is optional.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
