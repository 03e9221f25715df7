"""Every export says where it came from: the dataset card (`hf`), the sidecar (JSONL formats) and,
with --with-provenance, who accepted each row and when. Real SQLite, two reviewers."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from studio.model import Stage, StageStatus
from studio.provenance import build_provenance, reviewer_pseudonyms
from studio.store import Store
from studio.store.undo import undo_last
from tests.conftest import FixedClock, cactus_row, write_jsonl

NOTE = "client-name-in-this-note"
SECRET = "gsk_thisMustNeverLeave0123456789"
V1, V2 = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
#: A later decision than any the store's clock stamps (2026-01-05 09:…).
LATER = "2026-01-06T10:00:00.000+00:00"


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _decide(
    store: Store, record_id: int, stage: str, reviewer: str, status: str, **kw: Any
) -> None:
    """A reviewer's row in `decisions` (what team review writes), set directly."""
    store.conn.execute(
        "INSERT OR REPLACE INTO decisions (record_id, stage, reviewer, status, note, guideline,"
        " decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record_id, stage, reviewer, status, kw.get("note", ""), kw["guideline"], kw["at"]),
    )


@pytest.fixture
def reviewed(run, tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four records: 1 double-reviewed (dr_b first, then dr_a), 2 edited by dr_a with a note,
    3 rejected by dr_a, 4 untouched. dr_c accepted a stage of 1 and undid it."""
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    rows = [
        cactus_row(1, attitude="negative", cbt_technique="Reality Testing"),
        cactus_row(2, attitude="positive"),
        cactus_row(3),
        cactus_row(4),
    ]
    assert run("import", str(write_jsonl(tmp_path / "in.jsonl", rows))).exit_code == 0
    with Store(db_path, clock=FixedClock()) as store:
        store.decide_stage(1, Stage.INTAKE_FORM, StageStatus.ACCEPTED, reviewer="dr_c")
        assert undo_last(store, reviewer="dr_c") is not None
        for stage in Stage:
            store.decide_stage(1, stage, StageStatus.ACCEPTED, reviewer="dr_b")
        store.edit_stage(2, Stage.CBT_PLAN, "1. Plan by a clinician.", reviewer="dr_a", note=NOTE)
        for stage in (Stage.INTAKE_FORM, Stage.CBT_TECHNIQUE, Stage.DIALOGUE):
            store.decide_stage(2, stage, StageStatus.ACCEPTED, reviewer="dr_a")
        store.reject_record(3, reviewer="dr_a", reason=NOTE)
        with store.transaction():
            for stage in Stage:
                _decide(store, 1, stage.value, "dr_b", "accepted", guideline=V1, at=store.now())
                _decide(store, 1, stage.value, "dr_a", "accepted", guideline=V2, at=LATER)
            _decide(store, 2, "cbt_plan", "dr_a", "edited", guideline=V2, at=store.now(), note=NOTE)
            store.conn.execute(
                "UPDATE stages SET model = 'llama-3.3-70b', template_version = 'v3'"
                " WHERE record_id = 1 AND name IN ('cbt_plan', 'dialogue')"
            )
    return db_path


def _check_content(data: dict[str, Any], *, names: tuple[str, str] = ("dr_a", "dr_b")) -> None:
    a, b = names
    assert data["records"] == 2
    assert data["database"] == {"accepted": 2, "in_review": 1, "rejected": 1}
    assert data["techniques"] == {"Decatastrophizing": 1, "Reality Testing": 1}
    assert data["attitudes"] == {"negative": 1, "positive": 1}
    assert data["stages"]["cbt_plan"] == {"accepted": 1, "edited": 1}
    reviewers = {r["name"]: r["records"] for r in data["reviewers"]}
    assert reviewers == {a: 2, b: 1}  # dr_c's undone accept does not count
    assert data["guideline_versions"] == {V2: 2, V1: 1, "": 2}  # "": decided before versions
    assert data["models"] == {"": 6, "llama-3.3-70b": 2}
    assert data["template_versions"]["dialogue"] == {"": 1, "v3": 1}
    agreement = data["agreement"]
    assert agreement["double_reviewed_records"] == 1  # record 1: both accepted every stage
    dialogue = next(s for s in agreement["stages"] if s["stage"] == "dialogue")
    assert dialogue["reviewers"] == list(names) and dialogue["items"] == 1
    assert dialogue["value"] is None and "too few items" in dialogue["note"]


def _sidecar(out: Path) -> dict[str, Any]:
    sidecar = out.with_suffix(".provenance.json")
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    text = sidecar.read_text()
    assert NOTE not in text and SECRET not in text and "gsk_" not in text
    data: dict[str, Any] = json.loads(text)
    return data


def test_cactus_and_sft_exports_write_the_same_provenance_beside_them(
    run, reviewed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    result = run("export", str(out))
    assert result.exit_code == 0, result.output
    assert f"provenance: {tmp_path / 'out.provenance.json'}" in result.stdout
    cactus = _sidecar(out)
    _check_content(cactus)
    assert (cactus["format"], cactus["pseudonymized"], cactus["with_provenance"]) == (
        "cactus-jsonl",
        False,
        False,
    )
    assert all("record_id" not in row and "notes" not in row for row in _read(out))

    sft_out = tmp_path / "sft.jsonl"
    assert run("export", str(sft_out), "--format", "sft-jsonl").exit_code == 0
    sft = _sidecar(sft_out)
    _check_content(sft)
    same = {k: v for k, v in sft.items() if k not in ("format", "exported_at")}
    assert same == {k: v for k, v in cactus.items() if k not in ("format", "exported_at")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.jsonl", "out.jsonl", "out.provenance.json", "sft.jsonl", "sft.provenance.json"]
        + [p.name for p in tmp_path.glob("studio.db*")]
    )  # no temporary file left


def test_with_provenance_rows_name_who_accepted_them_and_when(
    run, reviewed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    assert run("export", str(out), "--with-provenance").exit_code == 0
    rows = _read(out)
    assert [(r["record_id"], r["accepted_by"]) for r in rows] == [(1, "dr_a"), (2, "dr_a")]
    assert rows[0]["accepted_at"] == LATER  # dr_a's decision came after dr_b's
    assert rows[1]["accepted_at"].startswith("2026-01-05T09:")
    assert list(rows[0])[-3:] == ["record_id", "accepted_by", "accepted_at"]
    assert _sidecar(out)["with_provenance"] is True

    sft = tmp_path / "sft.jsonl"
    assert (
        run("export", str(sft), "--format", "sft-jsonl", "--with-provenance", "--pseudonymize")
    ).exit_code == 0
    sft_rows = _read(sft)
    assert sft_rows and all(r["accepted_by"] == "reviewer-2" for r in sft_rows)
    assert {r["record_id"] for r in sft_rows} == {1, 2}


def test_pseudonyms_follow_the_first_decision_everywhere(
    run, reviewed: Path, tmp_path: Path
) -> None:
    with Store(reviewed) as store:
        # dr_b decided first (dr_c's undone accept is not a decision)
        assert reviewer_pseudonyms(store) == {"dr_b": "reviewer-1", "dr_a": "reviewer-2"}
    out = tmp_path / "out.jsonl"
    assert run("export", str(out), "--pseudonymize", "--with-provenance").exit_code == 0
    data = _sidecar(out)
    _check_content(data, names=("reviewer-2", "reviewer-1"))
    assert data["pseudonymized"] is True
    assert {r["accepted_by"] for r in _read(out)} == {"reviewer-2"}
    everything = out.read_text() + out.with_suffix(".provenance.json").read_text()
    assert "dr_a" not in everything and "dr_b" not in everything


def test_notes_leave_only_with_include_notes(run, reviewed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run("export", str(out), "--with-provenance").exit_code == 0
    assert NOTE not in out.read_text()
    assert run("export", str(out), "--include-notes", "--force").exit_code == 0
    assert [r["notes"]["cbt_plan"] for r in _read(out)] == ["", NOTE]
    assert _sidecar(out)["include_notes"] is True  # the sidecar says so, without the notes


def test_the_sidecar_is_protected_like_the_export(run, reviewed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sidecar = tmp_path / "out.provenance.json"
    sidecar.write_text("an earlier provenance")
    result = run("export", str(out))
    assert result.exit_code == 2 and "out.provenance.json: already exists" in result.output
    assert sidecar.read_text() == "an earlier provenance" and not out.exists()
    assert run("export", str(out), "--force").exit_code == 0
    assert _sidecar(out)["records"] == 2

    (tmp_path / "dir.provenance.json").mkdir()
    result = run("export", str(tmp_path / "dir.jsonl"), "--force")
    assert result.exit_code == 2 and "is a folder" in result.output
    assert not (tmp_path / "dir.jsonl").exists()


@pytest.mark.train_extra
def test_hf_writes_a_dataset_card(run, reviewed: Path, tmp_path: Path) -> None:
    from datasets import load_from_disk

    out = tmp_path / "hf"
    assert run("export", str(out), "--format", "hf", "--with-provenance").exit_code == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other\nlanguage:\n- en\ntask_categories:\n")
    assert "- text-generation\nsize_categories:\n- n<1K\n" in card
    assert "Records exported: **2**" in card
    for text in ("| Reality Testing | 1 |", "| negative | 1 |", "| dr_a | 2 | 0 |", "| dr_b | 1 |"):
        assert text in card
    assert f"| {V2} | 2 |" in card and "| not recorded | 2 |" in card
    assert "| llama-3.3-70b | 2 |" in card and "| dialogue | v3 | 1 |" in card
    assert "| dialogue | dr_a, dr_b | 1 | kappa | too few items (n=1; 10 needed) |" in card
    assert NOTE not in card and SECRET not in card and "gsk_" not in card
    assert stat.S_IMODE((out / "README.md").stat().st_mode) == 0o600
    dataset = load_from_disk(str(out))
    assert {"accepted_by", "accepted_at"} <= set(dataset["train"].column_names)
    assert not list(tmp_path.glob("hf.provenance.json"))  # the card is the provenance

    assert run("export", str(out), "--format", "hf", "--pseudonymize", "--force").exit_code == 0
    card = (out / "README.md").read_text()
    assert "| reviewer-2 | 2 | 0 |" in card and "| reviewer-1 | 1 |" in card
    assert "dr_a" not in card and "dr_b" not in card


def test_agreement_figures_are_in_the_provenance_with_pseudonyms(reviewed: Path) -> None:
    with Store(reviewed) as store:
        # Ten more records that dr_a and dr_b both decided: enough items for a kappa.
        with store.transaction():
            for record in range(5, 15):
                store.conn.execute(
                    "INSERT INTO records (id, seed_id, dedupe_key, created_at, updated_at)"
                    " VALUES (?, 1, ?, 'now', 'now')",
                    (record, f"extra-{record}"),
                )
                a = "accepted" if record % 3 else "rejected"
                b = "accepted" if record % 4 else "rejected"
                _decide(store, record, "dialogue", "dr_a", a, guideline=V2, at=LATER)
                _decide(store, record, "dialogue", "dr_b", b, guideline=V2, at=LATER)
        plain = build_provenance(store, fmt="hf")
        masked = build_provenance(store, fmt="hf", pseudonymize=True)
    dialogue = next(s for s in plain.agreement["stages"] if s["stage"] == "dialogue")
    assert dialogue["items"] == 11 and dialogue["statistic"] == "kappa"
    assert dialogue["value"] is not None
    masked_dialogue = next(s for s in masked.agreement["stages"] if s["stage"] == "dialogue")
    assert masked_dialogue["reviewers"] == ["reviewer-2", "reviewer-1"]
    assert masked_dialogue["value"] == dialogue["value"]
    card = masked.card()
    assert f"| dialogue | reviewer-2, reviewer-1 | 11 | kappa | {dialogue['value']:.2f} |" in card
    assert "dr_a" not in card and "dr_b" not in card
