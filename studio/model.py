"""The domain vocabulary: stages, statuses, seeds, and the rules that tie them together.

Every other layer uses these names; the record-status rule lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import xxhash


class Stage(StrEnum):
    """The four synthesized stages of one record, in chain order."""

    INTAKE_FORM = "intake_form"
    CBT_TECHNIQUE = "cbt_technique"
    CBT_PLAN = "cbt_plan"
    DIALOGUE = "dialogue"

    @property
    def position(self) -> int:
        return STAGES.index(self) + 1

    @property
    def label(self) -> str:
        return _STAGE_LABELS[self]

    def downstream(self) -> tuple[Stage, ...]:
        """The stages that were generated from this one (and go stale when it changes)."""
        return STAGES[STAGES.index(self) + 1 :]


STAGES: tuple[Stage, ...] = tuple(Stage)
_STAGE_LABELS = {
    Stage.INTAKE_FORM: "Intake form",
    Stage.CBT_TECHNIQUE: "CBT technique",
    Stage.CBT_PLAN: "Counseling plan",
    Stage.DIALOGUE: "Dialogue",
}


class StageStatus(StrEnum):
    PENDING = "pending"
    """Not generated yet."""
    GENERATED = "generated"
    """Has LLM (or imported) text that awaits a reviewer."""
    ACCEPTED = "accepted"
    EDITED = "edited"
    """Accepted with the reviewer's own text (the LLM original is kept beside it)."""
    REJECTED = "rejected"
    STALE = "stale"
    """An upstream stage changed after this one was generated."""
    FAILED = "failed"
    """The backend gave no usable answer after the last retry; `error` says why."""
    INVALID = "invalid"
    """The answer failed validation (unknown technique, malformed dialogue); raw text kept."""


#: Stage statuses that count as a reviewer's approval.
APPROVED: frozenset[StageStatus] = frozenset({StageStatus.ACCEPTED, StageStatus.EDITED})
#: Stage statuses that carry reviewable text.
HAS_TEXT: frozenset[StageStatus] = frozenset(
    {StageStatus.GENERATED, StageStatus.ACCEPTED, StageStatus.EDITED, StageStatus.REJECTED}
)
#: Stage statuses that (re)synthesis works on.
NEEDS_SYNTHESIS: frozenset[StageStatus] = frozenset(
    {StageStatus.PENDING, StageStatus.STALE, StageStatus.FAILED}
)


class RecordStatus(StrEnum):
    PENDING = "pending"
    """The chain is incomplete and nobody has decided anything yet."""
    IN_REVIEW = "in_review"
    """Ready for (or part-way through) review."""
    ACCEPTED = "accepted"
    """All four stages are accepted or edited."""
    REJECTED = "rejected"
    """Rejected as a whole by a reviewer."""
    DISPUTED = "disputed"
    """Double-reviewed, and the reviewers decided differently: it waits for adjudication
    (`studio.store.decisions.settle` sets it; `record_status` never derives it)."""


class Attitude(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class SynthMode(StrEnum):
    """How a dialogue is written; each record keeps the mode it was written in (`records.mode`)."""

    SCRIPT = "script"
    """One call writes the whole dialogue."""
    TWO_AGENT = "two-agent"
    """A counselor agent and a client agent take turns."""


class BackendName(StrEnum):
    """Where prompts go; kept with each cached answer (`llm_cache.backend`) and each batch."""

    GROQ = "groq"
    """Groq's API, through the groq SDK."""
    OPENAI = "openai"
    """Any OpenAI-compatible server, through the openai SDK."""
    LOCAL = "local"
    """A transformers model on this machine."""


def record_status(stage_statuses: Iterable[StageStatus], *, rejected: bool) -> RecordStatus:
    """The one rule for a record's status, derived from its stages.

    A record is `rejected` when rejected as a whole, `accepted` when all four stages are accepted
    or edited, `pending` while its chain is incomplete and untouched, else `in_review`.
    """
    if rejected:
        return RecordStatus.REJECTED
    statuses = list(stage_statuses)
    if len(statuses) == len(STAGES) and all(s in APPROVED for s in statuses):
        return RecordStatus.ACCEPTED
    decided = any(s in APPROVED or s is StageStatus.REJECTED for s in statuses)
    complete = len(statuses) == len(STAGES) and all(s in HAS_TEXT for s in statuses)
    if complete or decided:
        return RecordStatus.IN_REVIEW
    return RecordStatus.PENDING


def content_hash(parts: Sequence[str | Sequence[str]]) -> str:
    """A stable hash of text fields (lists are joined); the dedupe key for seeds and records.

    Fields are separated by control characters that never occur in the text, so
    ("ab", "c") and ("a", "bc") hash differently.
    """
    joined = "\x1f".join(part if isinstance(part, str) else "\x1e".join(part) for part in parts)
    # xxh3-128: a dedupe key, not a security boundary, and 10x faster than a cryptographic hash
    # on the 300 MB of a full CACTUS import.
    return xxhash.xxh3_128_hexdigest(joined.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class Seed:
    """A PatternReframe-style seed: who the client is and the thought to work on."""

    persona: str
    thought: str
    patterns: tuple[str, ...] = ()
    reframes: tuple[str, ...] = ()
    source: str = ""

    @property
    def content_hash(self) -> str:
        return content_hash((self.persona, self.thought, self.patterns, self.reframes))


@dataclass(frozen=True, slots=True)
class CactusRow:
    """One row of a CACTUS-format dataset: a seed plus the four stages and the client attitude."""

    seed: Seed
    stages: dict[Stage, str] = field(default_factory=dict)
    attitude: str = ""

    @property
    def content_hash(self) -> str:
        return content_hash(
            (
                self.seed.content_hash,
                *(self.stages.get(stage, "") for stage in STAGES),
                self.attitude,
            )
        )


#: The seven columns of a CACTUS row, in the released order.
CACTUS_COLUMNS: tuple[str, ...] = (
    "thought",
    "patterns",
    "intake_form",
    "cbt_technique",
    "cbt_plan",
    "attitude",
    "dialogue",
)
