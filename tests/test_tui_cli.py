"""`studio review`, the bare `studio` and `studio demo` around the review app (no terminal here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from studio.cli import cli
from studio.commands.review import resolve_reviewer
from studio.store import Store
from studio.tui.settings import parse_keymap


def test_review_help() -> None:
    result = CliRunner().invoke(cli, ["review", "--help"])
    assert result.exit_code == 0
    assert "--reviewer" in result.output and "--db" in result.output


def test_bare_studio_without_a_terminal_prints_the_counts(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").close()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "s.db")])
    assert result.exit_code == 0
    assert "Records" in result.output


def test_demo_no_open_builds_and_prints(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--no-open", "--db", str(tmp_path / "d.db")])
    assert result.exit_code == 0
    assert "created demo database" in result.output


def test_reviewer_flag_then_env_then_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.setenv("STUDIO_REVIEWER", "from_env")
    assert resolve_reviewer("from_flag") == "from_flag"
    assert resolve_reviewer(None) == "from_env"
    monkeypatch.delenv("STUDIO_REVIEWER")
    assert resolve_reviewer(None) == getpass.getuser()


def test_keymap_spec() -> None:
    assert parse_keymap("review.accept=y; review.reject=n,shift+x;") == {
        "review.accept": "y",
        "review.reject": "n,shift+x",
    }
    assert parse_keymap("") == {}
    with pytest.raises(ValueError, match="not id=key"):
        parse_keymap("review.accept")


def test_review_side_of_the_core_never_loads_textual() -> None:
    code = (
        "import sys, studio.store.queue, studio.store.review, studio.store.undo,"
        " studio.store.drafts, studio.commands.review; print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
