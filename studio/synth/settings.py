"""Synthesis settings: defaults < config file < environment < command-line flags.

The config file and the environment are read by `studio.settings` (one typed object); this
module applies its `[synth]` table, checked against `SynthSettings`' own fields. API keys come
from the environment only (`GROQ_API_KEY`, `OPENAI_API_KEY`), never from a file, and are never
stored, logged or exported (`SecretStr`).

    [synth]
    backend = "groq"                 # groq | openai | local
    model = "openai/gpt-oss-120b"
    reasoning_effort = "medium"      # low | medium | high, where the model supports it
    plan = "groq-free"               # a named rate-limit plan (below or built in)
    concurrency = 16
    mode = "two-agent"
    client_backend = "openai"        # two-agent mode: the client agent elsewhere (optional)
    client_model = "llama3.1"
    client_base_url = "http://localhost:11434/v1"

    [plans.my-team]
    rpm = 1000
    tpm = 250000
    price_in = 0.15                  # USD per million tokens (for `studio synth --batch --dry-run`)
    price_out = 0.60
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model

from studio.cbt.checks import Judgement, judge_answer
from studio.errors import BadInputError
from studio.model import BackendName, Stage, SynthMode
from studio.settings import Plan, environment_api_key, load_studio_settings
from studio.settings import config_path as _studio_config_path

DEFAULT_MODELS = {BackendName.GROQ: "openai/gpt-oss-120b"}
#: Known provider limits (requests and tokens per minute). Groq's free tier for gpt-oss-120b.
BUILTIN_PLANS: dict[str, Plan] = {"groq-free": Plan(rpm=30, tpm=8000)}


@dataclass(frozen=True)
class SynthSettings:
    backend: BackendName = BackendName.GROQ
    """Where prompts go: `groq` (groq SDK), `openai` (any OpenAI-compatible server), `local`."""
    model: str = ""
    """Model id; for `local`, a transformers model folder or hub id. Empty: the backend default."""
    base_url: str | None = None
    """Groq: the host (the SDK adds /openai/v1); openai: the server's …/v1 URL."""
    api_key: SecretStr | None = field(default=None, repr=False)
    """From the environment only (`SecretStr`: no repr, str or dump shows it); never written
    anywhere."""
    adapter: str | None = None
    """`local` only: a LoRA adapter folder to load on top of the model (e.g. one we trained)."""
    reasoning_effort: str | None = None
    """`low` / `medium` / `high` for reasoning models (gpt-oss); None leaves the server default."""
    temperature: float = 0.7
    max_tokens: int = 8192
    """Upper bound on completion tokens for one call (reasoning tokens count too)."""
    token_budgets: bool = True
    """Ask each stage for a completion budget learned from its answers (a high percentile with
    headroom, at most `max_tokens`; a cut answer is asked again once with more). Providers charge
    the `max_tokens` asked for against the token limit, so asking for 8,192 everywhere spends the
    limit on reserve. False: every call asks for `max_tokens`."""
    mode: SynthMode = SynthMode.SCRIPT
    """`script`: one call writes the whole dialogue; `two-agent`: counselor and client take turns."""
    min_turns: int = 10
    """A dialogue with fewer turns is `invalid`."""
    max_turns: int = 30
    """Script mode asks for at most this many turns; two-agent mode stops here."""
    agent_min_turns: int = 20
    """Two-agent mode: the client agent may end the session (`[/END]`) only after this many
    turns (capped by `max_turns`), as the CACTUS client prompt asks."""
    client_backend: BackendName | None = None
    """Two-agent mode: the client agent's backend; None: the same as the counselor's."""
    client_model: str | None = None
    """Two-agent mode: the client agent's model; None: the counselor's (or, with another
    `client_backend`, that backend's default)."""
    client_base_url: str | None = None
    """Two-agent mode: the client backend's URL, when `client_backend` differs."""
    concurrency: int = 32
    """Records in flight at once (and the ceiling for requests in flight)."""
    rpm: int | None = None
    """Known requests-per-minute limit; None: adapt to 429s and x-ratelimit-* headers."""
    tpm: int | None = None
    """Known tokens-per-minute limit; None: adapt."""
    burst_s: float = 1.0
    """How many seconds of a rate limit may go out at once; requests are paced evenly beyond
    that (providers enforce per-minute limits over windows of about a second)."""
    max_attempts: int = 6
    """Tries per call before the stage is `failed` (429 / 5xx / timeouts / connection errors)."""
    timeout_s: float = 180.0
    structured_output: bool = True
    """Ask for a JSON schema with an enum for the technique where the backend supports it."""
    balance: bool = False
    """Ask the technique stage for a ranked top three and take the highest-ranked technique still
    under its even share of the records, so one favourite cannot take over the dataset."""
    balance_target: str | None = None
    """`--balance` towards this spread instead of an even one: "Technique=share,…" (fractions of
    the records; the techniques not named share the rest evenly). Setting it turns balance on."""
    prompts_dir: Path | None = None
    """Another templates folder (a clinician's edited copy of `prompts/`)."""
    price_in: float | None = None
    """USD per million prompt tokens at live rates (from the plan); None: unknown."""
    price_out: float | None = None
    """USD per million completion tokens at live rates (from the plan); None: unknown."""
    batch_price: float = 0.5
    """The share of the live price that a batch request costs (Groq and OpenAI: half)."""

    def __post_init__(self) -> None:
        # A config file, a flag or a caller may give the names as text; the fields hold members.
        object.__setattr__(self, "backend", _member(BackendName, self.backend, "backend"))
        object.__setattr__(self, "mode", _member(SynthMode, self.mode, "mode"))
        if self.client_backend is not None:
            client = _member(BackendName, self.client_backend, "client backend")
            object.__setattr__(self, "client_backend", client)

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.backend, "")

    def api_key_text(self) -> str | None:
        """The key's text, only for handing to the provider's SDK (never to print or store)."""
        return self.api_key.get_secret_value() if self.api_key else None

    def cache_parameters(self) -> dict[str, Any]:
        """What, besides the prompt, decides an answer (part of the response-cache key)."""
        return {
            "backend": self.backend,
            "model": self.model_id,
            "base_url": self.base_url or "",
            "adapter": self.adapter or "",
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "reasoning_effort": self.reasoning_effort or "",
        }

    def client_settings(self) -> SynthSettings:
        """The settings of the client agent's calls (two-agent mode): these, with the client's
        backend and model where they are set."""
        if not self.client_backend and not self.client_model:
            return self
        backend = self.client_backend or self.backend
        if backend == self.backend:
            return replace(
                self,
                model=self.client_model or self.model,
                base_url=self.client_base_url or self.base_url,
                client_backend=None,
                client_model=None,
            )
        return replace(
            self,
            backend=backend,
            model=self.client_model or "",
            base_url=self.client_base_url,
            api_key=environment_api_key(backend),
            adapter=None,
            client_backend=None,
            client_model=None,
            client_base_url=None,
        )

    def judge(self, stage: Stage, text: str, finish_reason: str = "") -> Judgement:
        """The one stage rule (`studio.cbt.checks.judge_answer`) with this run's turn limits."""
        return judge_answer(
            stage,
            text,
            min_turns=self.min_turns,
            max_turns=self.max_turns,
            finish_reason=finish_reason,
        )

    def validate(self) -> SynthSettings:
        if not self.model_id:
            raise BadInputError(f"the {self.backend} backend needs --model (or synth.model)")
        if self.reasoning_effort not in (None, "low", "medium", "high"):
            raise BadInputError("reasoning_effort must be low, medium or high")
        for name in ("concurrency", "max_attempts", "min_turns", "max_turns", "agent_min_turns"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be at least 1")
        if self.burst_s <= 0:
            raise BadInputError("burst_s must be more than 0")
        if self.max_tokens < 1:
            raise BadInputError("max_tokens must be at least 1")
        if self.min_turns > self.max_turns:
            raise BadInputError("min_turns is larger than max_turns")
        from studio.synth.balance import target_shares

        target_shares(self.balance_target)  # a bad target is refused before any call
        if self.backend is BackendName.GROQ and not self.api_key:
            raise BadInputError(
                "no Groq API key: set GROQ_API_KEY (or use --backend openai with --base-url "
                "for a local OpenAI-compatible server)"
            )
        if self.mode is SynthMode.TWO_AGENT and self.client_settings() is not self:
            try:
                self.client_settings().validate()
            except BadInputError as exc:
                raise BadInputError(f"client agent: {exc}") from exc
        return self

    @classmethod
    def load(cls, config_path: str | Path | None = None, **overrides: Any) -> SynthSettings:
        """Defaults < config file < environment < `overrides` (None values are ignored)."""
        studio = load_studio_settings(config_path)
        where = str(_studio_config_path(config_path) or "config")
        values = dict(studio.synth)
        file_plan = values.pop("plan", None)
        _check_table(values, where)
        plan_name = overrides.pop("plan", None) or file_plan
        if plan_name:
            plans = BUILTIN_PLANS | studio.plans
            if plan_name not in plans:
                raise BadInputError(
                    f"unknown rate-limit plan {plan_name!r}; known: {', '.join(sorted(plans))}"
                )
            values |= plans[plan_name].model_dump(exclude_unset=True)
        backend = overrides.get("backend") or values.get("backend", cls.backend)
        if backend == BackendName.GROQ and studio.groq_base_url:
            values["base_url"] = studio.groq_base_url
        values |= {k: v for k, v in overrides.items() if v is not None}
        if values.get("balance_target"):
            values["balance"] = True
        if values.get("prompts_dir") is not None:
            values["prompts_dir"] = Path(values["prompts_dir"])
        return replace(cls(**values), api_key=studio.api_key(backend))


def _enum_of(hint: Any) -> type[StrEnum] | None:
    """The enum a field holds (`BackendName`, `BackendName | None`), or None."""
    for t in typing.get_args(hint) or (hint,):
        if isinstance(t, type) and issubclass(t, StrEnum):
            return t
    return None


def _table_model() -> type[BaseModel]:
    """The `[synth]` table's pydantic model, derived from `SynthSettings`' own fields (strict:
    `concurrency = "16"` is an error, not a guess; TOML's ints pass for floats, strings for
    paths). The API key is no table key: it comes from the environment only."""
    hints = typing.get_type_hints(SynthSettings)
    table: dict[str, Any] = {}
    for f in fields(SynthSettings):
        if f.name == "api_key":
            continue
        hint = hints[f.name]
        if Path in typing.get_args(hint) or _enum_of(hint):
            # TOML gives text: a path, or a name that pydantic checks against the enum's values.
            hint = typing.Annotated[hint, Field(strict=False)]
        table[f.name] = (hint, None)
    return create_model("SynthTable", __config__=ConfigDict(extra="forbid", strict=True), **table)


_SynthTable = _table_model()


def _check_table(values: dict[str, Any], where: str) -> None:
    """A `[synth]` value of the wrong type or an unknown key is bad input, said in one line."""
    try:
        _SynthTable.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise BadInputError(f"{where}: unknown setting synth.{key}") from None
        hint = typing.get_type_hints(SynthSettings)[key]
        choices = _enum_of(hint)
        allowed = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
        names = (
            f"one of {', '.join(choices)}"
            if choices
            else " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
        )
        raise BadInputError(
            f"{where}: synth.{key} must be {names}, not {error.get('input')!r}"
        ) from None


_E = TypeVar("_E", bound=StrEnum)


def _member(enum: type[_E], value: str, what: str) -> _E:
    """`value` as a member of `enum`; an unknown name is bad input that lists the known ones."""
    try:
        return enum(value)
    except ValueError:
        raise BadInputError(
            f"unknown {what} {value!r}; expected one of {', '.join(enum)}"
        ) from None
