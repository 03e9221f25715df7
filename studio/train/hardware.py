"""Fit a run config to the machine: what it has (CUDA, bf16, flash-attn, bitsandbytes on CPU).

A recipe's defaults adapt silently but visibly — each change is written to the config's `notes`,
which is saved with the run. A setting the user asked for explicitly is never changed behind
their back: if it cannot work here, the run stops before it starts with exit code 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import BadInputError
from studio.train.recipes import CPU_OPTIMIZER, CUDA_ONLY_OPTIMIZERS, RunConfig


@dataclass(frozen=True, slots=True)
class Hardware:
    cuda: bool
    cuda_devices: int = 0
    cuda_bf16: bool = False
    """The GPU computes in bf16 (Ampere or newer)."""
    flash_attn: bool = False
    """The `flash_attn` package is importable (and CUDA is present)."""
    bnb_cpu_4bit: bool = False
    """bitsandbytes can quantize to 4 bits on the CPU (its CPU backend is installed)."""
    gpu_name: str = ""
    cpu_bf16: bool = False
    """The CPU computes in bf16 natively (AVX512-BF16 or AMX); without it, bf16 autocast on the
    CPU is emulated and slower than fp32."""

    def describe(self) -> str:
        if self.cuda:
            return f"{self.cuda_devices} x {self.gpu_name or 'CUDA GPU'}"
        return "CPU only"


def detect_hardware() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        cuda_devices=torch.cuda.device_count() if cuda else 0,
        cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        flash_attn=cuda and importlib.util.find_spec("flash_attn") is not None,
        bnb_cpu_4bit=_bnb_cpu_4bit(),
        gpu_name=torch.cuda.get_device_name(0) if cuda else "",
        cpu_bf16=_cpu_bf16(),
    )


def _cpu_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (Linux); False where that cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def _bnb_cpu_4bit() -> bool:
    try:
        import bitsandbytes.functional as bnb_functional
        import torch

        bnb_functional.quantize_4bit(torch.zeros(64, 64), quant_type="nf4")
    except Exception:  # not installed, or no CPU kernels in this build
        return False
    return True


def adapt_to_hardware(
    config: RunConfig, hardware: Hardware, *, explicit: Collection[str] = ()
) -> RunConfig:
    """`config` fitted to `hardware`; raises `BadInputError` for an explicit setting it lacks.

    `explicit` names the fields the user set (flags, `--set`); the rest came from the recipe.
    """
    changes: dict[str, Any] = {}
    notes: list[str] = []

    def needs(field_name: str, requirement: str, fallback: Any, why: str) -> None:
        value = getattr(config, field_name)
        if field_name in explicit:
            raise BadInputError(
                f"{field_name}={value} needs {requirement}, which this machine lacks"
            )
        changes[field_name] = fallback
        notes.append(f"{field_name}: {value} -> {fallback} ({why})")

    if not hardware.cuda:
        if config.load_in_4bit and "load_in_4bit" in explicit and not hardware.bnb_cpu_4bit:
            raise BadInputError(
                "--4bit needs CUDA, which this machine lacks (and this bitsandbytes has no CPU "
                "backend); use --no-4bit to train plain LoRA on the CPU"
            )
        if config.load_in_4bit and "load_in_4bit" not in explicit:
            needs("load_in_4bit", "CUDA", False, "no CUDA: plain LoRA; --4bit uses the CPU backend")
        if config.optim in CUDA_ONLY_OPTIMIZERS:
            needs("optim", "CUDA", CPU_OPTIMIZER, "no CUDA: bitsandbytes' paged/8-bit optimizers")
        if config.fp16:
            needs("fp16", "CUDA", False, "no CUDA: fp16 mixed precision is a GPU feature")
        if config.bf16 and not hardware.cpu_bf16:
            # Measured (issue 16): `fast` with bf16 autocast on such a CPU ran at 0.08x `seed`.
            needs(
                "bf16",
                "a CPU with native bf16 (AVX512-BF16 or AMX)",
                False,
                "this CPU emulates bf16: autocast would be slower than fp32",
            )
    elif not hardware.cuda_bf16:
        if config.bf16:
            needs("bf16", "a GPU with bf16 (Ampere or newer)", False, "this GPU has no bf16")
            if "fp16" not in explicit:
                changes["fp16"] = True
                notes.append("fp16: False -> True (instead of bf16)")
        if config.bnb_4bit_compute_dtype == "bfloat16":
            needs("bnb_4bit_compute_dtype", "a GPU with bf16", "float16", "this GPU has no bf16")
    if config.attn_implementation.startswith("flash_attention") and not hardware.flash_attn:
        needs("attn_implementation", "CUDA and flash-attn", "sdpa", "flash-attn is not installed")
    attention = changes.get("attn_implementation", config.attn_implementation)
    if config.packing and not attention.startswith("flash_attention"):
        _one_block_per_pass(config, explicit, changes, notes)
    if not changes:
        return config
    return dataclasses.replace(config, **changes, notes=(*config.notes, *notes))


#: The batch fields `_one_block_per_pass` may change; one set explicitly keeps them all.
_BATCH_FIELDS = frozenset(
    {"per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size"}
)


def _one_block_per_pass(
    config: RunConfig, explicit: Collection[str], changes: dict[str, Any], notes: list[str]
) -> None:
    """Packed blocks one per forward pass where there is no flash-attn; the step stays the same.

    A packed batch is padding-free: TRL flattens its blocks into one sequence, which only
    flash-attn's variable-length kernel attends block by block. Any other kernel gets that whole
    sequence with a block mask, so attention costs batch-size times more for the same tokens.
    Measured (issue 16, CPU, `fast` with sdpa, one thread): 4 blocks per pass trained at
    0.41-0.55x the tokens/s of 1 block per pass with 4 accumulation steps (tiny Llamas, hidden 64
    and 256). The optimizer step holds the same blocks either way.
    """
    batch = config.per_device_train_batch_size
    if batch == 1 or _BATCH_FIELDS & set(explicit):
        return
    accumulation = config.gradient_accumulation_steps * batch
    changes["per_device_train_batch_size"] = 1
    changes["gradient_accumulation_steps"] = accumulation
    changes["per_device_eval_batch_size"] = 1
    notes.append(
        f"per_device_train_batch_size: {batch} -> 1, gradient_accumulation_steps: "
        f"{config.gradient_accumulation_steps} -> {accumulation} (no flash-attn: a padding-free "
        "batch is one sequence under a block mask; one packed block per pass, the same step)"
    )
