"""The SQLite store (sqlite-utils) and its migrations."""

from studio.store.store import (
    AddResult,
    EditConflict,
    PreparedRow,
    RecordView,
    StageView,
    Store,
    prepare_row,
)

__all__ = [
    "AddResult",
    "EditConflict",
    "PreparedRow",
    "RecordView",
    "StageView",
    "Store",
    "prepare_row",
]
