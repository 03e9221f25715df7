"""Issue 8, item 3: import never loses a good row (BOMs, rows that break the readers or the
converters, files that cannot be read, optional fields in odd shapes, rows of another format)."""

from __future__ import annotations

import codecs
import csv
import errno
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from studio.ingest import formats, readers
from studio.ingest.readers import Row
from studio.store import Store
from tests.conftest import seed_row, write_jsonl

BOM = codecs.BOM_UTF8
DEEP = 100_000


def _seeds(db: Path) -> list[tuple[str, str, list[str], list[str]]]:
    with Store(db) as store:
        rows = store.conn.execute(
            "SELECT persona, thought, patterns, reframes FROM seeds ORDER BY id"
        ).fetchall()
    return [(p, t, json.loads(pats), json.loads(refs)) for p, t, pats, refs in rows]


def _thoughts(db: Path) -> list[str]:
    return [thought for _, thought, _, _ in _seeds(db)]


def test_a_byte_order_mark_is_accepted_in_csv_json_and_jsonl(
    run, tmp_path: Path, db_path: Path
) -> None:
    table = tmp_path / "excel.csv"
    table.write_bytes(
        BOM + b"persona,thought,patterns\r\nI am a baker.,I ruin everything.,Labeling\r\n"
    )
    array = tmp_path / "seeds.json"
    array.write_bytes(BOM + json.dumps([seed_row(1)], indent=2).encode())
    lines = tmp_path / "seeds.jsonl"
    lines.write_bytes(BOM + json.dumps(seed_row(2)).encode() + b"\n")
    result = run("import", str(table), str(array), str(lines))
    assert result.exit_code == 0, result.output
    assert "imported 3, skipped 0" in result.stdout, result.output
    assert _seeds(db_path)[0] == ("I am a baker.", "I ruin everything.", ["Labeling"], [])


def test_a_csv_cell_past_the_csv_module_limit_is_kept(run, tmp_path: Path, db_path: Path) -> None:
    long_thought = "I keep going over it. " * 10_000  # 220,000 characters; the csv limit is 131,072
    assert len(long_thought) > csv.field_size_limit()
    table = tmp_path / "long.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["persona", "thought"])
        writer.writerow(["I am a writer.", long_thought])
        writer.writerow(["I am a pilot.", "I'll crash."])
    limit_before = csv.field_size_limit()
    result = run("import", str(table))
    assert result.exit_code == 0, result.output
    assert "imported 2, skipped 0" in result.stdout
    assert _thoughts(db_path) == [long_thought, "I'll crash."]
    assert csv.field_size_limit() == limit_before  # a process-wide setting, put back


def test_a_csv_cell_over_the_limit_is_that_rows_error(
    run, tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "CSV_CELL_LIMIT", 1000)
    table = tmp_path / "huge.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["persona", "thought"])
        writer.writerow(["I am 1.", "fine 1"])  # line 2
        writer.writerow(["I am 2.", "x" * 5000])  # line 3: one line, over the limit
        writer.writerow(["I am 3.", "fine 3"])  # line 4
        # line 5: a quoted cell over the limit spanning 80 lines, with quotes and commas inside
        writer.writerow(["I am 4.", 'a "quoted", line\n' * 80])
        writer.writerow(["I am 5.", "fine 5"])  # line 85
    result = run("import", str(table))
    assert result.exit_code == 0, result.output
    assert f"{table}:3: a cell is longer than 1,000 characters" in result.stderr
    assert f"{table}:5: a cell is longer than 1,000 characters" in result.stderr
    assert "imported 3, skipped 2" in result.stdout, result.output
    assert _thoughts(db_path) == ["fine 1", "fine 3", "fine 5"]


def test_json_nested_100000_deep_costs_only_its_row(run, tmp_path: Path, db_path: Path) -> None:
    deep = "[" * DEEP + "]" * DEEP
    array = tmp_path / "deep.json"
    array.write_text(
        "[\n"
        + json.dumps(seed_row(1))
        + ",\n"
        + '{"persona": "p", "thought": '
        + deep
        + "},\n"
        + json.dumps(seed_row(3))
        + "\n]",
        encoding="utf-8",
    )
    lines = tmp_path / "deep.jsonl"
    lines.write_text(
        '{"persona": "p", "thought": "t", "patterns": ' + deep + "}\n" + json.dumps(seed_row(5)),
        encoding="utf-8",
    )
    table = tmp_path / "deep.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["persona", "thought", "patterns"])
        writer.writerow(["I am 6.", "t6", deep])  # a list cell is read as JSON
        writer.writerow(["I am 7.", "t7", "Labeling"])
    result = run("import", str(array), str(lines), str(table), "--format", "seeds")
    assert result.exit_code == 0, result.output
    assert f"{array}:3: nested too deeply to read" in result.stderr
    assert f"{lines}:1: field 'patterns[0]': expected text, got an array" in result.stderr
    assert f"{table}:2: field 'patterns': nested too deeply to read" in result.stderr
    assert "imported 4, skipped 3" in result.stdout, result.output
    assert len(_thoughts(db_path)) == 4


