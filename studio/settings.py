"""Studio's settings as one typed object: the config file (TOML) and the environment.

Precedence: defaults < config file < environment (< command-line flags, applied by the caller).
The config file is `--config PATH`, else `$STUDIO_CONFIG`, else `studio.toml` in the current
folder, else `config.toml` in the user config folder. Its tables:

    [synth]              # see `studio.synth.settings.SynthSettings` for every key
    [plans.NAME]         # rpm, tpm, price_in, price_out, batch_price
    [keymap]             # binding id = keys, e.g. "review.accept" = "y"
    [review]             # guidelines = "path/to/guidelines.md" (relative: to the file's folder)

The environment: `STUDIO_KEYMAP='id=keys;id=keys'` (entries over the file's `[keymap]`),
`GROQ_BASE_URL`, and the API keys `GROQ_API_KEY` / `OPENAI_API_KEY`. API keys come from the
environment only, never from a file; they are `SecretStr`, so no repr, str or dump shows them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from studio.errors import BadInputError
from studio.model import BackendName

#: Settings that only the environment may give (a key in a file would end up in backups and
#: version control).
ENV_ONLY = ("GROQ_API_KEY", "OPENAI_API_KEY")


def parse_keymap(spec: str) -> dict[str, str]:
    """Parse `id=keys;id=keys` (keys comma-separated), as given in `STUDIO_KEYMAP`."""
    keymap: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        binding_id, sep, keys = part.partition("=")
        if not sep or not binding_id.strip() or not keys.strip():
            raise ValueError(f"keymap entry {part.strip()!r} is not id=key")
        keymap[binding_id.strip()] = keys.strip()
    return keymap


class Plan(BaseModel):
    """A named rate-limit plan (`[plans.NAME]`); other keys are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Tokens per minute."""
    price_in: float | None = None
    """USD per million prompt tokens at live rates."""
    price_out: float | None = None
    """USD per million completion tokens at live rates."""
    batch_price: float | None = None
    """The share of the live price that a batch request costs."""


class ReviewConfig(BaseModel):
    """The `[review]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    guidelines: Path | None = None
    """The review guidelines (Markdown) reviewers decide under; None: the shipped default. A
    relative path is taken from the config file's folder (the file travels with its team)."""


class StudioSettings(BaseSettings):
    """The config file and the environment, typed. Build it with `load_studio_settings`."""

    # Tables other than these are ignored (other tools may share the file); keys in [synth]
    # are checked against `SynthSettings`.
    model_config = SettingsConfigDict(
        env_prefix="STUDIO_", extra="ignore", frozen=True, populate_by_name=False
    )

    synth: dict[str, Any] = Field(default_factory=dict)
    """The `[synth]` table as written (typed against `SynthSettings` when it is applied, so one
    class owns the synthesis fields)."""
    plans: dict[str, Plan] = Field(default_factory=dict)
    """Named rate-limit plans (besides the built-in ones)."""
    keymap: dict[str, str] = Field(default_factory=dict)
    """Binding id -> keys for the review app; see its help screen for the ids. `STUDIO_KEYMAP`'s
    entries go over the file's."""
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    """The `[review]` table: the review guidelines."""
    groq_api_key: SecretStr | None = Field(default=None, validation_alias="GROQ_API_KEY")
    """From the environment only; never written anywhere."""
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    """From the environment only; never written anywhere."""
    groq_base_url: str | None = Field(default=None, validation_alias="GROQ_BASE_URL")
    """The Groq host (the SDK adds /openai/v1)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: the environment over the file. No .env or secrets folder.
        return init_settings, _EnvSource(settings_cls), _FileSource(settings_cls)

    def api_key(self, backend: BackendName) -> SecretStr | None:
        """The API key for `backend` (None for backends that need none)."""
        keys = {BackendName.GROQ: self.groq_api_key, BackendName.OPENAI: self.openai_api_key}
        return keys.get(backend)


class _EnvSource(EnvSettingsSource):
    """The environment, with `STUDIO_KEYMAP` read as `id=keys;id=keys` (a table, so its entries
    merge into the file's `[keymap]` rather than replace it)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if field_name == "keymap" and isinstance(value, str):
            try:
                return parse_keymap(value)
            except ValueError as exc:
                raise BadInputError(f"STUDIO_KEYMAP: {exc}") from None
        return super().prepare_field_value(field_name, field, value, value_is_complex)


class _FileSource(TomlConfigSettingsSource):
    """The TOML file, refusing the settings only the environment may give."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name in (*ENV_ONLY, "groq_api_key", "openai_api_key", "api_key"):
            if name in data:
                raise BadInputError(
                    f"{self.toml_file_path}: {name} may not be in a config file; set"
                    " GROQ_API_KEY or OPENAI_API_KEY in the environment"
                )
        return data


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file in use (see the module's docstring), or None."""
    if explicit:
        return Path(explicit)
    if os.environ.get("STUDIO_CONFIG"):
        return Path(os.environ["STUDIO_CONFIG"])
    local = Path("studio.toml")
    if local.is_file():
        return local
    from platformdirs import user_config_dir

    user = Path(user_config_dir("cbt-studio")) / "config.toml"
    return user if user.is_file() else None


def load_studio_settings(explicit: str | Path | None = None) -> StudioSettings:
    """Read the config file and the environment; a bad value is one line naming the setting
    and where it came from."""
    path = config_path(explicit)
    if path is not None and not path.is_file():
        raise BadInputError(f"{path}: config file not found")
    # The file is a per-call choice, so the class that reads it is made per call.
    cls = type(
        "StudioSettings",
        (StudioSettings,),
        {"model_config": {**StudioSettings.model_config, "toml_file": path}},
    )
    where = str(path) if path else "config"
    try:
        settings: StudioSettings = cls()
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{where}: {exc}") from exc
    except ValidationError as exc:
        raise BadInputError(describe_error(exc, where)) from None
    guidelines = settings.review.guidelines
    if path is not None and guidelines is not None and not guidelines.is_absolute():
        review = settings.review.model_copy(update={"guidelines": path.parent / guidelines})
        settings = settings.model_copy(update={"review": review})
    return settings


def environment_api_key(backend: BackendName) -> SecretStr | None:
    """The API key for `backend` from the environment alone (no config file is read)."""
    try:
        return StudioSettings().api_key(backend)
    except ValidationError as exc:
        raise BadInputError(describe_error(exc, "environment")) from None


def describe_error(exc: ValidationError, where: str) -> str:
    """The first problem of a `ValidationError` as one line: where, which setting, what is wrong."""
    error = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown setting {loc}"
    return f"{where}: {loc}: {error['msg']}, not {error.get('input')!r}"
