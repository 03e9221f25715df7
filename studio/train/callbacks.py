"""The trainer's side of the event stream: `TrainerCallback` hooks → events, and stop on signal."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from studio.train.events import CheckpointEvent, EvalEvent, StepEvent, TrainEvent, finite
from studio.train.signals import StopRequest


class EventSink(Protocol):
    def emit(self, event: TrainEvent) -> None: ...


class EventCallback(TrainerCallback):
    """Reports each log as a step or eval event, each save as a checkpoint event.

    Tokens/s is measured between two step events from `state.num_input_tokens_seen` (non-padding
    tokens), so the seed and the fast recipe are compared on the tokens they actually learn from.
    """

    def __init__(
        self, sink: EventSink, stop: StopRequest, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sink = sink
        self.stop = stop
        self.clock = clock
        self.final_metrics: dict[str, float] = {}
        self.last_eval_step = -1
        self.last_eval_loss: float | None = None
        self._started = 0.0
        self._start_step = 0
        self._last_time = 0.0
        self._last_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = self._last_time = self.clock()
        self._start_step = state.global_step
        self._last_tokens = int(state.num_input_tokens_seen)
        if self.stop.requested:  # the signal came while the model was loading
            control.should_training_stop = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stop.requested_anywhere(args.device):
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.sink.emit(self._step_event(state, logs))
        elif "eval_loss" in logs:
            self.last_eval_step = state.global_step
            self.last_eval_loss = finite(logs["eval_loss"])
            metrics = {
                key: value
                for key, value in ((k, finite(v)) for k, v in logs.items())
                if key.startswith("eval_") and value is not None
            }
            self.sink.emit(
                EvalEvent(
                    step=state.global_step, eval_loss=finite(logs["eval_loss"]), metrics=metrics
                )
            )
        elif "train_loss" in logs:  # the summary the trainer logs once, at the end
            self.final_metrics = {
                key: value
                for key, value in ((k, finite(v)) for k, v in logs.items())
                if value is not None
            }

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        path = str(Path(args.output_dir or "") / f"checkpoint-{state.global_step}")
        self.sink.emit(CheckpointEvent(step=state.global_step, path=path))

    def _step_event(self, state: TrainerState, logs: dict[str, float]) -> StepEvent:
        now = self.clock()
        tokens = int(state.num_input_tokens_seen)
        elapsed = now - self._last_time
        tokens_per_s = (tokens - self._last_tokens) / elapsed if elapsed > 0 else None
        self._last_time, self._last_tokens = now, tokens
        done = state.global_step - self._start_step
        eta = None
        if done > 0 and state.max_steps:
            eta = (now - self._started) / done * max(state.max_steps - state.global_step, 0)
        return StepEvent(
            step=state.global_step,
            max_steps=state.max_steps,
            loss=finite(logs.get("loss")),
            lr=finite(logs.get("learning_rate")),
            epoch=finite(state.epoch),
            grad_norm=finite(logs.get("grad_norm")),
            tokens_per_s=round(tokens_per_s, 1) if tokens_per_s is not None else None,
            eta_s=round(eta, 1) if eta is not None else None,
        )


class SkipFinalCheckpoint(TrainerCallback):
    """No checkpoint at the last step: the runner saves the adapter there anyway.

    The trainer saves a full checkpoint when training reaches `max_steps` (the adapter, the
    optimizer and scheduler states, the RNG), then the runner's `save_model` writes the same
    adapter to the run folder. Nothing resumes from a checkpoint, so that last one only cost
    time at the end of every run (issue 16) and disk: for an 8B model the LoRA optimizer states
    are a few hundred MB. Checkpoints at `save_steps` are kept, so a long run still leaves some
    behind if it dies.
    """

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        due = state.save_steps > 0 and state.global_step % state.save_steps == 0
        if state.global_step >= state.max_steps and not due:
            control.should_save = False
