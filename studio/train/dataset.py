"""The SFT dataset: accepted records → "dialogue so far → next counselor turn" examples.

For every counselor turn after the opening exchange there is one example in TRL's conversational
prompt/completion format: the prompt is a system message plus the dialogue so far as chat
messages (counselor → `assistant`, client → `user`), the completion is that counselor turn. TRL
then computes the loss on the completion only.

What the seed notebook got wrong and this module does not: turns are separate messages rendered
by the model's own chat template (never glued together, never another model family's header
tokens as plain text), and every counselor turn of every dialogue becomes an example, the last
one included.

Pure Python (no torch): the review app computes the dataset summary with it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson
import xxhash

from studio.cbt.dialogue import Role, parse_dialogue
from studio.model import Stage
from studio.store import RecordView

SYSTEM_PROMPT = (
    "You are a counselor trained in cognitive behavioral therapy (CBT). Continue the counseling "
    "session: reply to the client with the counselor's next turn."
)

#: Messages at the start of a dialogue that only open it (the counselor's greeting and the
#: client's first answer); counselor turns from here on become examples.
OPENING_EXCHANGE = 2

#: Used when the base model has no chat template (Llama-2 base) or its template refuses a
#: conversation that the counselor opens (Llama-2-chat demands user/assistant/user/…).
#: The generation prompt ends on "Counselor:" without a space so that the tokenized prompt is a
#: prefix of the tokenized prompt + completion.
PLAIN_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Client: ' + message['content'] + '\n' }}"
    "{% else %}{{ 'Counselor: ' + message['content'] }}"
    "{% if eos_token %}{{ eos_token }}{% endif %}{{ '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Counselor:' }}{% endif %}"
)


class ChatMessage(TypedDict):
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SftExample:
    """One training example: the conversation so far and the counselor turn that follows it."""

    record_id: int
    turn: int
    """1-based position of the completion among the dialogue's messages."""
    prompt: tuple[ChatMessage, ...]
    completion: ChatMessage

    def row(self) -> dict[str, Any]:
        """The example as TRL's conversational prompt/completion row."""
        return {
            "prompt": [dict(message) for message in self.prompt],
            "completion": [dict(self.completion)],
        }

    def export_row(self, split: str) -> dict[str, Any]:
        """The row plus where it came from (for `studio export --format sft-jsonl|hf`)."""
        return {**self.row(), "record_id": self.record_id, "turn": self.turn, "split": split}


@dataclass(frozen=True, slots=True)
class SftDataset:
    """The examples of a set of accepted records, split into train and validation by record."""

    context: str
    train: tuple[SftExample, ...]
    validation: tuple[SftExample, ...]
    record_ids: tuple[int, ...]
    """Every accepted record that was read, in id order."""
    records_without_examples: tuple[int, ...] = ()
    """Accepted records whose dialogue has no counselor turn after the opening exchange."""
    dataset_hash: str = ""

    @property
    def examples(self) -> tuple[SftExample, ...]:
        return self.train + self.validation

    @property
    def n_records(self) -> int:
        return len(self.record_ids)

    def summary(self) -> dict[str, Any]:
        """Sizes and the hash, as the start event and the runs table record them."""
        return {
            "hash": self.dataset_hash,
            "context": self.context,
            "records": self.n_records,
            "records_without_examples": len(self.records_without_examples),
            "examples": len(self.examples),
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "validation_records": len({e.record_id for e in self.validation}),
        }


def dialogue_messages(text: str) -> list[ChatMessage]:
    """A dialogue as alternating chat messages: counselor → assistant, client → user.

    Empty turns and narration before the first turn are dropped. Consecutive turns of one speaker
    are merged into one message, so every chat template sees strictly alternating roles. A
    client's stage direction stays as context (`(sighs) I keep…`); a counselor's is dropped,
    because the model should learn to say the words, not to narrate.
    """
    messages: list[ChatMessage] = []
    for turn in parse_dialogue(text).turns:
        content = turn.text.strip()
        if not content:
            continue
        role = "assistant" if turn.role is Role.COUNSELOR else "user"
        if turn.note and turn.role is Role.CLIENT:
            content = f"({turn.note}) {content}"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + content
        else:
            messages.append({"role": role, "content": content})
    return messages


def system_message(record: RecordView, context: str) -> str:
    """The system prompt: the task, plus (with `plan`) the intake, technique and plan."""
    if context == "history":
        return SYSTEM_PROMPT
    if context != "plan":
        raise ValueError(f"unknown context {context!r}; expected history or plan")
    return (
        f"{SYSTEM_PROMPT}\n\n"
        f"Client intake:\n{record.text(Stage.INTAKE_FORM).strip()}\n\n"
        f"CBT technique: {record.text(Stage.CBT_TECHNIQUE).strip()}\n\n"
        f"Counseling plan:\n{record.text(Stage.CBT_PLAN).strip()}"
    )


def examples_from_messages(
    record_id: int, system: str, messages: Sequence[ChatMessage]
) -> Iterator[SftExample]:
    """One example per counselor message after the opening exchange."""
    system_msg: ChatMessage = {"role": "system", "content": system}
    for index, message in enumerate(messages):
        if index < OPENING_EXCHANGE or message["role"] != "assistant":
            continue
        yield SftExample(
            record_id=record_id,
            turn=index + 1,
            prompt=(system_msg, *messages[:index]),
            completion=message,
        )


