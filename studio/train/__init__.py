"""Training: accepted records → SFT dataset → (Q)LoRA run → a PEFT adapter folder.

    dataset.py    records → "dialogue so far → next counselor turn" examples, split, token stats,
                  fitting to max_length by dropping the oldest turns (never the target)
    recipes.py    RunConfig (every setting of a run) and the `seed` / `fast` presets
    evaluation.py the capped validation subset and an eval interval within the time budget
    hardware.py   fit a config to the machine (CUDA, bf16, flash-attn, bitsandbytes on CPU)
    preflight.py  the cheap checks that end in exit 2 (no accepted records, no model, …)
    launch.py     the runner's command line, for one process or `accelerate launch`
    runner.py     the training process (`python -m studio.train`): owns its run folder, event
                  log and `runs` row; model.py and callbacks.py are its TRL/PEFT side
    events.py     the JSON-lines event stream; monitor.py tails it and folds it into progress
    control.py    RunControl: launch, attach, follow, stop and conclude a run — the one core
                  `studio train` and the review app's Training pane both use
    adapter.py    what the adapter folder says about its prompt format (used by synth's local)

Several GPUs: every rank trains a whole 4-bit copy on its share of each batch, and only rank 0
writes the log, the database row and the adapter. Give the run folder explicitly so that all ranks
agree on it:

    accelerate launch --multi_gpu --num_processes 4 -m studio.train \\
        --db studio.db --base-model meta-llama/Llama-2-7b-hf --recipe fast --output runs/fast-4gpu

Nothing here imports textual. Only model.py and callbacks.py import torch / transformers / trl at
module level (the runner process loads them); the rest imports them inside functions, so the
review app and the CLI can use the dataset builder, the recipes and the monitor without them.
"""
