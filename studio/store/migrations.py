"""Numbered SQL migrations from `db/migrations/NNNN_name.sql`, applied on open."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from studio.errors import DatabaseError
from studio.resources import migrations_dir

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def available_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or migrations_dir()
    found = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match[1]), path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations in {folder} must be numbered 0001, 0002, … without gaps")
    return found


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, now: str, folder: Path | None = None) -> int:
    """Bring the database up to the newest migration; returns the resulting schema version.

    Each migration runs in its own IMMEDIATE transaction and re-checks the version inside it, so two
    processes opening a new database at once apply each migration exactly once.
    """
    migrations = available_migrations(folder)
    current = schema_version(conn)
    _refuse_newer(current, len(migrations))
    for migration in migrations[current:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= migration.version:
                conn.execute("ROLLBACK")
                continue
            # executescript() would commit our transaction first, so run the statements one by one.
            for statement in _statements(migration.sql()):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (migration.version, now),
            )
            conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(conn)
            raise
    return schema_version(conn)


def check_schema(conn: sqlite3.Connection, folder: Path | None = None) -> int:
    """The schema version of a database opened read-only, which cannot be migrated: one that is
    not a CBT Studio database, older (needs a migration, a write) or newer is refused."""
    latest = len(available_migrations(folder))
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not has_table:
        raise DatabaseError(
            "not a CBT Studio database (no schema version); it cannot be set up read-only"
        )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = int(row[0] or 0)
    _refuse_newer(current, latest)
    if current < latest:
        raise DatabaseError(
            f"this database has schema version {current} and needs an upgrade to {latest}, "
            "which needs write access; open it once where it is writable"
        )
    return current


def _refuse_newer(current: int, latest: int) -> None:
    if current > latest:
        raise DatabaseError(
            f"this database has schema version {current}, newer than this CBT Studio "
            f"({latest}); upgrade CBT Studio to open it"
        )


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back after a failure without hiding it: SQLite has already rolled back by itself
    after some errors (a full disk: `database or disk is full`), and a ROLLBACK then raises
    "cannot rollback - no transaction is active", which would replace the real cause."""
    if not conn.in_transaction:
        return
    with contextlib.suppress(sqlite3.Error):  # the original error is the one worth reporting
        conn.execute("ROLLBACK")


def _statements(sql: str) -> list[str]:
    """Split a migration into complete statements (sqlite3.complete_statement knows the grammar)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise RuntimeError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements
