"""Where the shipped, non-Python files live: `prompts/`, `db/` and the review guidelines.

In a checkout (and an editable install) they sit at the top of the repository, where clinicians
edit templates; in a wheel they are copied to `studio/_resources/`. One lookup serves both.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the folder `name` ("prompts" or "db"), preferring the installed copy."""
    for candidate in (_PACKAGE_DIR / "_resources" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"CBT Studio resource folder {name!r} is missing from the install")


def migrations_dir() -> Path:
    return resource_dir("db") / "migrations"


def prompts_dir() -> Path:
    return resource_dir("prompts")


def default_guidelines_path() -> Path:
    """The review guidelines we ship (`studio/resources/guidelines.md`, inside the package in a
    checkout and in a wheel alike); `[review] guidelines` in studio.toml replaces them."""
    return _PACKAGE_DIR / "resources" / "guidelines.md"
