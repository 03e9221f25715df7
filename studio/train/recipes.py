"""Training recipes: one dataclass holds every setting of a run, and two presets fill it.

`seed` reproduces the notebook this project started from; `fast` keeps its LoRA but trains the way
a GPU likes (packing without padding, bf16, bigger batches). Every field can be overridden, and the
whole config is saved with each run (`run_config.json` and the `runs` table), so a run can be
reproduced from its folder alone.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import BadInputError

CONTEXTS = ("history", "plan")

#: Optimizers that only run on CUDA (bitsandbytes' paged / 8-bit states).
CUDA_ONLY_OPTIMIZERS = frozenset(
    {
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "paged_adamw",
        "paged_lion_8bit",
        "paged_lion_32bit",
        "adamw_bnb_8bit",
        "adamw_8bit",
        "lion_8bit",
        "rmsprop_bnb_8bit",
        "ademamix_8bit",
        "paged_ademamix_8bit",
    }
)

#: What an optimizer that needs CUDA becomes on a machine without it.
CPU_OPTIMIZER = "adamw_torch"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a training run needs, besides the database and the output folder."""

    recipe: str = "seed"
    """The preset these values started from: `seed` or `fast`."""
    base_model: str = ""
    """A local model folder or a Hugging Face hub id (a hub id needs a download unless cached)."""
    context: str = "history"
    """What the system message carries: `history` (the dialogue so far only, as in the seed) or
    `plan` (also the intake summary, the technique and the counseling plan, as CACTUS does)."""

    # -- data ----------------------------------------------------------------------------------
    validation_fraction: float = 0.1
    """Share of records (never single examples) held out for evaluation; 0 disables evaluation."""
    max_length: int | None = None
    """Longest tokenized example; a longer one loses its oldest turns (never its system prompt or
    counselor turn). None: the data's 99th percentile, capped by the model's context (the run
    records the value chosen). With packing: the block size."""

    # -- LoRA ----------------------------------------------------------------------------------
    lora_r: int = 16
    """LoRA rank: the width of the low-rank update."""
    lora_alpha: int = 8
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.1
    """Dropout on the LoRA branch."""
    lora_target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
    )
    """Linear layers that get a LoRA adapter (the seed's set: attention and two of three MLP)."""

    # -- quantization --------------------------------------------------------------------------
    load_in_4bit: bool = True
    """Load the base model in 4 bits (QLoRA). Needs CUDA unless `--4bit` is explicit on CPU."""
    bnb_4bit_quant_type: str = "nf4"
    """4-bit data type: `nf4` (normal float, the QLoRA paper's) or `fp4`."""
    bnb_4bit_compute_dtype: str = "float16"
    """Dtype the 4-bit weights are dequantized to for each matmul."""
    bnb_4bit_use_double_quant: bool = False
    """Quantize the quantization constants too (saves ~0.4 bit per weight, costs some speed)."""

    # -- optimization --------------------------------------------------------------------------
    num_train_epochs: float = 1.0
    """Passes over the training examples (ignored when `max_steps` is set)."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 means run `num_train_epochs` epochs."""
    per_device_train_batch_size: int = 1
    """Examples (or packed blocks) per forward pass on each device."""
    per_device_eval_batch_size: int = 1
    """Examples per forward pass during evaluation."""
    gradient_accumulation_steps: int = 2
    """Forward passes per optimizer step."""
    optim: str = "paged_adamw_8bit"
    """Optimizer name as `transformers` knows it; CUDA-only ones become `adamw_torch` on CPU."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    weight_decay: float = 0.001
    """AdamW weight decay."""
    max_grad_norm: float = 0.3
    """Gradient clipping threshold."""
    warmup_ratio: float = 0.3
    """Share of the steps spent warming the learning rate up from 0."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warmup."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding); pointless with packing."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: much less memory for ~30% more compute."""

    # -- speed ---------------------------------------------------------------------------------
    packing: bool = False
    """Pack several examples into each `max_length` block (best-fit, padding-free)."""
    padding_free: bool = False
    """Flatten each batch into one sequence without padding (implied by packing)."""
    bf16: bool = False
    """bf16 mixed precision for the trainable parts."""
    fp16: bool = False
    """fp16 mixed precision (CUDA only; the seed trains without mixed precision)."""
    attn_implementation: str = "sdpa"
    """Attention kernel: `sdpa`, `eager`, or `flash_attention_2` (CUDA with flash-attn only)."""
    completion_only_loss: bool = True
    """Train on the counselor's turn only, not on the prompt that leads to it."""

    # -- bookkeeping ---------------------------------------------------------------------------
    logging_steps: int = 1
    """Optimizer steps between step events; 1 keeps the live loss plot and the ETA smooth."""
    eval_steps: int | None = None
    """Optimizer steps between evaluations (and once more at the end). None: as many steps as
    keep evaluation within `eval_budget` of the training time."""
    eval_budget: float = 0.1
    """Largest share of the training time that evaluation may cost (when `eval_steps` is None)."""
    max_eval_examples: int = 512
    """Validation examples evaluated each time (a fixed, seeded subset of the held-out split)."""
    save_steps: int = 100
    """Optimizer steps between checkpoints (the final adapter is always saved)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk; older ones are deleted."""
    seed: int = 42
    """Random seed for the train/validation split, LoRA initialization and data order."""
    notes: tuple[str, ...] = ()
    """What was changed automatically for the machine the run started on, and why."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from `to_dict` output; unknown keys are an error (typos)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadInputError(f"unknown run config fields: {', '.join(unknown)}")
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
        }
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInputError(f"{path}: cannot read a run config ({exc})") from exc
        return cls.from_dict(data)


#: The notebook's settings: QLoRA nf4, batch 1 x 2 accumulation, paged 8-bit AdamW.
SEED = RunConfig(recipe="seed")

#: Same LoRA, trained the way a GPU is fastest: packed, padding-free, bf16, bigger steps.
#: Tokens per optimizer step: 4.4x the seed's (measured on the demo data, issue 10; 4 packed blocks of
#: max_length against 2 single examples). Memory is the price: a micro-batch holds 4 blocks of
#: max_length tokens instead of one example, so activation memory (and the logits, vocab x tokens)
#: grows with it. Gradient checkpointing keeps activations small next to the 4-bit weights, but
#: `fast` is not claimed to fit in the seed's peak memory: where it does not, lower
#: per_device_train_batch_size (bench/train_gpu.py measures both).
#: On the machine it finds, `adapt_to_hardware` drops what would not help there and says so in
#: the run's notes (no bf16 on a CPU that emulates it, no flash-attn where it is missing, and
#: then one packed block per forward pass: 1 x 4 accumulation, the same step).
FAST = dataclasses.replace(
    SEED,
    recipe="fast",
    packing=True,
    padding_free=True,
    bf16=True,
    bnb_4bit_compute_dtype="bfloat16",
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    gradient_accumulation_steps=1,
    # The LoRA states are a few hundred MB at most: fused AdamW is faster than paging 8-bit ones.
    optim="adamw_torch_fused",
    group_by_length=False,
    attn_implementation="flash_attention_2",
)

RECIPES: dict[str, RunConfig] = {"seed": SEED, "fast": FAST}


def recipe_config(name: str, **overrides: Any) -> RunConfig:
    """The preset `name` with `overrides` applied (field names as in `RunConfig`)."""
    try:
        base = RECIPES[name]
    except KeyError:
        raise BadInputError(
            f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}"
        ) from None
    return with_overrides(base, overrides)


def with_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise BadInputError(f"unknown run config fields: {', '.join(unknown)}")
    result = dataclasses.replace(config, **dict(overrides))
    check_config(result)
    return result


def parse_override(assignment: str) -> tuple[str, Any]:
    """Parse `FIELD=VALUE` (as given to `--set`) into the field's own type."""
    name, sep, raw = assignment.partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise BadInputError(f"--set {assignment!r}: expected FIELD=VALUE")
    hints = typing.get_type_hints(RunConfig)
    if name not in hints:
        raise BadInputError(f"--set {assignment!r}: RunConfig has no field {name!r}")
    return name, _parse_value(name, hints[name], raw.strip())


