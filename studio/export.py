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

from studio.errors import BadInputError
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
    if fmt != "cactus-jsonl":
        raise BadInputError(
            f"export format {fmt!r} needs the training dataset builder (`studio.train`), "
            "which is not part of this version yet; use --format cactus-jsonl"
        )
    rows = (cactus_row(r, include_notes=include_notes) for r in store.accepted_records())
    return write_jsonl(out, rows)


def write_jsonl(out: str | Path, rows: Iterator[dict[str, Any]]) -> int:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    count = 0
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
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
