"""A tiny random Llama and a tokenizer trained on the fly, for offline tests of model code.

`build_tiny_llama(path)` writes a folder that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load like any hub checkpoint: a 2-layer `LlamaConfig` model with
random weights and a byte-level BPE tokenizer (so any text encodes, no unknown tokens) with a
ChatML-style chat template. Nothing is downloaded; building takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]

# Enough counseling-flavoured text for BPE to learn merges; the weights are random anyway.
_CORPUS = [
    "Counselor: Hi, what brings you in today?",
    "Client: I keep thinking I'll fail my exam no matter what I do.",
    "Counselor: What makes that feel so certain? Let's look at the evidence together.",
    "Client: I failed a quiz last week, and everyone in class thinks I'm stupid.",
    "You are a counselor practicing cognitive behavioral therapy. Continue the session.",
    "Intake form, technique, plan: decatastrophizing, reality testing, alternative perspective.",
    "system user assistant",
]


def build_tokenizer(
    path: Path, *, corpus: Sequence[str] = (), vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with the chat template on `corpus` and save it to `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator([*_CORPUS * 4, *corpus], trainer=trainer)
    # transformers' tokenizer constructors are untyped.
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(path)
    return tokenizer


def build_tiny_llama(
    path: Path, *, hidden_size: int = 64, num_hidden_layers: int = 2, seed: int = 0
) -> Path:
    """Write a tiny random Llama model and its tokenizer to `path`; returns `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    return path
