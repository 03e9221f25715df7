"""Recipes (the run config and its presets), overrides, and fitting a config to the machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from studio.errors import BadInputError
from studio.train.hardware import Hardware, adapt_to_hardware
from studio.train.launch import RunnerOptions, accelerate_command, runner_command
from studio.train.recipes import (
    FAST,
    RECIPES,
    SEED,
    RunConfig,
    field_docs,
    parse_override,
    recipe_config,
)

CPU = Hardware(cuda=False, bnb_cpu_4bit=True)
CPU_BF16 = Hardware(cuda=False, bnb_cpu_4bit=True, cpu_bf16=True)
OLD_GPU = Hardware(cuda=True, cuda_devices=1, cuda_bf16=False, flash_attn=False)
NEW_GPU = Hardware(cuda=True, cuda_devices=2, cuda_bf16=True, flash_attn=True)


def test_seed_recipe_is_the_notebook() -> None:
    assert (SEED.lora_r, SEED.lora_alpha, SEED.lora_dropout) == (16, 8, 0.1)
    assert SEED.lora_target_modules == (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
    )
    assert SEED.num_train_epochs == 1
    assert (SEED.per_device_train_batch_size, SEED.gradient_accumulation_steps) == (1, 2)
    assert SEED.optim == "paged_adamw_8bit"
    assert (SEED.learning_rate, SEED.weight_decay, SEED.max_grad_norm) == (2e-4, 0.001, 0.3)
    assert (SEED.warmup_ratio, SEED.lr_scheduler_type, SEED.group_by_length) == (
        0.3,
        "linear",
        True,
    )
    assert SEED.load_in_4bit and SEED.bnb_4bit_quant_type == "nf4"
    assert SEED.bnb_4bit_compute_dtype == "float16" and not SEED.bnb_4bit_use_double_quant
    assert not (SEED.packing or SEED.bf16 or SEED.fp16)


def test_fast_recipe_keeps_the_lora_and_changes_what_makes_a_gpu_fast() -> None:
    lora = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
    assert all(getattr(FAST, name) == getattr(SEED, name) for name in lora)
    assert FAST.packing and FAST.padding_free and FAST.bf16 and FAST.completion_only_loss
    assert FAST.per_device_train_batch_size * FAST.gradient_accumulation_steps > 2
    assert FAST.load_in_4bit and FAST.bnb_4bit_quant_type == "nf4"
    assert set(RECIPES) == {"seed", "fast"}


def test_every_field_has_a_docstring_and_round_trips(tmp_path: Path) -> None:
    docs = field_docs()
    names = [f.name for f in dataclasses.fields(RunConfig)]
    assert [name for name in names if not docs.get(name)] == []
    config = recipe_config("fast", base_model="m", notes=("a note",))
    config.save(tmp_path / "run_config.json")
    assert RunConfig.load(tmp_path / "run_config.json") == config
    with pytest.raises(BadInputError, match="unknown run config fields: nope"):
        RunConfig.from_dict({"nope": 1})


def test_every_field_is_overridable_by_name_and_value() -> None:
    assert parse_override("learning_rate=1e-4") == ("learning_rate", 1e-4)
    assert parse_override("max-steps=7") == ("max_steps", 7)
    assert parse_override("packing=yes") == ("packing", True)
    assert parse_override("bf16=off") == ("bf16", False)
    assert parse_override("lora_target_modules=q_proj, v_proj") == (
        "lora_target_modules",
        ("q_proj", "v_proj"),
    )
    assert parse_override("optim=adamw_torch") == ("optim", "adamw_torch")
    for bad in ("learning_rate", "nope=1", "lora_r=big", "packing=maybe"):
        with pytest.raises(BadInputError):
            parse_override(bad)
    config = recipe_config("seed", **dict([parse_override("lora_r=8")]))
    assert config.lora_r == 8 and config.recipe == "seed"
    with pytest.raises(BadInputError, match="unknown recipe"):
        recipe_config("turbo")
    with pytest.raises(BadInputError, match="max_steps"):
        recipe_config("seed", max_steps=0)
    with pytest.raises(BadInputError, match="padding_free without packing"):
        recipe_config("seed", padding_free=True)
    with pytest.raises(BadInputError, match="context"):
        recipe_config("seed", context="everything")


def test_defaults_adapt_to_a_cpu_and_the_change_is_recorded() -> None:
    config = adapt_to_hardware(SEED, CPU)
    assert not config.load_in_4bit
    assert config.optim == "adamw_torch"
    assert any(note.startswith("optim: paged_adamw_8bit -> adamw_torch") for note in config.notes)
    assert any(note.startswith("load_in_4bit: True -> False") for note in config.notes)
    fast = adapt_to_hardware(FAST, CPU)
    assert fast.attn_implementation == "sdpa" and fast.packing
    # No native bf16 on this CPU: autocast would be emulated (0.08x seed, issue 16), so off.
    assert not fast.bf16 and not fast.fp16
    assert any(n.startswith("bf16: True -> False (this CPU emulates bf16") for n in fast.notes)
    assert adapt_to_hardware(FAST, CPU_BF16).bf16  # where it is native, it stays
    with pytest.raises(BadInputError, match="bf16=True needs a CPU with native bf16"):
        adapt_to_hardware(FAST, CPU, explicit={"bf16"})
    # --4bit on a CPU uses bitsandbytes' CPU backend.
    four_bit = adapt_to_hardware(SEED, CPU, explicit={"load_in_4bit"})
    assert four_bit.load_in_4bit and four_bit.optim == "adamw_torch"


def test_explicit_settings_that_need_cuda_are_refused() -> None:
    no_bnb_cpu = Hardware(cuda=False, bnb_cpu_4bit=False)
    with pytest.raises(BadInputError, match=r"--4bit needs CUDA"):
        adapt_to_hardware(SEED, no_bnb_cpu, explicit={"load_in_4bit"})
    with pytest.raises(BadInputError, match="optim=paged_adamw_8bit needs CUDA"):
        adapt_to_hardware(SEED, CPU, explicit={"optim"})
    with pytest.raises(BadInputError, match="fp16=True needs CUDA"):
        adapt_to_hardware(dataclasses.replace(SEED, fp16=True), CPU, explicit={"fp16"})
    with pytest.raises(BadInputError, match="flash"):
        adapt_to_hardware(FAST, OLD_GPU, explicit={"attn_implementation"})


def test_gpus_keep_the_recipe_or_fall_back_to_fp16() -> None:
    assert adapt_to_hardware(SEED, NEW_GPU) == SEED
    assert adapt_to_hardware(FAST, NEW_GPU) == FAST
    old = adapt_to_hardware(FAST, OLD_GPU)
    assert (old.bf16, old.fp16, old.bnb_4bit_compute_dtype) == (False, True, "float16")
    assert old.attn_implementation == "sdpa" and len(old.notes) == 5


def test_packed_blocks_go_one_per_pass_without_flash_attn() -> None:
    # Without flash-attn a padding-free batch is one long sequence under a block mask: attention
    # grows with the batch (issue 16: 4 blocks per pass at ~0.5x the tokens/s of 1 x 4).
    for hardware in (CPU, CPU_BF16, OLD_GPU):
        fast = adapt_to_hardware(FAST, hardware)
        assert (fast.per_device_train_batch_size, fast.gradient_accumulation_steps) == (1, 4)
        assert fast.per_device_eval_batch_size == 1
        assert any(n.startswith("per_device_train_batch_size: 4 -> 1") for n in fast.notes)
    # With flash-attn the blocks are attended one by one: the recipe stays.
    assert adapt_to_hardware(FAST, NEW_GPU).per_device_train_batch_size == 4
    # A batch the user chose is kept (it can work, only slower).
    chosen = dataclasses.replace(FAST, per_device_train_batch_size=2)
    kept = adapt_to_hardware(chosen, CPU, explicit={"per_device_train_batch_size"})
    assert (kept.per_device_train_batch_size, kept.gradient_accumulation_steps) == (2, 1)
    # Unpacked batches are padded, not flattened: nothing to change.
    assert adapt_to_hardware(SEED, CPU).per_device_train_batch_size == 1


def test_runner_and_accelerate_commands() -> None:
    options = RunnerOptions(
        db=Path("s.db"),
        base_model="m",
        recipe="fast",
        output=Path("runs/x"),
        max_steps=5,
        load_in_4bit=False,
        overrides=("lora_r=8",),
        events=True,
    )
    argv = runner_command(options, python="python")
    assert argv[:3] == ["python", "-m", "studio.train"]
    assert argv[3:] == [
        "--db",
        "s.db",
        "--base-model",
        "m",
        "--recipe",
        "fast",
        "--output",
        "runs/x",
        "--max-steps",
        "5",
        "--no-4bit",
        "--set",
        "lora_r=8",
        "--events",
    ]
    launch = accelerate_command(options, num_processes=4)
    assert launch[:7] == [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "4",
        "-m",
        "studio.train",
    ]
    assert launch[7:] == argv[3:]
