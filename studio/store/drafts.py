"""Drafts: a reviewer's unsaved edits of a stage, kept until they save or drop them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.model import Stage
from studio.store.store import Store


@dataclass(frozen=True, slots=True)
class Draft:
    """An unsaved edit of one stage by one reviewer."""

    record_id: int
    stage: Stage
    reviewer: str
    text: str
    base_text: str
    updated_at: str


def save_draft(
    store: Store, record_id: int, stage: Stage, text: str, *, reviewer: str, base_text: str = ""
) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO drafts (record_id, stage, reviewer, text, base_text, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, stage, reviewer)"
            # base_text stays what the draft was first written against.
            " DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
            (record_id, stage.value, reviewer, text, base_text, store.now()),
        )


def delete_draft(store: Store, record_id: int, stage: Stage, *, reviewer: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "DELETE FROM drafts WHERE record_id = ? AND stage = ? AND reviewer = ?",
            (record_id, stage.value, reviewer),
        )


def drafts(store: Store, reviewer: str, record_id: int | None = None) -> list[Draft]:
    """The reviewer's unsaved edits, newest first (of one record, or all)."""
    sql = "SELECT record_id, stage, reviewer, text, base_text, updated_at FROM drafts WHERE reviewer = ?"
    params: list[Any] = [reviewer]
    if record_id is not None:
        sql += " AND record_id = ?"
        params.append(record_id)
    return [
        Draft(row[0], Stage(row[1]), row[2], row[3], row[4], row[5])
        for row in store.conn.execute(sql + " ORDER BY updated_at DESC, record_id", params)
    ]
