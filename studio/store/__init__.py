"""The SQLite store (sqlite-utils) and its migrations."""

from studio.store.records import RecordView
from studio.store.store import EditConflict, StageView, Store

__all__ = ["EditConflict", "RecordView", "StageView", "Store"]
