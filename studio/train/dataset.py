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

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    return system_prompt(context, record.text)


def system_prompt(context: str, text: Callable[[Stage], str]) -> str:
    """`system_message` from a function that gives a stage's current text (the export reads
    texts without building a `RecordView`)."""
    if context == "history":
        return SYSTEM_PROMPT
    if context != "plan":
        raise ValueError(f"unknown context {context!r}; expected history or plan")
    return (
        f"{SYSTEM_PROMPT}\n\n"
        f"Client intake:\n{text(Stage.INTAKE_FORM).strip()}\n\n"
        f"CBT technique: {text(Stage.CBT_TECHNIQUE).strip()}\n\n"
        f"Counseling plan:\n{text(Stage.CBT_PLAN).strip()}"
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
    """Examples longer than `max_length` (their oldest turns are dropped when training)."""
    p99: int = 0

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
            "p99": self.p99,
        }


def token_length_stats(
    examples: Sequence[SftExample],
    tokenizer: Any,
    *,
    max_length: int | None = None,
    lengths: Sequence[int] | None = None,
) -> TokenStats:
    """Token-length statistics, tokenized in one batch by the model's own tokenizer.

    `lengths`: the examples' `full_token_lengths`, when the caller has them already (the runner
    does): rendering and tokenizing every example again was a third of this function's time.
    """
    if not examples:
        return TokenStats(0, 0, 0.0, 0.0, 0, 0, 0.0, 0)
    if lengths is None:
        lengths = full_token_lengths(examples, tokenizer)
    prompts = [render_prompt(tokenizer, e) for e in examples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    totals = sorted(lengths)
    completions = [full - len(p) for p, full in zip(prompt_ids, lengths, strict=True)]
    return TokenStats(
        examples=len(totals),
        min=totals[0],
        mean=statistics.fmean(totals),
        median=float(statistics.median(totals)),
        p95=percentile(totals, 0.95),
        max=totals[-1],
        completion_mean=statistics.fmean(completions),
        over_max_length=sum(1 for n in totals if max_length is not None and n > max_length),
        p99=percentile(totals, MAX_LENGTH_PERCENTILE),
    )


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """The nearest-rank percentile of values sorted ascending (0 for none)."""
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# -- fitting examples to max_length ---------------------------------------------------------------

#: The default max_length covers this share of the examples whole; the rest lose their oldest
#: turns. A higher percentile would let a handful of marathon sessions set the memory of every
#: batch (and, with packing, the block size).
MAX_LENGTH_PERCENTILE = 0.99
#: The default max_length is rounded up to a multiple of this (tensor-core friendly shapes).
MAX_LENGTH_MULTIPLE = 64


def default_max_length(token_lengths: Sequence[int], model_context: int | None) -> tuple[int, str]:
    """max_length from the data: the 99th percentile of the example lengths, rounded up to a
    multiple of 64 and capped by the model's context; returns it with a note saying so."""
    ranked = sorted(token_lengths)
    high = percentile(ranked, MAX_LENGTH_PERCENTILE)
    chosen = max(MAX_LENGTH_MULTIPLE, math.ceil(high / MAX_LENGTH_MULTIPLE) * MAX_LENGTH_MULTIPLE)
    note = f"max_length {chosen}: the 99th percentile of the examples' token lengths ({high})"
    if model_context is not None and chosen > model_context:
        chosen = model_context
        note = f"max_length {chosen}: the model's context (the examples' 99th percentile is {high})"
    return chosen, note


@dataclass(frozen=True, slots=True)
class FitReport:
    """What fitting the examples to `max_length` did. No example is ever cut at the end."""

    max_length: int
    examples: int
    """Examples that went in."""
    shortened: int = 0
    """Examples that lost their oldest turns (the system prompt and the completion are whole)."""
    dropped_turns: int = 0
    """Turns removed from the start of those examples' histories, in all."""
    left_out: int = 0
    """Examples whose system prompt and completion alone exceed `max_length`: not trained on."""

    def as_dict(self) -> dict[str, int]:
        return {
            "max_length": self.max_length,
            "examples": self.examples,
            "shortened": self.shortened,
            "dropped_turns": self.dropped_turns,
            "left_out": self.left_out,
        }

    def describe(self) -> str:
        """One line for the CLI, the pane and the log."""
        text = (
            f"max length {self.max_length:,}: {self.shortened:,} of {self.examples:,} examples "
            f"shortened from the start ({self.dropped_turns:,} oldest turns dropped)"
        )
        if self.left_out:
            text += (
                f"; {self.left_out:,} left out (the system prompt and the counselor turn alone "
                "are longer)"
            )
        return text


def full_token_lengths(examples: Sequence[SftExample], tokenizer: Any) -> list[int]:
    """Tokens of each example (prompt + completion as the chat template renders them)."""
    rendered = [render_full(tokenizer, e) for e in examples]
    return [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


def fit_examples(
    examples: Sequence[SftExample],
    tokenizer: Any,
    max_length: int,
    *,
    lengths: Sequence[int] | None = None,
) -> tuple[list[SftExample], FitReport]:
    """Fit every example into `max_length` tokens by dropping its oldest turns.

    TRL cuts a long example at the end, which is exactly where the counselor turn (the only
    part with a loss) and its EOS are; so examples are shortened here, from the start of the
    history instead: the system prompt (with the plan context) stays, the most recent turns stay,
    the completion stays whole with its EOS. An example that cannot fit even with no history at
    all is left out and counted, never dropped silently.
    """
    if lengths is None:
        lengths = full_token_lengths(examples, tokenizer)
    fitted: list[SftExample] = []
    shortened = dropped_turns = left_out = 0
    for example, length in zip(examples, lengths, strict=True):
        if length <= max_length:
            fitted.append(example)
            continue
        result = _drop_oldest_turns(example, tokenizer, max_length, length)
        if result is None:
            left_out += 1
            continue
        short, dropped = result
        fitted.append(short)
        shortened += 1
        dropped_turns += dropped
    report = FitReport(max_length, len(examples), shortened, dropped_turns, left_out)
    return fitted, report


def _drop_oldest_turns(
    example: SftExample, tokenizer: Any, max_length: int, length: int
) -> tuple[SftExample, int] | None:
    """The example without its `k` oldest history turns, for the smallest k that fits."""
    system, history = example.prompt[0], example.prompt[1:]

    def without(k: int) -> SftExample:
        return dataclasses.replace(example, prompt=(system, *history[k:]))

    def fits(k: int) -> bool:
        rendered = render_full(tokenizer, without(k))
        return len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) <= max_length

    # A first guess from the turns' own token counts (one batched call), then exact renders:
    # the guess is one turn short of enough, so the loop below usually renders once or twice.
    contents = [m["content"] for m in history]
    sizes = [len(ids) for ids in tokenizer(contents, add_special_tokens=False)["input_ids"]]
    excess, guess = length - max_length, 0
    while guess < len(history) and excess > 0:
        excess -= sizes[guess]
        guess += 1
    k = max(0, guess - 1)
    while k <= len(history):
        if fits(k):
            break
        k += 1
    else:
        return None
    # The guess may have overshot (a turn costs more in context than alone): keep what fits.
    while k > 0 and fits(k - 1):
        k -= 1
    return without(k), k


def fit_dataset(
    dataset: SftDataset, tokenizer: Any, max_length: int, *, lengths: Sequence[int] | None = None
) -> tuple[SftDataset, FitReport]:
    """`fit_examples` over both splits; the hash is of what is actually trained on."""
    fitted, report = fit_examples(dataset.examples, tokenizer, max_length, lengths=lengths)
    by_key = {(e.record_id, e.turn): e for e in fitted}
    train = tuple(
        by_key[(e.record_id, e.turn)] for e in dataset.train if (e.record_id, e.turn) in by_key
    )
    validation = tuple(
        by_key[(e.record_id, e.turn)] for e in dataset.validation if (e.record_id, e.turn) in by_key
    )
    return (
        dataclasses.replace(
            dataset,
            train=train,
            validation=validation,
            dataset_hash=dataset_hash(train, validation),
        ),
        report,
    )
