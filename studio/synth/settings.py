"""Synthesis settings: defaults < config file < environment < command-line flags.

The config file is TOML (`--config PATH`, else `$STUDIO_CONFIG`, else `studio.toml` in the current
folder, else `config.toml` in the user config folder). API keys come from the environment only
(`GROQ_API_KEY`, `OPENAI_API_KEY`), never from a file, and are never stored, logged or exported.

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

import os
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from studio.errors import BadInputError

BACKENDS = ("groq", "openai", "local")
MODES = ("script", "two-agent")
DEFAULT_MODELS = {"groq": "openai/gpt-oss-120b"}
#: Known provider limits (requests and tokens per minute). Groq's free tier for gpt-oss-120b.
BUILTIN_PLANS: dict[str, dict[str, int]] = {"groq-free": {"rpm": 30, "tpm": 8000}}
#: What a plan may set: its limits and its prices (`price_in` / `price_out`: USD per million
#: tokens at live rates; `batch_price`: the share of that a batch request costs).
PLAN_KEYS = ("rpm", "tpm", "price_in", "price_out", "batch_price")


@dataclass(frozen=True)
class SynthSettings:
    backend: str = "groq"
    """Where prompts go: `groq` (groq SDK), `openai` (any OpenAI-compatible server), `local`."""
    model: str = ""
    """Model id; for `local`, a transformers model folder or hub id. Empty: the backend default."""
    base_url: str | None = None
    """Groq: the host (the SDK adds /openai/v1); openai: the server's …/v1 URL."""
    api_key: str | None = field(default=None, repr=False)
    """From the environment only; never written anywhere."""
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
    mode: str = "script"
    """`script`: one call writes the whole dialogue; `two-agent`: counselor and client take turns."""
    min_turns: int = 10
    """A dialogue with fewer turns is `invalid`."""
    max_turns: int = 30
    """Script mode asks for at most this many turns; two-agent mode stops here."""
    agent_min_turns: int = 20
    """Two-agent mode: the client agent may end the session (`[/END]`) only after this many
    turns (capped by `max_turns`), as the CACTUS client prompt asks."""
    client_backend: str | None = None
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

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.backend, "")

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
        key_var = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}.get(backend)
        return replace(
            self,
            backend=backend,
            model=self.client_model or "",
            base_url=self.client_base_url,
            api_key=os.environ.get(key_var) if key_var else None,
            adapter=None,
            client_backend=None,
            client_model=None,
            client_base_url=None,
        )

    def validate(self) -> SynthSettings:
        if self.backend not in BACKENDS:
            raise BadInputError(
                f"unknown backend {self.backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        if self.mode not in MODES:
            raise BadInputError(f"unknown mode {self.mode!r}; expected script or two-agent")
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
        if self.backend == "groq" and not self.api_key:
            raise BadInputError(
                "no Groq API key: set GROQ_API_KEY (or use --backend openai with --base-url "
                "for a local OpenAI-compatible server)"
            )
        if self.client_backend is not None and self.client_backend not in BACKENDS:
            raise BadInputError(
                f"unknown client backend {self.client_backend!r}; expected one of"
                f" {', '.join(BACKENDS)}"
            )
        if self.mode == "two-agent" and self.client_settings() is not self:
            try:
                self.client_settings().validate()
            except BadInputError as exc:
                raise BadInputError(f"client agent: {exc}") from exc
        return self

    @classmethod
    def load(cls, config_path: str | Path | None = None, **overrides: Any) -> SynthSettings:
        """Defaults < config file < environment < `overrides` (None values are ignored)."""
        values: dict[str, Any] = {}
        config = _read_config(config_path)
        synth = config.get("synth", {})
        known = {f.name for f in fields(cls)} - {"api_key"}
        for key, value in synth.items():
            if key == "plan":
                continue
            if key not in known:
                raise BadInputError(f"config: unknown setting synth.{key}")
            values[key] = value
        plan_name = overrides.pop("plan", None) or synth.get("plan")
        if plan_name:
            plans = BUILTIN_PLANS | config.get("plans", {})
            if plan_name not in plans:
                raise BadInputError(
                    f"unknown rate-limit plan {plan_name!r}; known: {', '.join(sorted(plans))}"
                )
            values |= {k: v for k, v in plans[plan_name].items() if k in PLAN_KEYS}
        backend = overrides.get("backend") or values.get("backend", cls.backend)
        env_url = os.environ.get("GROQ_BASE_URL") if backend == "groq" else None
        if env_url:
            values["base_url"] = env_url
        values |= {k: v for k, v in overrides.items() if v is not None}
        if values.get("balance_target"):
            values["balance"] = True
        if values.get("prompts_dir") is not None:
            values["prompts_dir"] = Path(values["prompts_dir"])
        key_var = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}.get(backend)
        api_key = os.environ.get(key_var) if key_var else None
        _check_types(values)
        return replace(cls(**values), api_key=api_key or None)


def _check_types(values: dict[str, Any]) -> None:
    """A config value of the wrong type is bad input (e.g. `concurrency = "16"`), said plainly.

    The allowed types come from `SynthSettings`' own annotations (TOML gives ints for floats and
    strings for paths, so those are accepted too).
    """
    hints = typing.get_type_hints(SynthSettings)
    for key, value in values.items():
        if value is None or key not in hints:
            continue
        allowed = tuple(
            t for t in (typing.get_args(hints[key]) or (hints[key],)) if t is not type(None)
        )
        accepted = (
            allowed + ((int,) if float in allowed else ()) + ((str,) if Path in allowed else ())
        )
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, accepted):
            names = " or ".join(t.__name__ for t in allowed)
            raise BadInputError(f"config: synth.{key} must be {names}, not {value!r}")


def _read_config(config_path: str | Path | None) -> dict[str, Any]:
    path = _config_path(config_path)
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path}: {exc}") from exc


def _config_path(config_path: str | Path | None) -> Path | None:
    if config_path:
        return Path(config_path)
    if os.environ.get("STUDIO_CONFIG"):
        return Path(os.environ["STUDIO_CONFIG"])
    local = Path("studio.toml")
    if local.is_file():
        return local
    from platformdirs import user_config_dir

    user = Path(user_config_dir("cbt-studio")) / "config.toml"
    return user if user.is_file() else None
