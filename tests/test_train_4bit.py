"""`--4bit` on a CPU: bitsandbytes' CPU backend trains with real gradients.

On CPUs with AVX512-BF16, an eval-mode forward without gradients repacks 4-bit weights in place,
and training afterwards gets silently wrong gradients unless the runner turns that off
(`keep_cpu_4bit_weights_unpacked`). The trainer evaluates before it trains more, so this test
evaluates first and checks the gradients did not move.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.store import Store
from studio.train.dataset import build_sft_dataset, ensure_chat_template
from studio.train.hardware import adapt_to_hardware, detect_hardware
from studio.train.recipes import recipe_config
from tests.conftest import cactus_row
from tests.tiny_model import build_tiny_llama

pytestmark = pytest.mark.train_extra


def _lora_grads(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    import torch

    model.train()
    model.zero_grad()
    torch.manual_seed(0)  # the same LoRA dropout mask every time
    model(**batch).loss.backward()
    grads = {
        name: param.grad.detach().float().clone()
        for name, param in model.named_parameters()
        if param.requires_grad and param.grad is not None
    }
    model.zero_grad()
    return grads


def test_4bit_on_cpu_trains_with_real_gradients(tmp_path: Path) -> None:
    import torch
    from bitsandbytes.nn.modules import Linear4bit
    from transformers import AutoTokenizer

    from studio.train.model import (
        build_trainer,
        keep_cpu_4bit_weights_unpacked,
        load_base_model,
        match_adapter_dtype,
        prepare_4bit_model,
    )

    hardware = detect_hardware()
    if hardware.cuda or not hardware.bnb_cpu_4bit:
        pytest.skip("needs a CPU-only machine with bitsandbytes' CPU backend")
    model_dir = build_tiny_llama(tmp_path / "model")
    with Store(tmp_path / "studio.db") as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(4)], accepted_by="ann")
        dataset = build_sft_dataset(store.accepted_records(), validation_fraction=0.25)
    config = adapt_to_hardware(
        recipe_config("seed", base_model=str(model_dir), load_in_4bit=True, max_steps=4),
        hardware,
        explicit={"load_in_4bit", "max_steps"},
    )
    assert config.load_in_4bit and config.optim == "adamw_torch"

    model = load_base_model(config, str(model_dir), hardware)
    linear4bit = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert len(linear4bit) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert keep_cpu_4bit_weights_unpacked(model) == len(linear4bit)
    assert not any(m.support_avx512bf16_for_cpu for m in linear4bit)
    model = prepare_4bit_model(model, config)  # QLoRA practice: the rest in fp32, base frozen
    rest = [p for p in model.parameters() if p.__class__.__name__ != "Params4bit"]
    assert rest and all(p.dtype == torch.float32 and not p.requires_grad for p in rest)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_chat_template(tokenizer, dataset.train[0])
    trainer = build_trainer(
        config, model, tokenizer, dataset, output=tmp_path / "run", hardware=hardware
    )
    peft_model = trainer.model
    assert peft_model is not None
    assert match_adapter_dtype(peft_model, config) > 0  # TRL made them bf16; no bf16 here
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    batch = next(iter(trainer.get_train_dataloader()))
    before_eval = _lora_grads(peft_model, batch)
    lora_b = [g for name, g in before_eval.items() if "lora_B" in name]
    assert lora_b and all(bool(g.abs().sum() > 0) for g in lora_b)  # (A's are 0 while B is 0)
    eval_loss = trainer.evaluate()["eval_loss"]
    assert math.isfinite(eval_loss)
    after_eval = _lora_grads(peft_model, batch)
    for name, grad in before_eval.items():
        assert torch.allclose(grad, after_eval[name], rtol=1e-3, atol=1e-6), name

    lora_before = {
        n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad
    }
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    changed = [
        n
        for n, p in peft_model.named_parameters()
        if p.requires_grad and not torch.equal(p, lora_before[n])
    ]
    assert len(changed) == len(lora_before)  # every LoRA matrix learned something
