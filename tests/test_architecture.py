"""Checked rules about the code's shape (the import-linter contracts check the same in CI)."""

from __future__ import annotations

import ast
from pathlib import Path

import studio

PACKAGE = Path(studio.__file__).parent
UI_PACKAGES = {"tui"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_textual() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in UI_PACKAGES and "textual" in _imports(path)
    ]
    assert offenders == []


def test_shipped_resources_are_found() -> None:
    from studio.resources import migrations_dir, prompts_dir

    assert (migrations_dir() / "0001_initial.sql").is_file()
    assert prompts_dir().is_dir()
