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
from studio.ingest.load import add_rows
from studio.model import RecordStatus, Seed, Stage
from studio.store import Store

SUBCOMMANDS = ["import", "export", "stats", "demo"]


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in SUBCOMMANDS)])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_stats_json_shape(run, db_path: Path) -> None:
    Store(db_path).close()
    result = run("stats", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"seeds", "records", "stages", "runs", "judged"}
    assert data["judged"] == {"records": 0, "flagged": 0, "rated_by_clinicians": 0}
    assert data["seeds"] == 0
    assert set(data["records"]) == {"pending", "in_review", "accepted", "rejected", "disputed"}
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
    for name, count in (("from_env.db", 1), ("flag.db", 2), ("studio.db", 3)):
        with Store(tmp_path / name) as store:
            add_rows(store, [Seed("p", f"t{n}") for n in range(count)])

    def seeds(*args: str) -> int:
        result = CliRunner().invoke(cli, ["stats", "--json", *args])
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["seeds"])

    monkeypatch.setenv("STUDIO_DB", str(tmp_path / "from_env.db"))
    assert seeds() == 1
    assert seeds("--db", str(tmp_path / "flag.db")) == 2
    monkeypatch.delenv("STUDIO_DB")
    assert seeds() == 3


def test_reading_commands_refuse_a_missing_or_broken_database(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "studio.db"
    result = CliRunner().invoke(cli, ["stats", "--db", str(typo)])
    assert result.exit_code == 2 and "no such database" in result.stderr
    assert not typo.parent.exists()  # nothing created by a mistyped path
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "out.jsonl"), "--db", str(typo)])
    assert result.exit_code == 2
    text = tmp_path / "notes.db"
    text.write_text("not a database at all", encoding="utf-8")
    result = CliRunner().invoke(cli, ["stats", "--db", str(text)])
    assert result.exit_code == 1
    assert "not a usable CBT Studio database" in result.stderr and "Traceback" not in result.output


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
    Store(tmp_path / "s.db").close()
    out = subprocess.run(
        [sys.executable, "-m", "studio", "stats", "--json"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and json.loads(out.stdout)["seeds"] == 0
