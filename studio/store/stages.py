"""A record's stage rows: how they are read, snapshotted for the audit log, and written.

The one owner of the `stages` columns. `StageView`'s fields after `record_id` and `stage` are the
table's columns, in order; `STAGE_FIELDS` is derived from them, and the SELECT list, the row
reader and `write_stage` all follow it. Adding a stage column is a migration plus one field here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from studio.model import Stage, StageStatus

if TYPE_CHECKING:
    from studio.store.store import Store


@dataclass(frozen=True, slots=True)
class StageView:
    record_id: int
    stage: Stage
    status: StageStatus
    original_text: str | None
    edited_text: str | None
    note: str = ""
    error: str = ""
    model: str = ""
    prompt_hash: str = ""
    template_version: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    updated_at: str = ""

    @property
    def text(self) -> str:
        """The current text: the reviewer's edit if there is one, else the original."""
        if self.edited_text is not None:
            return self.edited_text
        return self.original_text or ""


def columns_of(view_type: type[StageView]) -> tuple[str, ...]:
    """The writable columns: every field but `record_id` and `stage` (the `name` column), which
    say which row."""
    return tuple(f.name for f in fields(view_type))[2:]


STAGE_FIELDS: tuple[str, ...] = columns_of(StageView)
"""The writable columns of `stages`, in `StageView` order."""

STAGE_COLUMNS = ", ".join(("record_id", "name", *STAGE_FIELDS))
"""The SELECT list that `stage_from_row` reads (the store reads it from here at query time)."""

REVIEW_FIELDS: tuple[str, ...] = ("status", "edited_text", "note")
"""What a reviewer's decision changes: the before/after of review events, and what undo checks."""


def stage_from_row(row: Sequence[Any]) -> StageView:
    """A row selected with `STAGE_COLUMNS`."""
    values = dict(zip(STAGE_FIELDS, row[2:], strict=True))
    values["status"] = StageStatus(values["status"])
    return StageView(record_id=row[0], stage=Stage(row[1]), **values)


def snapshot(view: StageView, names: Iterable[str] = REVIEW_FIELDS) -> dict[str, Any]:
    """Some of a stage's fields as JSON-ready values, for an audit event's before/after."""
    return {name: view.status.value if name == "status" else getattr(view, name) for name in names}


def write_stage(
    store: Store,
    record_id: int,
    stage: Stage,
    *,
    touch: bool = True,
    if_updated_at: str | None = None,
    **values: Any,
) -> bool:
    """Set some columns of one stage row; True if the row was written.

    The one UPDATE of `stages`: every writer (review, synthesis, batches, undo) comes here.
    `touch` stamps `updated_at` with the store's clock; `if_updated_at` writes only if the row
    was not changed since that stamp (a batch answer returned late). Enum values are stored by
    value. Joins the caller's transaction, or opens one.
    """
    unknown = sorted(set(values) - set(STAGE_FIELDS))
    if unknown:
        raise ValueError(f"stages has no column {', '.join(unknown)}")
    if touch:
        values["updated_at"] = store.now()
    if not values:
        raise ValueError("write_stage needs at least one column to set")
    names = [name for name in STAGE_FIELDS if name in values]
    params = [_sql_value(values[name]) for name in names]
    sql = (
        f"UPDATE stages SET {', '.join(f'{n} = ?' for n in names)} WHERE record_id = ? AND name = ?"
    )
    params += [record_id, stage.value]
    if if_updated_at is not None:
        sql += " AND updated_at = ?"
        params.append(if_updated_at)
    with store.transaction() as conn:
        return conn.execute(sql, params).rowcount > 0


def _sql_value(value: Any) -> Any:
    return value.value if isinstance(value, StageStatus) else value
