"""The review guidelines: which file is in force, and its version.

The version is the first 12 hex digits of the SHA-256 of the file's bytes, so two reviewers with
the same file record the same version whatever its path, and any change to the text, however
small, is a new version. Every decision records the version it was made under.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import BadInputError
from studio.resources import default_guidelines_path

if TYPE_CHECKING:
    from studio.settings import StudioSettings

#: Hex digits of the SHA-256 kept as the version: short enough to show, long enough never to clash.
VERSION_LENGTH = 12


class GuidelinesMissing(BadInputError):
    """The guidelines file in the settings cannot be read (exit 2: configuration)."""


@dataclass(frozen=True, slots=True)
class Guidelines:
    """The guidelines as read once: the text shown and the version recorded come from the same
    bytes, so an edit to the file mid-session cannot make them disagree."""

    path: Path
    text: str
    version: str


def guidelines_path(settings: StudioSettings | None = None) -> Path:
    """`[review] guidelines` from the settings, else the shipped default."""
    configured = settings.review.guidelines if settings is not None else None
    return configured if configured is not None else default_guidelines_path()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GuidelinesMissing(
            f"{path}: review guidelines not found; fix [review] guidelines in studio.toml"
        ) from None
    except OSError as exc:
        raise GuidelinesMissing(
            f"{path}: cannot read the review guidelines ({exc.strerror or exc})"
        ) from None


def version_of(data: bytes) -> str:
    """The version of guidelines whose file holds `data`."""
    return hashlib.sha256(data).hexdigest()[:VERSION_LENGTH]


def guideline_version(path: Path) -> str:
    """The version of the guidelines file at `path` (`GuidelinesMissing` if it cannot be read)."""
    return version_of(_read(path))


def load_guidelines(path: Path) -> Guidelines:
    """Read the guidelines at `path` once: text and version (`GuidelinesMissing` if unreadable,
    or not UTF-8 text)."""
    data = _read(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GuidelinesMissing(f"{path}: the review guidelines are not UTF-8 text") from None
    return Guidelines(path=path, text=text, version=version_of(data))
