"""The review guidelines file: where it comes from (studio.toml or the shipped default) and its
version."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from studio.errors import BadInputError, StudioError
from studio.resources import default_guidelines_path
from studio.settings import load_studio_settings
from studio.team.guidelines import (
    GuidelinesMissing,
    guideline_version,
    guidelines_path,
    load_guidelines,
)


def test_the_shipped_guidelines_cover_every_stage_and_safety() -> None:
    text = default_guidelines_path().read_text()
    for heading in ("## Intake form", "## CBT technique", "## Counseling plan", "## Dialogue"):
        assert heading in text
    assert "## Safety" in text and "self-harm" in text and "CTRS" in text
    assert 80 <= len(text.splitlines()) <= 150


def test_the_version_is_the_first_12_hex_of_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "g.md"
    path.write_bytes(b"# Rules\n")
    assert guideline_version(path) == hashlib.sha256(b"# Rules\n").hexdigest()[:12]
    loaded = load_guidelines(path)
    assert (loaded.text, loaded.version) == ("# Rules\n", guideline_version(path))
    path.write_bytes(b"# Rules \n")  # any change is a new version
    assert guideline_version(path) != loaded.version


def test_without_a_setting_the_shipped_guidelines_are_in_force(tmp_path: Path) -> None:
    config = tmp_path / "studio.toml"
    config.write_text("[keymap]\n")
    assert guidelines_path(load_studio_settings(config)) == default_guidelines_path()
    assert guidelines_path() == default_guidelines_path()


def test_a_relative_path_in_studio_toml_is_taken_from_the_file_s_folder(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    config = tmp_path / "team" / "studio.toml"
    config.write_text('[review]\nguidelines = "docs/rules.md"\n')
    assert guidelines_path(load_studio_settings(config)) == tmp_path / "team" / "docs" / "rules.md"
    absolute = tmp_path / "abs.md"
    config.write_text(f'[review]\nguidelines = "{absolute}"\n')
    assert guidelines_path(load_studio_settings(config)) == absolute


def test_a_missing_or_unreadable_file_is_one_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.md"
    with pytest.raises(GuidelinesMissing, match=r"nowhere\.md") as caught:
        guideline_version(missing)
    assert isinstance(caught.value, StudioError) and caught.value.exit_code == 2
    with pytest.raises(GuidelinesMissing, match=re.escape(str(tmp_path))):
        guideline_version(tmp_path)  # a folder: unreadable as a file
    binary = tmp_path / "rules.md"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GuidelinesMissing, match="not UTF-8"):
        load_guidelines(binary)


def test_an_unknown_key_in_review_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "studio.toml"
    config.write_text('[review]\nguideline = "x.md"\n')
    with pytest.raises(BadInputError, match=r"review\.guideline"):
        load_studio_settings(config)
