from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from studio.model import Stage, StageStatus
from studio.store import Store
from tests.conftest import cactus_row, seed_row, write_jsonl


def _stats(db: Path) -> dict[str, Any]:
    with Store(db) as store:
        return store.stats()


def test_patternreframe_jsonl(run, tmp_path: Path, db_path: Path) -> None:
    rows = [
        {
            "persona": "I am a nurse.",
            "pattern": "Catastrophizing",
            "pattern_def": "Expecting the worst.",
            "thought": "If I make one mistake a patient will die.",
            "marked_patterns": ["Catastrophizing", "Fortune telling"],
            "reframes": [
                {"reframe": "Mistakes are caught by checks."},
                {"reframe": "I am careful."},
            ],
        },
        {
            "persona": "I am a chef.",
            "pattern": "Labeling",
            "pattern_def": "…",
            "thought": "I'm a terrible cook.",
            "marked_patterns": [],
            "reframes": [{"reframe": "One burnt dish does not define me."}],
        },
    ]
    result = run("import", str(write_jsonl(tmp_path / "pr.jsonl", rows)))
    assert result.exit_code == 0, result.output
    assert "imported 2, skipped 0" in result.stdout
    with Store(db_path) as store:
        seeds = [store.seed(i) for i in (1, 2)]
    assert seeds[0].patterns == ("Catastrophizing", "Fortune telling")
    assert seeds[0].reframes == ("Mistakes are caught by checks.", "I am careful.")
    assert seeds[1].patterns == ("Labeling",)  # no marked patterns: the prompted pattern
    assert _stats(db_path)["records"]["pending"] == 0  # seeds only, no records yet


def test_seed_formats_json_array_jsonl_and_csv(run, tmp_path: Path, db_path: Path) -> None:
    array = tmp_path / "seeds.json"
    array.write_text(json.dumps([seed_row(1), seed_row(2)], indent=2), encoding="utf-8")
    lines = write_jsonl(tmp_path / "seeds.jsonl", [seed_row(3)])
    table = tmp_path / "seeds.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["persona", "thought", "patterns", "reframes"])
        writer.writerow(
            ["I am a baker.", "I ruin everything.", "Labeling, Overgeneralization", "A|B"]
        )
        writer.writerow(
            ["I am a pilot.", "I'll crash.", '["Catastrophizing"]', '["Flights are safe."]']
        )
    result = run("import", str(array), str(lines), str(table))
    assert result.exit_code == 0, result.output
    assert "imported 5, skipped 0" in result.stdout
    with Store(db_path) as store:
        baker = store.seed(4)
        pilot = store.seed(5)
    assert baker.patterns == ("Labeling", "Overgeneralization") and baker.reframes == ("A", "B")
    assert pilot.patterns == ("Catastrophizing",) and pilot.reframes == ("Flights are safe.",)


def test_cactus_jsonl_rows_become_records_awaiting_review(
    run, tmp_path: Path, db_path: Path
) -> None:
    rows = [cactus_row(1), cactus_row(2, cbt_plan="", dialogue="")]
    result = run("import", str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert result.exit_code == 0, result.output
    with Store(db_path) as store:
        full, partial = store.record(1), store.record(2)
    assert {s.status for s in full.stages.values()} == {StageStatus.GENERATED}
    assert full.technique == "Decatastrophizing" and full.attitude == "neutral"
    assert full.seed.patterns == ("fortune telling", "catastrophizing")
    assert partial.stages[Stage.CBT_PLAN].status is StageStatus.PENDING
    assert partial.stages[Stage.DIALOGUE].status is StageStatus.PENDING
    assert partial.stages[Stage.INTAKE_FORM].status is StageStatus.GENERATED
    assert full.status.value == "in_review" and partial.status.value == "pending"


def test_cactus_from_json_parquet_and_saved_dataset(run, tmp_path: Path, db_path: Path) -> None:
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps([cactus_row(1)]), encoding="utf-8")
    as_parquet = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist([cactus_row(2), cactus_row(3)]), as_parquet)
    saved = tmp_path / "saved"
    Dataset.from_list([cactus_row(4)]).save_to_disk(str(saved))
    result = run("import", str(as_json), str(as_parquet), str(saved))
    assert result.exit_code == 0, result.output
    assert "imported 4, skipped 0" in result.stdout
    assert _stats(db_path)["records"]["in_review"] == 4


