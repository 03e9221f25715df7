"""An export never destroys anything (issue 8, item 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from studio.cli import cli
from studio.store import Store
from tests.conftest import cactus_row, write_jsonl

FORMATS = ["cactus-jsonl", "sft-jsonl", "hf"]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIO_DB", raising=False)
    rows = write_jsonl(tmp_path / "rows.jsonl", [cactus_row(n) for n in range(12)])
    result = CliRunner().invoke(
        cli, ["import", str(rows), "--db", "a.db", "--status", "accepted", "--reviewer", "r"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "a.db"


def export(*args: str) -> Result:
    return CliRunner().invoke(cli, ["export", *args])


def accepted(db: Path) -> int:
    with Store(db) as store:
        return int(store.stats()["records"]["accepted"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_refuses_the_database_and_its_files_however_spelled(db: Path, fmt: str) -> None:
    Path("alias.db").symlink_to("a.db")
    os.link("a.db", "hard.db")
    for out in ("a.db", "./a.db", str(db), "alias.db", "hard.db", "a.db-wal", "./a.db-shm"):
        for force in ((), ("--force",)):
            result = export(out, "--db", "a.db", "--format", fmt, *force)
            assert result.exit_code == 2, (out, result.output)
            assert len(result.stderr.strip().splitlines()) == 1
            assert "the database" in result.stderr
    # the same through the symlink as --db
    result = export("a.db", "--db", "alias.db", "--format", fmt, "--force")
    assert result.exit_code == 2
    assert accepted(db) == 12  # still a database, with every record


def test_export_never_replaces_a_folder_holding_the_database(db: Path, tmp_path: Path) -> None:
    result = export(str(tmp_path), "--db", "a.db", "--format", "hf", "--force")
    assert result.exit_code == 2 and "the database" in result.stderr
    assert accepted(db) == 12


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_existing_output_is_replaced_only_with_force(db: Path, fmt: str) -> None:
    out = Path("out.hf" if fmt == "hf" else "out.jsonl")
    assert export(str(out), "--db", "a.db", "--format", fmt).exit_code == 0
    marker = out / "dataset_dict.json" if fmt == "hf" else out
    original = marker.read_bytes()
    marker.write_bytes(b"an earlier export\n" if fmt != "hf" else original.replace(b"]", b"] "))
    mine = marker.read_bytes()
    result = export(str(out), "--db", "a.db", "--format", fmt)
    assert (
        result.exit_code == 2 and "already exists" in result.stderr and "--force" in result.stderr
    )
    assert marker.read_bytes() == mine
    result = export(str(out), "--db", "a.db", "--format", fmt, "--force")
    assert result.exit_code == 0, result.output
    assert marker.read_bytes() == original
    leftovers = [p.name for p in Path().iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary files or folders left beside it


def test_a_crash_mid_export_leaves_the_old_file(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.export

    out = Path("out.jsonl")
    out.write_text("yesterday's export\n")
    real = studio.export.cactus_export_row
    calls = 0

    def failing(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("power cut")  # a crash in the middle: some rows already written
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(studio.export, "cactus_export_row", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        CliRunner().invoke(
            cli, ["export", str(out), "--db", "a.db", "--force"], catch_exceptions=False
        )
    assert out.read_text() == "yesterday's export\n"
    assert [p.name for p in Path().iterdir() if p.name.startswith(".")] == []


def test_hf_export_of_the_demo_database_with_an_empty_validation_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import load_from_disk

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["demo", "--no-open", "--db", "demo.db"]).exit_code == 0
    result = CliRunner().invoke(cli, ["export", "demo-hf", "--db", "demo.db", "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert "exported 2 accepted records" in result.stdout
    assert "validation split is empty" in result.stdout
    dataset = load_from_disk("demo-hf")
    assert len(dataset["train"]) > 0 and len(dataset["validation"]) == 0
    assert dataset["validation"].column_names == dataset["train"].column_names

    # no accepted record at all: an empty dataset with the training columns, not a crash
    Store(tmp_path / "empty.db").close()
    result = CliRunner().invoke(cli, ["export", "none-hf", "--db", "empty.db", "--format", "hf"])
    assert result.exit_code == 0, result.output
    assert set(load_from_disk("none-hf")["train"].column_names) >= {"prompt", "completion"}


def test_streamed_sft_jsonl_matches_the_training_dataset(db: Path) -> None:
    from studio.train.dataset import build_sft_dataset

    result = export("sft.jsonl", "--db", "a.db", "--format", "sft-jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in Path("sft.jsonl").read_text().splitlines()]
    with Store(db) as store:
        dataset = build_sft_dataset(store.accepted_records())
    expected = [e.export_row("train") for e in dataset.train] + [
        e.export_row("validation") for e in dataset.validation
    ]
    assert rows == expected
    assert {row["split"] for row in rows} == {"train", "validation"}
