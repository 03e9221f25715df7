"""The plain TRL script `bench/train_startup.py` holds `studio train` against.

    python bench/train_plain_sft.py MODEL_DIR EXAMPLES.jsonl OUT_DIR --max-steps 30 --max-length N

What a person writes by hand from TRL's docs: the model in fp32 on the CPU, LoRA from peft, the
prompt/completion rows read from a JSON-lines file, `SFTTrainer` with the same settings as the
studio's `seed` recipe on a CPU (batch 1 x 2 accumulation, AdamW, gradient checkpointing,
completion-only loss), then `save_model`. No evaluation, no bookkeeping. It prints the wall-clock
time (`time.time()`) of the first and last optimizer steps, one line each on stdout
(`step-clock {"step": 1, "t": …}`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

#: Marks this script's own lines on stdout (the trainer prints its logs there too).
CLOCK = "step-clock"


class StepClock(TrainerCallback):
    """Prints when the first and the last optimizer steps ended."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step in (1, state.max_steps):
            print(CLOCK, json.dumps({"step": state.global_step, "t": time.time()}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("examples")
    parser.add_argument("output")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--max-length", type=int, required=True)
    args = parser.parse_args()

    with Path(args.examples).open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype="float32", attn_implementation="sdpa"
    )
    model.config.use_cache = False
    config = SFTConfig(
        output_dir=f"{args.output}/checkpoints",
        max_steps=args.max_steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        optim="adamw_torch",
        learning_rate=2e-4,
        weight_decay=0.001,
        max_grad_norm=0.3,
        warmup_steps=0.3,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        bf16=False,
        use_cpu=True,
        max_length=args.max_length,
        logging_steps=1,
        save_strategy="no",
        seed=42,
        data_seed=42,
        report_to=[],
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=False,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
    )
    lora = LoraConfig(
        r=16,
        lora_alpha=8,
        lora_dropout=0.1,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[StepClock()],
    )
    trainer.train()
    trainer.save_model(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
