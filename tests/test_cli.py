from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from studio.cbt.dialogue import check_dialogue, parse_dialogue
from studio.cbt.techniques import TECHNIQUES
from studio.cli import cli
from studio.model import RecordStatus, Stage
from studio.store import Store

SUBCOMMANDS = ["import", "export", "stats", "demo"]


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in SUBCOMMANDS)])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_stats_json_shape(run, db_path: Path) -> None:
    result = run("stats", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"seeds", "records", "stages", "runs"}
    assert data["seeds"] == 0
    assert set(data["records"]) == {"pending", "in_review", "accepted", "rejected"}
    assert set(data["stages"]) == {
        "pending",
        "generated",
        "accepted",
        "edited",
        "rejected",
        "stale",
        "failed",
        "invalid",
    }
    assert set(data["runs"]) == {"running", "completed", "stopped", "failed"}
    assert all(
        isinstance(v, int) for group in ("records", "stages", "runs") for v in data[group].values()
    )


def test_db_location_flag_env_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDIO_DB", str(tmp_path / "from_env.db"))
    assert CliRunner().invoke(cli, ["stats", "--json"]).exit_code == 0
    assert (tmp_path / "from_env.db").exists()
    assert (
        CliRunner().invoke(cli, ["stats", "--json", "--db", str(tmp_path / "flag.db")]).exit_code
        == 0
    )
    assert (tmp_path / "flag.db").exists()
    monkeypatch.delenv("STUDIO_DB")
    assert CliRunner().invoke(cli, ["stats", "--json"]).exit_code == 0
    assert (tmp_path / "studio.db").exists()


def test_usage_errors_exit_2(run) -> None:
    assert run("import", db=False).exit_code == 2  # no paths
    assert run("export", "x.jsonl", "--format", "xml").exit_code == 2
    assert run("no-such-command", db=False).exit_code == 2


def test_demo_database_is_rich_and_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_DB", str(tmp_path / "real.db"))  # must not be touched by the demo
    db = tmp_path / "demo.db"
    first = CliRunner().invoke(cli, ["demo", "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "created demo database" in first.stdout
    second = CliRunner().invoke(cli, ["demo", "--db", str(db)])
    assert "using demo database" in second.stdout
    assert not (tmp_path / "real.db").exists()
    with Store(db) as store:
        stats = store.stats()
        records = list(store.records())
    assert stats["seeds"] >= 12
    complete = [r for r in records if all(r.text(stage) for stage in Stage)]
    assert len(complete) >= 6
    assert len({r.technique for r in complete}) >= 6
    assert {r.technique for r in complete} <= set(TECHNIQUES)
    for record in complete:
        dialogue = parse_dialogue(record.text(Stage.DIALOGUE))
        check_dialogue(dialogue, min_turns=16)
        assert record.attitude in {"positive", "neutral", "negative"}
    assert stats["records"]["accepted"] == 2
    assert any(r.status is RecordStatus.IN_REVIEW for r in records)


def test_cli_start_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, studio.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'textual', 'groq', 'openai') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_runs(tmp_path: Path) -> None:
    env = os.environ | {"STUDIO_DB": str(tmp_path / "s.db")}
    out = subprocess.run(
        [sys.executable, "-m", "studio", "stats", "--json"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and json.loads(out.stdout)["seeds"] == 0