def record_examples(record: RecordView, context: str) -> list[SftExample]:
    """The examples of one record, from its current text (a reviewer's edit wins)."""
    messages = dialogue_messages(record.text(Stage.DIALOGUE))
    return list(examples_from_messages(record.id, system_message(record, context), messages))


def build_sft_dataset(
    records: Iterable[RecordView],
    *,
    context: str = "history",
    validation_fraction: float = 0.1,
    seed: int = 42,
) -> SftDataset:
    """Examples of `records`, split deterministically into train and validation by record.

    A record's examples never straddle the split, and neither do records of one seed (they share
    the client and the thought, so splitting them would leak). The split depends only on the
    seeds' content and `seed`: not on record ids, database order or which other records exist.
    """
    per_record: list[tuple[RecordView, list[SftExample]]] = []
    empty: list[int] = []
    for record in records:
        examples = record_examples(record, context)
        if examples:
            per_record.append((record, examples))
        else:
            empty.append(record.id)
    held_out = validation_keys(
        [record.seed.content_hash for record, _ in per_record], validation_fraction, seed
    )
    train: list[SftExample] = []
    validation: list[SftExample] = []
    for record, examples in per_record:
        (validation if record.seed.content_hash in held_out else train).extend(examples)
    return SftDataset(
        context=context,
        train=tuple(train),
        validation=tuple(validation),
        record_ids=tuple(sorted([record.id for record, _ in per_record] + empty)),
        records_without_examples=tuple(empty),
        dataset_hash=dataset_hash(train, validation),
    )


def validation_keys(keys: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """The keys held out: the `round(n * fraction)` keys whose seeded hash sorts first."""
    distinct = sorted(set(keys))
    count = math.floor(len(distinct) * fraction + 0.5)
    if count >= len(distinct):
        count = len(distinct) - 1  # never hold out everything: there would be nothing to train on
    ranked = sorted(distinct, key=lambda key: xxhash.xxh3_64_hexdigest(f"{seed}:{key}".encode()))
    return frozenset(ranked[: max(count, 0)])


def dataset_hash(train: Sequence[SftExample], validation: Sequence[SftExample]) -> str:
    """A hash of exactly what is trained and evaluated on (rows, their order and split)."""
    digest = xxhash.xxh3_128()
    for split, examples in (("train", train), ("validation", validation)):
        for example in examples:
            digest.update(orjson.dumps(example.export_row(split), option=orjson.OPT_SORT_KEYS))
            digest.update(b"\n")
    return digest.hexdigest()


# -- rendering with a tokenizer -------------------------------------------------------------------
# The tokenizer is a `transformers` tokenizer; typed `Any` so that this module never imports it.


def ensure_chat_template(tokenizer: Any, probe: SftExample | None = None) -> str:
    """Make `tokenizer` able to render our conversations; returns which template it uses.

    The model's own template is used when it has one that accepts a counselor-first
    conversation; otherwise `PLAIN_CHAT_TEMPLATE` is installed (and saved with the adapter).
    """
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
        return "plain (the model has no chat template)"
    if probe is not None:
        try:
            render_prompt(tokenizer, probe)
            render_full(tokenizer, probe)
        except Exception as exc:  # jinja's TemplateError, or whatever a template raises
            tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
            return f"plain (the model's template rejects counselor-first dialogues: {exc})"
    return "model"


def render_prompt(tokenizer: Any, example: SftExample) -> str:
    """The prompt as the model sees it at inference, ending where the counselor's turn starts."""
    return str(
        tokenizer.apply_chat_template(
            [dict(m) for m in example.prompt], tokenize=False, add_generation_prompt=True
        )
    )


def render_full(tokenizer: Any, example: SftExample) -> str:
    return str(
        tokenizer.apply_chat_template(
            [*(dict(m) for m in example.prompt), dict(example.completion)], tokenize=False
        )
    )


@dataclass(frozen=True, slots=True)
class TokenStats:
    """Token lengths of examples (prompt + completion, as rendered by the chat template)."""

    examples: int
    min: int
    mean: float
    median: float
    p95: int
    max: int
    completion_mean: float
    """Mean length of the counselor turns alone (what the loss is computed on)."""
    over_max_length: int
    """Examples longer than `max_length` (they are cut at the end when training)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "min": self.min,
            "mean": round(self.mean, 1),
            "median": self.median,
            "p95": self.p95,
            "max": self.max,
            "completion_mean": round(self.completion_mean, 1),
            "over_max_length": self.over_max_length,
        }


def token_length_stats(
    examples: Sequence[SftExample], tokenizer: Any, *, max_length: int | None = None
) -> TokenStats:
    """Token-length statistics, tokenized in one batch by the model's own tokenizer."""
    if not examples:
        return TokenStats(0, 0, 0.0, 0.0, 0, 0, 0.0, 0)
    prompts = [render_prompt(tokenizer, e) for e in examples]
    fulls = [render_full(tokenizer, e) for e in examples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    totals = sorted(len(ids) for ids in full_ids)
    completions = [len(f) - len(p) for p, f in zip(prompt_ids, full_ids, strict=True)]
    p95_index = min(len(totals) - 1, math.ceil(0.95 * len(totals)) - 1)
    return TokenStats(
        examples=len(totals),
        min=totals[0],
        mean=statistics.fmean(totals),
        median=float(statistics.median(totals)),
        p95=totals[p95_index],
        max=totals[-1],
        completion_mean=statistics.fmean(completions),
        over_max_length=sum(1 for n in totals if max_length is not None and n > max_length),
    )
