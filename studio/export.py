"""`studio export`: accepted records out, the reviewer's edits winning over the LLM originals.

`cactus-jsonl` writes exactly the seven CACTUS columns, so import → accept → export round-trips.
Files are written to a temporary name and renamed, with owner-only permissions (clinical data).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from studio.errors import BadInputError, StudioError
from studio.model import CACTUS_COLUMNS, STAGES, Stage
from studio.store import RecordView, Store

EXPORT_FORMATS = ("cactus-jsonl", "sft-jsonl", "hf")


def cactus_row(record: RecordView, *, include_notes: bool = False) -> dict[str, Any]:
    """One accepted record as a CACTUS row (current text of each stage)."""
    row: dict[str, Any] = {
        "thought": record.seed.thought,
        "patterns": ", ".join(record.seed.patterns),
        "intake_form": record.text(Stage.INTAKE_FORM),
        "cbt_technique": record.text(Stage.CBT_TECHNIQUE),
        "cbt_plan": record.text(Stage.CBT_PLAN),
        "attitude": record.attitude,
        "dialogue": record.text(Stage.DIALOGUE),
    }
    assert tuple(row) == CACTUS_COLUMNS
    if include_notes:
        row["notes"] = {
            "record": record.note,
            **{
                stage.value: record.stages[stage].note for stage in STAGES if stage in record.stages
            },
        }
    return row


def export_records(store: Store, out: str | Path, *, fmt: str, include_notes: bool = False) -> int:
    """Write accepted records to `out`; returns how many were written."""
    if fmt not in EXPORT_FORMATS:
        raise BadInputError(
            f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}"
        )
    if fmt in ("sft-jsonl", "hf"):
        if include_notes:
            raise BadInputError("--include-notes goes with --format cactus-jsonl only")
        return export_sft_dataset(store, out, fmt=fmt)
    if Path(out).is_dir():
        raise BadInputError(f"{out}: is a folder; cactus-jsonl writes one file (give a file name)")
    rows = (cactus_row(r, include_notes=include_notes) for r in store.accepted_records())
    return write_jsonl(out, rows)


def export_sft_dataset(store: Store, out: str | Path, *, fmt: str, context: str = "history") -> int:
    """The training dataset (`studio.train.dataset`) as JSONL or a `save_to_disk` folder.

    `sft-jsonl`: one prompt/completion row per line with `record_id`, `turn` and `split`.
    `hf`: a `DatasetDict` with `train` and `validation` splits. Returns the number of records.
    """
    from studio.train.dataset import build_sft_dataset

    dataset = build_sft_dataset(store.accepted_records(), context=context)
    splits = {
        "train": [e.export_row("train") for e in dataset.train],
        "validation": [e.export_row("validation") for e in dataset.validation],
    }
    if fmt == "sft-jsonl":
        write_jsonl(out, iter(splits["train"] + splits["validation"]))
    else:
        save_dataset_dict(Path(out), splits)
    return dataset.n_records


def save_dataset_dict(out: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    """`datasets.DatasetDict.save_to_disk`, written beside `out` and then moved into place."""
    import shutil

    from datasets import Dataset, DatasetDict

    if out.exists() and not (out.is_dir() and _replaceable_dataset_folder(out)):
        raise BadInputError(
            f"{out}: exists and is not an earlier dataset export; choose a new folder"
        )
    rows = [row for split in splits.values() for row in split]
    features = Dataset.from_list(rows).features if rows else None
    dataset = DatasetDict(
        {name: Dataset.from_list(split, features=features) for name, split in splits.items()}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dataset.save_to_disk(str(tmp))
        _make_private(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replaceable_dataset_folder(path: Path) -> bool:
    return not any(path.iterdir()) or (path / "dataset_dict.json").is_file()


def _make_private(folder: Path) -> None:
    """Owner-only permissions, as for every export (clinical data)."""
    folder.chmod(0o700)
    for item in folder.rglob("*"):
        item.chmod(0o700 if item.is_dir() else 0o600)


def write_jsonl(out: str | Path, rows: Iterator[dict[str, Any]]) -> int:
    path = Path(out)
    tmp = path.with_name(f".{path.name}.part")
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StudioError(f"{path}: cannot write the export ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            for row in rows:
                fh.write(orjson.dumps(row))
                fh.write(b"\n")
                count += 1
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
