from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from studio.cli import cli
from studio.store import Store

DIALOGUE = "\n".join(
    [
        "Counselor: Hi Sam, what brings you in today?",
        "Client (sighs): I keep thinking I'll fail my exam.",
        "Counselor:What makes that feel so certain?",
        "Client: I failed a quiz last week.",
        "Counselor: What happened on the quizzes before that one?",
        "Client: I passed them, mostly with good marks.",
        "Counselor: Let's write that down as evidence. Shall we meet next week?",
    ]
)


#: Sections 2-6 of an intake form (the stage rule asks for all six).
INTAKE_REST = (
    "2. Presenting Problem\nI have feared failing my exams since the first term.\n"
    "3. Reason for Seeking Counseling\nThe worry keeps me up at night.\n"
    "4. Past History (including medical history)\nNone.\n"
    "5. Academic/Occupational Functioning Level\nA second-year student.\n"
    "6. Social Support System\nTwo close friends."
)


#: A whole intake form and plan, as the stage rule asks for them (tests that need valid stages).
INTAKE_FORM = "1. Basic Information\nName: Sam\nAge: 20\n" + INTAKE_REST
PLAN = "1. Explore the fear.\n2. Weigh the evidence.\n3. Agree a small experiment."


def cactus_row(n: int = 0, **overrides: Any) -> dict[str, Any]:
    row = {
        "thought": f"I will fail my exam no matter what I do ({n}).",
        "patterns": "fortune telling, catastrophizing",
        "intake_form": f"1. Basic Information\nName: Sam {n}\nAge: 20\n{INTAKE_REST}",
        "cbt_technique": "Decatastrophizing",
        "cbt_plan": "1. Identify the fear.\n2. Estimate likelihoods.\n3. Plan coping steps.",
        "attitude": "neutral",
        "dialogue": DIALOGUE,
    }
    row.update(overrides)
    return row


def seed_row(n: int = 0, **overrides: Any) -> dict[str, Any]:
    row = {
        "persona": f"I am a student, number {n}.",
        "thought": f"Everyone in class thinks I'm stupid ({n}).",
        "patterns": ["Mind reading", "Labeling"],
        "reframes": ["I can't know what they think.", "Asking questions is how people learn."],
    }
    row.update(overrides)
    return row


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class FixedClock:
    """A clock that ticks one second per reading, for deterministic timestamps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studio.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path, clock=FixedClock()) as s:
        yield s


@pytest.fixture
def run(db_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the real CLI in-process against the test database; returns click's Result."""
    monkeypatch.delenv("STUDIO_DB", raising=False)

    def invoke(*args: str, db: bool = True) -> Result:
        argv = [*args, "--db", str(db_path)] if db else list(args)
        return CliRunner().invoke(cli, argv, catch_exceptions=False)

    return invoke


@pytest.fixture
def protect() -> Iterator[Callable[[Path], None]]:
    """Make a file or folder unwritable: chmod for a normal user; for root (who ignores
    permissions) the immutable attribute, which even root cannot write through."""
    protected: list[Path] = []

    def apply(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o500 if path.is_dir() else 0o400)
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root where chattr +i is not available")
        protected.append(path)

    yield apply
    for path in reversed(protected):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        else:
            path.chmod(0o700 if path.is_dir() else 0o600)


# -- tests that need the `train` extra ------------------------------------------------------------

#: What the `train` extra brings; a reviewer's install has none of it.
TRAIN_EXTRA = ("torch", "transformers", "peft", "trl", "datasets")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "train_extra: needs the train extra (torch, transformers, peft, trl, datasets)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a review-only install, tests marked `train_extra` skip, saying what is missing."""
    import importlib.util

    missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(
        reason=f"needs the train extra ({', '.join(missing)} missing): pip install -e '.[train]'"
    )
    for item in items:
        if item.get_closest_marker("train_extra") is not None:
            item.add_marker(skip)


@contextlib.contextmanager
def older_schema(tmp_path: Path, version: int) -> Iterator[None]:
    """Inside, a Store migrates only up to `version`: a database as an older CBT Studio wrote
    it. Opened again after the block, it is migrated the rest of the way."""
    from studio.store import migrations

    folder = tmp_path / f"migrations-{version:04d}"
    folder.mkdir()
    for migration in migrations.available_migrations()[:version]:
        shutil.copy(migration.path, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migrations, "migrations_dir", lambda: folder)
        yield