def test_hub_id_offline_fails_with_a_clear_message(tmp_path: Path, db_path: Path) -> None:
    # A fresh process: the hub libraries read their offline switches once, at import time.
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio",
            "import",
            "nobody-here/no-such-dataset",
            "--db",
            str(db_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "nobody-here/no-such-dataset" in result.stderr
    assert "network connection" in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_twice_adds_nothing(run, tmp_path: Path, db_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [cactus_row(1), cactus_row(2)])
    run("import", str(path))
    before = _stats(db_path)
    result = run("import", str(path))
    assert result.exit_code == 0
    assert "imported 0, skipped 0 (2 already in the database)" in result.stdout
    assert _stats(db_path) == before


def test_bad_rows_are_reported_and_good_rows_kept(run, tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    with path.open("wb") as fh:
        fh.write(json.dumps(cactus_row(1)).encode() + b"\n")  # 1 good
        fh.write(b"{not json\n")  # 2 invalid JSON
        fh.write(b"\n")  # 3 blank: skipped silently
        fh.write('{"thought": "caf\u00e9"}'.encode("latin-1") + b"\n")  # 4 invalid UTF-8
        fh.write(json.dumps({"patterns": "x", "dialogue": "Counselor: hi"}).encode() + b"\n")  # 5
        fh.write(json.dumps(cactus_row(5, intake_form=42)).encode() + b"\n")  # 6 wrong type
        fh.write(b"[1, 2]\n")  # 7 not an object
        fh.write(json.dumps(cactus_row(7, attitude="angry")).encode() + b"\n")  # 8 bad value
        fh.write(json.dumps(cactus_row(8)).encode() + b"\n")  # 9 good
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 2, skipped 6" in result.stdout
    err = result.stderr
    assert f"{path}:2: invalid JSON" in err
    assert f"{path}:4: invalid UTF-8" in err
    assert f"{path}:5: missing required field 'thought'" in err
    assert f"{path}:6: field 'intake_form': expected text, got a number" in err
    assert f"{path}:7: expected a JSON object, got an array" in err
    assert f"{path}:8: field 'attitude'" in err
    assert ":3:" not in err
    assert _stats(db_path)["records"]["in_review"] == 2


def test_bad_rows_in_json_array_and_csv_name_their_lines(run, tmp_path: Path) -> None:
    array = tmp_path / "seeds.json"
    array.write_text(
        "[\n"
        + json.dumps(seed_row(1))
        + ",\n"
        + json.dumps({"persona": "p", "thought": 3})
        + "\n]",
        encoding="utf-8",
    )
    table = tmp_path / "seeds.csv"
    table.write_bytes(b"persona,thought\nI am ok,fine\nI am \xff,bad\n,\nx,\n")
    result = run("import", str(array), str(table), "--format", "seeds")
    assert result.exit_code == 0, result.output
    assert f"{array}:3: field 'thought': expected text, got a number" in result.stderr
    assert f"{table}:3: invalid UTF-8" in result.stderr
    assert f"{table}:5: field 'thought' is empty" in result.stderr
    assert "imported 2, skipped 3" in result.stdout


def test_strict_imports_nothing_and_exits_2(run, tmp_path: Path, db_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [cactus_row(1)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(cactus_row(2)) + "\n{oops\n", encoding="utf-8")
    result = run("import", str(good), str(bad), "--strict")
    assert result.exit_code == 2
    assert f"{bad}:2: invalid JSON" in result.stderr
    assert "--strict imported nothing" in result.stderr
    assert _stats(db_path)["seeds"] == 0


def test_missing_or_unreadable_file_exits_2_naming_it(run, tmp_path: Path, db_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [cactus_row(1)])
    result = run("import", str(good), str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.jsonl'}: no such file" in result.stderr
    assert _stats(db_path)["seeds"] == 0  # checked before anything is written
    if os.geteuid() != 0:  # root reads everything
        locked = write_jsonl(tmp_path / "locked.jsonl", [cactus_row(2)])
        locked.chmod(0)
        result = run("import", str(locked))
        assert result.exit_code == 2 and str(locked) in result.stderr


def test_unknown_file_type_is_bad_input(run, tmp_path: Path) -> None:
    odd = tmp_path / "rows.txt"
    odd.write_text("hello", encoding="utf-8")
    result = run("import", str(odd))
    assert result.exit_code == 2 and "unknown file type '.txt'" in result.stderr


def test_status_accepted_marks_rows_reviewed_with_an_event_each(
    run, tmp_path: Path, db_path: Path
) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [cactus_row(1), cactus_row(2)])
    result = run("import", str(path), "--status", "accepted", "--reviewer", "dr_kim")
    assert result.exit_code == 0, result.output
    with Store(db_path) as store:
        assert store.stats()["records"]["accepted"] == 2
        events = store.conn.execute(
            "SELECT reviewer, record_id FROM events WHERE action = 'accept_import' ORDER BY record_id"
        ).fetchall()
        assert events == [("dr_kim", 1), ("dr_kim", 2)]
        assert store.record(1).last_reviewer == "dr_kim"


def test_import_is_logged_as_an_event(run, tmp_path: Path, db_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [cactus_row(1)])
    run("import", str(path))
    with Store(db_path) as store:
        (after,) = store.conn.execute("SELECT after FROM events WHERE action = 'import'").fetchone()
    assert json.loads(after) == {
        "source": str(path),
        "format": "cactus",
        "imported": 1,
        "duplicates": 0,
        "skipped": 0,
    }


@pytest.mark.parametrize("fmt", ["seeds", "patternreframe"])
def test_forced_format_reports_missing_fields(run, tmp_path: Path, fmt: str) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"thought": "no persona here"}])
    result = run("import", str(path), "--format", fmt)
    assert result.exit_code == 0
    assert f"{path}:1: missing required field 'persona'" in result.stderr


def test_a_bad_first_csv_row_names_its_own_line(run, tmp_path: Path) -> None:
    table = tmp_path / "seeds.csv"
    table.write_text("persona,thought\n,missing persona\nI am ok,fine\n", encoding="utf-8")
    result = run("import", str(table), "--format", "seeds")
    assert f"{table}:2: field 'persona' is empty" in result.stderr
    assert "imported 1, skipped 1" in result.stdout


def test_invalid_utf8_in_a_json_array_costs_only_its_element(run, tmp_path: Path) -> None:
    array = tmp_path / "seeds.json"
    good = json.dumps(seed_row(1)).encode()
    bad = json.dumps(seed_row(2)).encode().replace(b"student", b"stud\xffent")
    array.write_bytes(
        b"[\n" + good + b",\n" + bad + b",\n" + json.dumps(seed_row(3)).encode() + b"\n]"
    )
    result = run("import", str(array))
    assert result.exit_code == 0
    assert f"{array}:3: invalid UTF-8" in result.stderr
    assert "imported 2, skipped 1" in result.stdout


def test_reviewer_without_status_accepted_is_a_usage_error(run, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [cactus_row(1)])
    result = run("import", str(path), "--reviewer", "dr_kim")
    assert result.exit_code == 2 and "--status accepted" in result.stderr
