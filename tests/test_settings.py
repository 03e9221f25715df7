"""One typed settings object (`studio.settings`): the config file, then the environment, then
flags; bad values are one line naming the setting and the file; API keys never show."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from studio.errors import BadInputError
from studio.model import BackendName, SynthMode
from studio.settings import load_studio_settings
from studio.synth.settings import SynthSettings

SECRET = "gsk-very-secret-0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "GROQ_API_KEY",
        "OPENAI_API_KEY",
        "GROQ_BASE_URL",
        "STUDIO_CONFIG",
        "STUDIO_KEYMAP",
        "STUDIO_SYNTH",
        "STUDIO_PLANS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./studio.toml


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "team.toml",
        '[synth]\nbackend = "groq"\nbase_url = "http://from-file"\nconcurrency = 4\n'
        'temperature = 1\nplan = "team"\n\n[plans.team]\nrpm = 100\nprice_in = 0.15\n\n'
        '[keymap]\n"review.accept" = "y"\n"review.reject" = "n"\n',
    )
    monkeypatch.setenv("STUDIO_CONFIG", str(config))  # found through the environment
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_BASE_URL", "http://from-env")
    monkeypatch.setenv("STUDIO_KEYMAP", "review.reject=x; review.undo=u")

    settings = SynthSettings.load(None, concurrency=9, temperature=None)
    # The file's values, the plan's over them, the environment's URL, the flags over all.
    assert settings.temperature == 1.0 and settings.rpm == 100 and settings.price_in == 0.15
    assert settings.base_url == "http://from-env"
    assert settings.concurrency == 9
    assert settings.api_key_text() == SECRET
    # STUDIO_KEYMAP's entries go over the file's table, entry by entry.
    assert load_studio_settings().keymap == {
        "review.accept": "y",
        "review.reject": "x",
        "review.undo": "u",
    }
    # A built-in plan named by a flag replaces the file's plan.
    assert SynthSettings.load(None, plan="groq-free").rpm == 30


def test_the_api_key_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    studio = load_studio_settings()
    synth = SynthSettings.load(None, model="m")
    client = SynthSettings.load(
        None, mode="two-agent", client_backend="openai", client_model="c"
    ).client_settings()
    shown = [
        repr(studio),
        str(studio),
        studio.model_dump_json(),
        str(studio.model_dump()),
        repr(synth),
        str(synth),
        str(synth.api_key),
        repr(synth.api_key),
        str(dataclasses.asdict(synth)),
        json.dumps(synth.cache_parameters()),
        repr(client),
    ]
    assert not [text for text in shown if SECRET in text]
    assert client.api_key_text() == SECRET  # the client agent's backend gets its own key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[synth]\nconcurrency = "16"\n', "{path}: synth.concurrency must be int, not '16'"),
        ("[synth]\nstructured_output = 1\n", "{path}: synth.structured_output must be bool, not 1"),
        ("[synth]\nconcurency = 16\n", "{path}: unknown setting synth.concurency"),
        ('[synth]\napi_key = "leak"\n', "{path}: unknown setting synth.api_key"),
        ('GROQ_API_KEY = "leak"\n', "{path}: GROQ_API_KEY may not be in a config file"),
        ('[plans.team]\nrpm = "100"\n', "{path}: plans.team.rpm: Input should be a valid integer"),
        ('[keymap]\n"review.accept" = 1\n', "{path}: keymap.review.accept: Input should be"),
        ("[synth\n", "{path}: Expected ']'"),
        (
            '[synth]\nbackend = "grok"\n',
            "{path}: synth.backend must be one of groq, openai, local, not 'grok'",
        ),
        (
            '[synth]\nmode = "duet"\n',
            "{path}: synth.mode must be one of script, two-agent, not 'duet'",
        ),
        (
            "[synth]\nclient_backend = 3\n",
            "{path}: synth.client_backend must be one of groq, openai, local, not 3",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path / "studio.toml", text)
    with pytest.raises(BadInputError) as caught:
        SynthSettings.load(config, backend="openai", model="m")
    assert str(caught.value).startswith(message.format(path=config))
    assert "\n" not in str(caught.value)


def test_a_bad_keymap_in_the_environment_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_KEYMAP", "review.accept")
    with pytest.raises(BadInputError, match=r"^STUDIO_KEYMAP: keymap entry 'review.accept' is not"):
        load_studio_settings()


def test_a_missing_config_file_is_named() -> None:
    with pytest.raises(BadInputError, match=r"nope\.toml: config file not found"):
        load_studio_settings("nope.toml")


def test_the_cli_says_a_bad_config_value_in_one_line(tmp_path: Path) -> None:
    from studio.cli import cli
    from studio.store import Store

    with Store(tmp_path / "s.db"):
        pass
    config = write(tmp_path / "studio.toml", '[synth]\nconcurrency = "16"\n')
    result = CliRunner().invoke(
        cli,
        ["synth", "--db", str(tmp_path / "s.db"), "--config", str(config), "--backend", "openai"],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {config}: synth.concurrency must be int, not '16'\n"


def test_backend_and_mode_are_enum_members_stored_as_the_same_words(tmp_path: Path) -> None:
    config = write(
        tmp_path / "studio.toml",
        '[synth]\nbackend = "openai"\nmode = "two-agent"\nclient_backend = "local"\n',
    )
    settings = SynthSettings.load(config, model="m")
    assert settings.backend is BackendName.OPENAI
    assert settings.mode is SynthMode.TWO_AGENT
    assert settings.client_backend is BackendName.LOCAL
    assert settings.client_settings().backend is BackendName.LOCAL
    assert json.dumps(settings.cache_parameters()["backend"]) == '"openai"'


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "grok", "unknown backend 'grok'; expected one of groq, openai, local"),
        ("mode", "duet", "unknown mode 'duet'; expected one of script, two-agent"),
        ("client_backend", "x", "unknown client backend 'x'; expected one of groq, openai, local"),
    ],
)
def test_an_unknown_name_in_code_is_bad_input_listing_the_known_ones(
    field: str, value: str, message: str
) -> None:
    changes: dict[str, Any] = {field: value}  # text where the field holds an enum member
    with pytest.raises(BadInputError) as caught:
        dataclasses.replace(SynthSettings(), **changes)
    assert str(caught.value) == message


def test_the_cli_offers_the_enum_values(tmp_path: Path) -> None:
    from studio.cli import cli
    from studio.store import Store

    with Store(tmp_path / "s.db"):
        pass

    result = CliRunner().invoke(cli, ["synth", "--db", str(tmp_path / "s.db"), "--mode", "duet"])
    assert result.exit_code == 2
    assert "'script', 'two-agent'" in result.stderr
    result = CliRunner().invoke(cli, ["judge", "--db", str(tmp_path / "s.db"), "--backend", "x"])
    assert "'groq', 'openai', 'local'" in result.stderr
