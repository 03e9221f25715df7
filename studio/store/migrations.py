"""Numbered SQL migrations from `db/migrations/NNNN_name.sql`, applied on open."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

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
    # Numbers may have gaps: features developed side by side each take a number of their own, and
    # a database gets every migration it has not applied yet, whatever order they arrived in.
    if len(set(versions)) != len(versions) or 1 not in versions:
        raise RuntimeError(f"migrations in {folder} must start at 0001 and use each number once")
    return found


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    schema_version(conn)  # creates the table on a new database
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_version")}


def migrate(conn: sqlite3.Connection, now: str, folder: Path | None = None) -> int:
    """Bring the database up to the newest migration; returns the resulting schema version.

    Each migration runs in its own IMMEDIATE transaction and re-checks the version inside it, so two
    processes opening a new database at once apply each migration exactly once.
    """
    migrations = available_migrations(folder)
    unknown = applied_versions(conn) - {m.version for m in migrations}
    if unknown:
        raise RuntimeError(
            f"this database has schema version {max(unknown)}, newer than this CBT Studio "
            f"({migrations[-1].version}); upgrade CBT Studio"
        )
    for migration in migrations:
        if migration.version in applied_versions(conn):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if migration.version in applied_versions(conn):
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
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


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