def test_an_unexpected_exception_in_a_converter_is_that_rows_error(
    run, tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = formats._PARSERS["seeds"]

    def fragile(data: Mapping[str, Any], source: str, warnings: list[str] | None) -> Any:
        if "(2)" in str(data.get("thought")):
            raise ZeroDivisionError("division by zero")
        return real(data, source, warnings)

    monkeypatch.setitem(formats._PARSERS, "seeds", fragile)
    path = write_jsonl(tmp_path / "seeds.jsonl", [seed_row(1), seed_row(2), seed_row(3)])
    result = run("import", str(path))  # the runner re-raises any exception: none escapes
    assert result.exit_code == 0, result.output
    assert f"{path}:2: unexpected error (ZeroDivisionError: division by zero)" in result.stderr
    assert "imported 2, skipped 1" in result.stdout
    assert len(_thoughts(db_path)) == 2


def test_a_bad_file_never_stops_the_others_and_the_summary_is_printed(
    run, tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_jsonl(tmp_path / "first.jsonl", [seed_row(1)])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    failing = write_jsonl(tmp_path / "failing.jsonl", [seed_row(n) for n in (2, 3, 4)])
    last = tmp_path / "last.csv"
    last.write_text("persona,thought\nI am 5.,t5\n", encoding="utf-8")
    real_jsonl = readers.read_jsonl

    def read_until_the_disk_fails(path: str, progress: Any = None) -> Iterator[Row]:
        for number, row in enumerate(real_jsonl(path, progress), start=1):
            if path == str(failing) and number == 3:
                raise OSError(errno.EIO, "Input/output error")
            yield row

    monkeypatch.setattr(readers, "read_jsonl", read_until_the_disk_fails)
    result = run("import", str(first), str(broken), str(failing), str(last))
    assert result.exit_code == 2
    assert f"{broken}: not a readable parquet file" in result.stderr
    assert (
        f"{failing}: unexpected error (OSError: [Errno 5] Input/output error); "
        "the rest of the file was not read"
    ) in result.stderr
    assert "2 file(s) could not be read to the end" in result.stderr
    assert "imported 4, skipped 0 (2 files not read to the end)" in result.stdout, result.output
    assert "Traceback" not in result.output
    # The rows read before the failure are kept; the files after it are imported.
    assert len(_thoughts(db_path)) == 4
    assert _thoughts(db_path)[-1] == "t5"


def test_strict_counts_an_unreadable_file_and_imports_nothing(
    run, tmp_path: Path, db_path: Path
) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [seed_row(1)])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    result = run("import", str(good), str(broken), "--strict")
    assert result.exit_code == 2
    assert "1 file(s) not read to the end; --strict imported nothing" in result.stderr
    assert "imported 0, skipped 0 (1 file not read to the end)" in result.stdout, result.output
    assert _thoughts(db_path) == []


def _patternreframe(n: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "persona": f"I am a nurse, number {n}.",
        "pattern": "Catastrophizing",
        "pattern_def": "Expecting the worst.",
        "thought": f"If I make one mistake a patient will die ({n}).",
        "marked_patterns": ["Catastrophizing"],
        "reframes": [{"reframe": "Mistakes are caught by checks."}],
    }
    row.update(overrides)
    return row


def test_marked_patterns_as_an_object_uses_its_keys_and_warns_once(
    run, tmp_path: Path, db_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "pr.jsonl",
        [
            _patternreframe(1),
            _patternreframe(2, marked_patterns={"labeling": 2, "mind reading": 1}),
            _patternreframe(3, marked_patterns={"overgeneralization": 3}),
            _patternreframe(4, marked_patterns={"should statements": 1}),
            _patternreframe(5, marked_patterns=7),  # nothing usable: the prompted pattern
            _patternreframe(6, marked_patterns={}),  # an empty object: the prompted pattern
        ],
    )
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 6, skipped 0" in result.stdout, result.output
    err = result.stderr
    assert (
        f"{path}:2: warning: field 'marked_patterns' is an object, not a list; used its keys"
        " (and 2 more rows of this file)"
    ) in err
    assert err.count("is an object, not a list") == 1
    assert (
        f"{path}:5: warning: field 'marked_patterns' is not a list of pattern names;"
        " used 'pattern' instead (and 1 more rows of this file)"
    ) in err
    patterns = [pats for _, _, pats, _ in _seeds(db_path)]
    assert patterns == [
        ["Catastrophizing"],
        ["labeling", "mind reading"],
        ["overgeneralization"],
        ["should statements"],
        ["Catastrophizing"],
        ["Catastrophizing"],
    ]


def test_patternreframe_csv_reframes_cell_is_read(run, tmp_path: Path, db_path: Path) -> None:
    table = tmp_path / "pr.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["persona", "pattern", "pattern_def", "thought", "reframes"])
        writer.writerow(["I am 1.", "Labeling", "d", "t1", json.dumps([{"reframe": "r1"}])])
        writer.writerow(["I am 2.", "Labeling", "d", "t2", "r2a|r2b"])
    result = run("import", str(table))
    assert result.exit_code == 0, result.output
    assert "imported 2, skipped 0" in result.stdout, result.output
    assert [refs for _, _, _, refs in _seeds(db_path)] == [["r1"], ["r2a", "r2b"]]


def test_a_row_that_does_not_fit_the_detected_format_is_reported(
    run, tmp_path: Path, db_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "pr.jsonl",
        [_patternreframe(1), {"persona": "p", "thought": "t", "patterns": 42}],
    )
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert (
        f"{path}:2: field 'patterns' not part of the patternreframe format this file is read as;"
        " the row looks like seeds (a file's format comes from its first row, or --format)"
    ) in result.stderr
    assert "imported 1, skipped 1" in result.stdout
    assert len(_seeds(db_path)) == 1


def test_fields_of_another_format_are_reported_unless_the_row_holds_the_same_thing(
    run, tmp_path: Path, db_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "seeds.jsonl",
        [
            # A seed that kept the PatternReframe prompt beside its own patterns: nothing lost.
            seed_row(1, pattern="Labeling", pattern_def="Calling oneself names."),
            seed_row(2, patterns=[], pattern="Labeling"),  # the prompted pattern would be lost
            seed_row(3, dialogue="Counselor: Hi."),  # a stage has no place in a seed
        ],
    )
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}:2: field 'pattern' not part of the seeds format" in result.stderr
    assert f"{path}:3: field 'dialogue' not part of the seeds format" in result.stderr
    assert "imported 1, skipped 2" in result.stdout, result.output
    assert _seeds(db_path)[0][2] == ["Mind reading", "Labeling"]


