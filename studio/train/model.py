"""The model side of a run: load the base (4-bit or not), LoRA, and TRL's `SFTTrainer`.

Imports torch, transformers, peft and trl at module level: only the runner process imports it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    PreTrainedModel,
    TrainerCallback,
)
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from studio.train.dataset import SftDataset, SftExample
from studio.train.hardware import Hardware
from studio.train.recipes import RunConfig

CHECKPOINTS_DIR = "checkpoints"


def model_dtype(config: RunConfig, hardware: Hardware) -> torch.dtype:
    """Dtype of the weights that stay unquantized (embeddings, norms, the LM head, plain LoRA)."""
    if not hardware.cuda:
        # CPU matmuls in fp16 are slow or missing; bf16 mixed precision, if asked for, is autocast.
        return torch.float32
    wants_bf16 = config.bf16 or config.bnb_4bit_compute_dtype == "bfloat16"
    return torch.bfloat16 if wants_bf16 and hardware.cuda_bf16 else torch.float16


def load_base_model(config: RunConfig, model_dir: str, hardware: Hardware) -> PreTrainedModel:
    kwargs: dict[str, Any] = {
        "dtype": model_dtype(config, hardware),
        "attn_implementation": config.attn_implementation,
    }
    # One whole copy of the model per process: under `accelerate launch`, on that rank's GPU.
    device = int(os.environ.get("LOCAL_RANK", "0")) if hardware.cuda else "cpu"
    if config.load_in_4bit:
        # BitsAndBytesConfig.__init__ has no annotations.
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type=config.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=getattr(torch, config.bnb_4bit_compute_dtype),
            bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
        )
        kwargs["device_map"] = {"": device}
    elif hardware.cuda:
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    # The KV cache is useless in training and warns with gradient checkpointing.
    model.config.use_cache = False
    return model


def keep_cpu_4bit_weights_unpacked(model: torch.nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights on CPUs with AVX512-BF16; returns the count.

    On such a CPU, an eval-mode forward without gradients (the trainer's evaluation, a generation)
    converts each `Linear4bit` weight in place to a packed layout for its fast inference kernel.
    Training afterwards still reads it as the unpacked layout, and the gradients come out silently
    wrong (measured on the tiny test Llama: grad norm 0.38 → 0.21 after one evaluation, LoRA-B
    gradients all zero). Turning the fast path off keeps one layout throughout. Harmless on CUDA,
    where the flag is never consulted.
    """
    from bitsandbytes.nn.modules import Linear4bit

    patched = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            patched += 1
    return patched


def prepare_4bit_model(model: PreTrainedModel, config: RunConfig) -> PreTrainedModel:
    """PEFT's k-bit preparation, as QLoRA is done today (checked against peft 0.21 / trl 1.16).

    `prepare_model_for_kbit_training` freezes the base, casts what is not 4-bit (norms,
    embeddings, the LM head) to fp32 for stable training, and turns on gradient checkpointing;
    with `use_reentrant=False` it needs no input-grad hook. TRL's SFTTrainer does not call it.
    """
    from peft import prepare_model_for_kbit_training

    # peft's function has no annotations.
    prepared: PreTrainedModel = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
        model,
        use_gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return prepared


def match_adapter_dtype(model: torch.nn.Module, config: RunConfig) -> int:
    """Keep the LoRA weights fp32 unless the run computes in bf16; returns how many were cast.

    TRL (1.16) casts the adapter of a quantized model to bf16, after the QLoRA paper, whatever
    the hardware. That suits bf16 compute; with fp16 mixed precision the gradient scaler wants
    fp32 weights to update, and a CPU without native bf16 would emulate every LoRA matmul.
    """
    if config.bf16:
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            cast += 1
    return cast


def lora_config(config: RunConfig) -> LoraConfig:
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(
    config: RunConfig, *, output: Path, hardware: Hardware, has_validation: bool
) -> SFTConfig:
    """TRL's config from ours. The traps of TRL ≥ 1 / transformers 5 are handled here."""
    kwargs: dict[str, Any] = {
        "output_dir": str(output / CHECKPOINTS_DIR),
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "optim": config.optim,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        # transformers 5 dropped warmup_ratio: a warmup_steps below 1 is the ratio.
        "warmup_steps": config.warmup_ratio,
        "lr_scheduler_type": config.lr_scheduler_type,
        # transformers 5 replaced group_by_length with a sampling strategy.
        "train_sampling_strategy": (
            "group_by_length" if config.group_by_length and not config.packing else "random"
        ),
        # SFTConfig defaults to bf16=True and refuses to start on a CPU unless told otherwise.
        "bf16": config.bf16,
        "fp16": config.fp16,
        "use_cpu": not hardware.cuda,
        "max_length": config.max_length,
        "packing": config.packing,
        "padding_free": config.padding_free,
        "completion_only_loss": config.completion_only_loss,
        "logging_steps": config.logging_steps,
        "eval_strategy": "steps" if has_validation else "no",
        # The runner resolves None (from the eval budget) before the trainer is built.
        "eval_steps": config.eval_steps or 1,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": [],
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": hardware.cuda,
        "ddp_find_unused_parameters": False,
    }
    # transformers 5.2x renamed gradient checkpointing; the old name still works but warns.
    fields = SFTConfig.__dataclass_fields__
    prefix = "activation" if "activation_checkpointing" in fields else "gradient"
    kwargs[f"{prefix}_checkpointing"] = config.gradient_checkpointing
    kwargs[f"{prefix}_checkpointing_kwargs"] = {"use_reentrant": False}
    return SFTConfig(**kwargs)


def to_dataset(examples: Sequence[SftExample]) -> Dataset:
    return Dataset.from_list([example.row() for example in examples])


def build_trainer(
    config: RunConfig,
    model: PreTrainedModel,
    tokenizer: Any,
    dataset: SftDataset,
    *,
    output: Path,
    hardware: Hardware,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    args = sft_config(
        config, output=output, hardware=hardware, has_validation=bool(dataset.validation)
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(dataset.train),
        eval_dataset=to_dataset(dataset.validation) if dataset.validation else None,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=list(callbacks),
    )
