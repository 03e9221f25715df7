from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from studio.ingest.load import add_rows
from studio.model import CACTUS_COLUMNS, Stage, StageStatus
from studio.store import Store
from tests.conftest import DIALOGUE, cactus_row, write_jsonl


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_import_accept_export_round_trips(run, tmp_path: Path) -> None:
    rows = [cactus_row(1), cactus_row(2, attitude="negative", cbt_technique="Reality Testing")]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    assert run("import", str(source), "--status", "accepted", "--reviewer", "r").exit_code == 0
    out = tmp_path / "out.jsonl"
    result = run("export", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 2 accepted records" in result.stdout
    exported = _read(out)
    assert exported == rows
    assert all(tuple(row) == CACTUS_COLUMNS for row in exported)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_only_accepted_records_and_edits_win(run, tmp_path: Path, db_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [cactus_row(1), cactus_row(2), cactus_row(3)])
    run("import", str(source))
    with Store(db_path) as store:
        store.edit_stage(1, Stage.CBT_PLAN, "1. Clinician's plan.", reviewer="r", note="tightened")
        for stage in (Stage.INTAKE_FORM, Stage.CBT_TECHNIQUE, Stage.DIALOGUE):
            store.decide_stage(1, stage, StageStatus.ACCEPTED, reviewer="r")
        store.decide_stage(2, Stage.INTAKE_FORM, StageStatus.ACCEPTED, reviewer="r")  # partial
        store.reject_record(3, reviewer="r", reason="unsafe advice")
    out = tmp_path / "out.jsonl"
    run("export", str(out))
    (row,) = _read(out)
    assert row["cbt_plan"] == "1. Clinician's plan."
    assert row["thought"] == cactus_row(1)["thought"]
    assert "notes" not in row

    assert run("export", str(out), "--include-notes").exit_code == 2  # exists: not replaced
    assert "notes" not in _read(out)[0]
    assert run("export", str(out), "--include-notes", "--force").exit_code == 0
    (row,) = _read(out)
    assert row["notes"]["cbt_plan"] == "tightened"


def test_formats_for_training_write_the_sft_dataset(run, tmp_path: Path) -> None:
    from datasets import load_from_disk

    rows = [cactus_row(n) for n in range(10)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    assert run("import", str(source), "--status", "accepted", "--reviewer", "r").exit_code == 0
    out = tmp_path / "sft.jsonl"
    result = run("export", str(out), "--format", "sft-jsonl")
    assert result.exit_code == 0, result.output
    assert "exported 10 accepted records" in result.stdout
    exported = _read(out)
    assert len(exported) == 10 * 3  # three counselor turns after the opening exchange each
    assert {row["split"] for row in exported} == {"train", "validation"}
    first = exported[0]
    assert set(first) == {"prompt", "completion", "record_id", "turn", "split"}
    assert [m["role"] for m in first["prompt"]] == ["system", "assistant", "user"]
    assert first["completion"] == [
        {"role": "assistant", "content": "What makes that feel so certain?"}
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    folder = tmp_path / "sft-hf"
    assert run("export", str(folder), "--format", "hf").exit_code == 0
    assert run("export", str(folder), "--format", "hf").exit_code == 2  # exists
    assert run("export", str(folder), "--format", "hf", "--force").exit_code == 0  # replaced
    dataset = load_from_disk(str(folder))
    assert set(dataset) == {"train", "validation"}
    assert len(dataset["train"]) + len(dataset["validation"]) == len(exported)
    first_train = next(row for row in exported if row["split"] == "train")
    assert dataset["train"][0]["prompt"] == first_train["prompt"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.rglob("*") if p.is_file())

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    for force in ((), ("--force",)):  # not an earlier export: never replaced
        refused = run("export", str(tmp_path / "notes"), "--format", "hf", *force)
        assert refused.exit_code == 2
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_export_refuses_a_folder_and_notes_in_training_formats(run, tmp_path: Path) -> None:
    run(
        "import",
        str(write_jsonl(tmp_path / "in.jsonl", [cactus_row(1)])),
        "--status",
        "accepted",
        "--reviewer",
        "r",
    )
    folder = tmp_path / "existing"
    folder.mkdir()
    result = run("export", str(folder))
    assert result.exit_code == 2 and "is a folder" in result.stderr
    assert list(folder.iterdir()) == []
    result = run("export", str(tmp_path / "sft.jsonl"), "--format", "sft-jsonl", "--include-notes")
    assert result.exit_code == 2 and "--include-notes" in result.stderr


SHORT_DIALOGUE = "Counselor: Hi Sam, what brings you in?\nClient: My exams. Thank you."


def _reviewed_store(store: Store, records: int, without_examples: int) -> Store:
    """Accepted records, some edited (stage directions, notes), some with a dialogue too short
    to give an example."""
    from studio.ingest.formats import parse_cactus

    add_rows(store, [parse_cactus(cactus_row(n)) for n in range(records)], accepted_by="ann")
    add_rows(store, [parse_cactus(cactus_row(99))])  # pending: never exported
    for record_id in range(1, without_examples + 1):
        store.edit_stage(record_id, Stage.DIALOGUE, SHORT_DIALOGUE, reviewer="r", note="cut")
    edited = DIALOGUE.replace("Counselor:What", "Counselor (leans in): What") + "\nClient: Ok."
    store.edit_stage(records, Stage.DIALOGUE, edited + "\nCounselor: See you.", reviewer="r")
    store.edit_stage(records, Stage.CBT_PLAN, 'A "quoted" plan\u2014ünïcode.', reviewer="r")
    with store.transaction() as conn:  # the review app has no call for it yet
        conn.execute("UPDATE records SET note = 'whole record' WHERE id = ?", (records,))
    return store


def _reference_sft(store: Store, context: str) -> bytes:
    from studio.train.dataset import build_sft_dataset

    dataset = build_sft_dataset(store.accepted_records(), context=context)
    return b"".join(
        orjson.dumps(e.export_row(split)) + b"\n"
        for split, examples in (("train", dataset.train), ("validation", dataset.validation))
        for e in examples
    )


@pytest.mark.parametrize("without_examples", [0, 12])
def test_exports_are_byte_identical_to_the_record_views(
    store: Store, tmp_path: Path, without_examples: int
) -> None:
    """The export reads flat rows and writes prebuilt bytes; its files are exactly what
    `cactus_row` and `SftExample.export_row` of `Store.accepted_records` give."""
    from studio.export import cactus_row as studio_cactus_row
    from studio.export import export_records, export_sft_jsonl
    from studio.store.exporting import accepted_seed_keys
    from studio.train.dataset import record_examples, validation_keys

    _reviewed_store(store, 24, without_examples)
    with_examples = [
        r.seed.content_hash for r in store.accepted_records() if record_examples(r, "history")
    ]
    guessed = validation_keys(accepted_seed_keys(store), 0.1, 42)
    exact = validation_keys(with_examples, 0.1, 42)
    # with records without examples the split guessed from all seeds is wrong: written twice
    assert (guessed & frozenset(with_examples) != exact) == bool(without_examples)

    for notes in (False, True):
        out = tmp_path / f"cactus-{notes}.jsonl"
        export_records(store, out, fmt="cactus-jsonl", include_notes=notes)
        expected = b"".join(
            orjson.dumps(studio_cactus_row(r, include_notes=notes)) + b"\n"
            for r in store.accepted_records()
        )
        assert out.read_bytes() == expected
    for context in ("history", "plan"):
        out = tmp_path / f"sft-{context}.jsonl"
        result = export_sft_jsonl(store, out, force=False, context=context)
        assert result.records == 24
        assert out.read_bytes() == _reference_sft(store, context)


def test_exports_with_provenance_are_the_record_views_stamped(store: Store, tmp_path: Path) -> None:
    """With `--with-provenance` the streamed rows carry the same columns, in the same places, as
    `stamped(...)` of the record-view rows, whatever the reviewer's name holds (a `%` too)."""
    from studio.export import cactus_row as studio_cactus_row
    from studio.export import export_records, export_sft_jsonl
    from studio.provenance import row_stamp, stamped
    from studio.train.dataset import build_sft_dataset

    _reviewed_store(store, 12, 2)
    store.edit_stage(5, Stage.CBT_PLAN, "1. A.\n2. B.\n3. C.", reviewer="dr %d 100%")
    stamp = row_stamp(store)
    out = tmp_path / "sft.jsonl"
    export_sft_jsonl(store, out, force=False, stamp=stamp)
    dataset = build_sft_dataset(store.accepted_records(), context="history")
    expected = b"".join(
        orjson.dumps(row) + b"\n"
        for split, examples in (("train", dataset.train), ("validation", dataset.validation))
        for row in stamped((e.export_row(split) for e in examples), stamp)
    )
    assert out.read_bytes() == expected
    assert b'"accepted_by":"dr %d 100%"' in expected

    cactus = tmp_path / "cactus.jsonl"
    export_records(store, cactus, fmt="cactus-jsonl", with_provenance=True)
    assert cactus.read_bytes() == b"".join(
        orjson.dumps(studio_cactus_row(r, stamp=stamp)) + b"\n" for r in store.accepted_records()
    )