def test_an_empty_column_of_another_format_costs_nothing(
    run, tmp_path: Path, db_path: Path
) -> None:
    table = tmp_path / "wide.csv"
    table.write_text(
        "persona,thought,patterns,dialogue,pattern_def\nI am 1.,t1,Labeling,,\n",
        encoding="utf-8",
    )
    result = run("import", str(table), "--format", "seeds")
    assert result.exit_code == 0, result.output
    assert "imported 1, skipped 0" in result.stdout, result.output


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.json", b""),
        ("blank.json", b"  \n\n"),
        ("bom-only.json", BOM),
        ("array.json", b"[]"),
        ("empty.jsonl", b""),
        ("blank.jsonl", b"\n\n"),
        ("empty.csv", b""),
        ("header-only.csv", b"persona,thought\r\n"),
    ],
)
def test_an_empty_file_says_empty(run, tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: empty, no rows to import" in result.stderr
    assert "imported 0, skipped 0 (1 empty file)" in result.stdout


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlink_loop_says_so(run, tmp_path: Path, db_path: Path) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(tmp_path / "other.jsonl")
    (tmp_path / "other.jsonl").symlink_to(loop)
    result = run("import", str(loop))
    assert result.exit_code == 2
    assert f"{loop}: symlink loop" in result.stderr
    assert "no such file" not in result.stderr
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "gone.jsonl")
    result = run("import", str(dangling))
    assert result.exit_code == 2
    assert f"{dangling}: broken symlink (its target does not exist)" in result.stderr


def test_an_unpaired_surrogate_escape_costs_only_its_element(
    run, tmp_path: Path, db_path: Path
) -> None:
    # Python's JSON decoder accepts "\ud800"; SQLite cannot store it, which used to fail the
    # whole file's transaction with a traceback. A proper pair (an emoji) is fine.
    array = tmp_path / "seeds.json"
    array.write_text(
        "[\n"
        + json.dumps(seed_row(1, persona="I am \ud83d\ude00 happy."))
        + ",\n"
        + '{"persona": "I am \\ud800 broken.", "thought": "t"},\n'
        + json.dumps(seed_row(3))
        + "\n]",
        encoding="utf-8",
    )
    result = run("import", str(array))
    assert result.exit_code == 0, result.output
    assert f"{array}:3: invalid text (an unpaired \\uD800-\\uDFFF escape)" in result.stderr
    assert "imported 2, skipped 1" in result.stdout, result.output
    assert _seeds(db_path)[0][0] == "I am \U0001f600 happy."


def test_a_utf16_file_is_named_not_read_as_rows_of_garbage(
    run, tmp_path: Path, db_path: Path
) -> None:
    table = tmp_path / "unicode.csv"
    table.write_bytes("persona,thought\nI am 1.,t1\n".encode("utf-16"))  # with its BOM
    good = write_jsonl(tmp_path / "good.jsonl", [seed_row(1)])
    result = run("import", str(table), str(good))
    assert result.exit_code == 2
    assert f"{table}: the file is UTF-16; save it as UTF-8" in result.stderr
    assert "imported 1, skipped 0 (1 file not read to the end)" in result.stdout, result.output
