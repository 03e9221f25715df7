"""Benchmark: the `seed` recipe against `fast` — tokens/s and peak GPU memory on the same examples.

    python bench/train_gpu.py              # a GPU: random-initialized Llama-3-8B shape, 4-bit
    python bench/train_gpu.py --tiny       # a CPU smoke test of the same path (tiny Llama)

Goal (GPU): `fast` trains ≥ 3x the tokens/s of `seed` at no more peak GPU memory.

Nothing is downloaded. The GPU mode writes a Llama-3-8B-shaped model with random weights (bf16,
~16 GB, built once in `--model-dir`) and a byte-level BPE tokenizer trained on the examples (so
token counts are in the right range; a random model's loss is meaningless anyway). The examples
come from the shipped demo dialogues, all accepted, in a fresh database. Each recipe runs in a
fresh `python -m studio.train` process — the product's own path — so peak memory starts clean.
On a device without internet, carry the trl / bitsandbytes / datasets / peft wheels (see the
device README).

Tokens/s counts non-padding tokens (prompt and completion) between step events, median over the
steps after `--warmup`. Peak memory is `torch.cuda.max_memory_allocated` over the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.demo import demo_rows  # noqa: E402
from studio.ingest.load import add_rows  # noqa: E402
from studio.model import CactusRow  # noqa: E402
from studio.store import Store  # noqa: E402
from studio.train.events import EndEvent, StepEvent, parse_event  # noqa: E402

RECIPES = ("seed", "fast")

# Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json).
LLAMA3_8B: dict[str, Any] = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}


@dataclass
class Result:
    recipe: str
    steps: int
    tokens_per_s: float
    peak_gpu_memory_gb: float | None
    train_loss: float | None
    notes: list[str]


def build_database(path: Path) -> int:
    """A fresh database holding every demo dialogue, accepted; returns the record count."""
    rows = [row for row in demo_rows() if isinstance(row, CactusRow)]
    with Store(path) as store:
        add_rows(store, rows, accepted_by="bench")
        return int(store.stats()["records"]["accepted"])


def build_llama3_8b_shape(model_dir: Path) -> Path:
    """Random weights in Llama-3-8B's shape, bf16, saved once (about 16 GB)."""
    if (model_dir / "config.json").is_file():
        return model_dir
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_model import build_tokenizer

    corpus = [
        row.stages.get(stage, "")
        for row in demo_rows()
        if isinstance(row, CactusRow)
        for stage in row.stages
    ]
    tokenizer = build_tokenizer(model_dir, corpus=corpus, vocab_size=8000)
    config = LlamaConfig(
        **LLAMA3_8B,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialized where it is fast, in bf16 from the start
        # `_from_config` (the documented way to pass a dtype) has no annotations.
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.save_pretrained(model_dir, max_shard_size="5GB")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return model_dir


def build_tiny(model_dir: Path) -> Path:
    from tests.tiny_model import build_tiny_llama

    if not (model_dir / "config.json").is_file():
        build_tiny_llama(model_dir, hidden_size=256, num_hidden_layers=4)
    return model_dir


def run_recipe(
    recipe: str, *, db: Path, model_dir: Path, out: Path, steps: int, warmup: int, extra: list[str]
) -> Result:
    argv = [
        sys.executable, "-m", "studio.train", "--db", str(db), "--base-model", str(model_dir),
        "--recipe", recipe, "--output", str(out), "--max-steps", str(steps), "--events",
        # Measure training alone: no evaluation, no checkpoint writes, a log line every step.
        "--set", "validation_fraction=0", "--set", f"save_steps={steps + 1}",
        "--set", "logging_steps=1",
        # A fixed block size, so rows stay comparable (the default now comes from the data).
        "--set", "max_length=1024", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_DB"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e is not None]
    end = next((e for e in events if isinstance(e, EndEvent)), None)
    if proc.returncode != 0 or end is None or end.status != "completed":
        sys.exit(f"{recipe}: the run failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
    rates = [
        e.tokens_per_s
        for e in events
        if isinstance(e, StepEvent) and e.step > warmup and e.tokens_per_s
    ]
    start = events[0]
    notes = list(getattr(start, "config", {}).get("notes", []))
    return Result(
        recipe=recipe,
        steps=int(end.metrics.get("global_step", 0)),
        tokens_per_s=statistics.median(rates) if rates else 0.0,
        peak_gpu_memory_gb=end.metrics.get("peak_gpu_memory_gb"),
        train_loss=end.metrics.get("train_loss"),
        notes=notes,
    )


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    except ImportError:
        pass
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test on a tiny Llama")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per recipe")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the median")
    parser.add_argument("--model-dir", type=Path, default=None, help="where the random model lives")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    steps = args.steps or (20 if args.tiny else 30)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.tiny:
        model_dir = build_tiny(args.model_dir or work / "tiny-llama")
        # Same comparison on a CPU: plain LoRA (no 4-bit), and no GPU-only settings to adapt.
        extra = ["--no-4bit"]
    else:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU: run with --tiny for the CPU smoke test")
        model_dir = build_llama3_8b_shape(
            args.model_dir or Path(tempfile.gettempdir()) / "llama3-8b-random"
        )
        extra = []
    db = work / "bench.db"
    records = build_database(db)
    results = [
        run_recipe(
            recipe,
            db=db,
            model_dir=model_dir,
            out=work / recipe,
            steps=steps,
            warmup=args.warmup,
            extra=extra,
        )
        for recipe in RECIPES
    ]
    seed, fast = results
    speedup = fast.tokens_per_s / seed.tokens_per_s if seed.tokens_per_s else float("nan")
    summary: dict[str, Any] = {
        "machine": machine(),
        "model": "tiny Llama (hidden 256, 4 layers)" if args.tiny else "Llama-3-8B shape, random",
        "records": records,
        "steps": steps,
        "results": [r.__dict__ for r in results],
        "speedup": speedup,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['model']} on {summary['machine']}: {records} accepted demo records, {steps} steps"
    )
    print("| recipe | tokens/s (median) | peak GPU memory | final loss |")
    print("| --- | --- | --- | --- |")
    for r in results:
        memory = (
            f"{r.peak_gpu_memory_gb:.2f} GiB" if r.peak_gpu_memory_gb is not None else "n/a (CPU)"
        )
        loss = f"{r.train_loss:.3f}" if r.train_loss is not None else "n/a"
        print(f"| {r.recipe} | {r.tokens_per_s:,.0f} | {memory} | {loss} |")
    print(f"fast / seed tokens/s: {speedup:.2f}x")
    for r in results:
        for note in r.notes:
            print(f"  {r.recipe}: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