def check_config(config: RunConfig) -> None:
    """Reject settings that can never work, with the field's name in the message."""
    problems = []
    if config.context not in CONTEXTS:
        problems.append(f"context must be one of {', '.join(CONTEXTS)}, not {config.context!r}")
    if not 0.0 <= config.validation_fraction < 1.0:
        problems.append("validation_fraction must be in [0, 1)")
    if config.max_length is not None and config.max_length < 1:
        problems.append("max_length must be at least 1 (or none: from the data)")
    for name in (
        "lora_r",
        "lora_alpha",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "logging_steps",
        "max_eval_examples",
        "save_steps",
    ):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be at least 1")
    if config.eval_steps is not None and config.eval_steps < 1:
        problems.append("eval_steps must be at least 1 (or none: from the eval budget)")
    if not 0.0 < config.eval_budget <= 1.0:
        problems.append("eval_budget must be in (0, 1]")
    if config.max_steps == 0 or config.max_steps < -1:
        problems.append("max_steps must be positive (or -1 for whole epochs)")
    if config.num_train_epochs <= 0:
        problems.append("num_train_epochs must be positive")
    if not 0.0 <= config.warmup_ratio < 1.0:
        problems.append("warmup_ratio must be in [0, 1)")
    if config.bf16 and config.fp16:
        problems.append("bf16 and fp16 cannot both be on")
    if config.padding_free and not config.packing:
        problems.append(
            "padding_free without packing would not cut examples at max_length; turn packing on"
        )
    if not config.lora_target_modules:
        problems.append("lora_target_modules must name at least one layer")
    if problems:
        raise BadInputError("invalid run config: " + "; ".join(problems))


def _parse_value(name: str, hint: Any, raw: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("", "none", "auto"):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint not in (bool, int, float):
        return raw
    # pydantic's parsing of text into the field's type (`true`/`on`/`1`, `1e-4`, ...): the rules
    # pydantic-settings applies to environment variables, so text means the same everywhere.
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(hint).validate_python(raw)
    except ValidationError:
        raise BadInputError(f"--set {name}={raw}: not a valid {hint.__name__}") from None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def field_docs() -> dict[str, str]:
    """Each field's docstring, for the recipe form and `--help` (read from this module's source)."""
    import ast
    import inspect
    import itertools

    tree = ast.parse(inspect.getsource(RunConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs
