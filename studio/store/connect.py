"""Opening the SQLite file: read-write (WAL, created owner-only) or read-only, and what to tell a
person when SQLite refuses.

Read-only exists for a database someone may read but not change: a write-protected file, a folder
or filesystem that is not writable (a shared drive, a backup). SQLite's `mode=ro` still needs the
WAL index (`-shm`) beside the file; when the folder cannot hold one, `immutable=1` reads the main
file without locking, which is safe exactly because nobody can write there either.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 16384
SIDE_FILES = ("-wal", "-shm", "-journal")


def create_private_file(path: Path) -> None:
    """Create an empty database file readable by its owner only (clinical data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def write_problem(path: Path) -> str:
    """Why the database at `path` cannot be changed here ("" when it can): a write-protected file,
    a folder that is not writable, or a read-only filesystem. A missing file in a missing folder
    is writable as far as this goes (it will be created)."""
    try:
        probe = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return "it is on a read-only filesystem"
        if path.exists() and not os.access(path, os.W_OK):
            return "the file is write-protected"
        folder = path.absolute().parent
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return "its folder is not writable"
    except OSError:
        pass  # cannot even look: opening it will say what is wrong
    return ""


def connect(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """One connection with the studio's settings. Read-write creates the file (owner-only), sets
    WAL; read-only writes nothing at all and refuses writes (`query_only`)."""
    memory = str(path) == ":memory:"
    if read_only and not memory:
        conn = sqlite3.connect(
            _read_only_uri(Path(path)),
            uri=True,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only = ON")
    else:
        if not memory:
            create_private_file(Path(path))
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        # Stage texts are kilobytes long: 16 KiB pages keep most of them off overflow chains
        # (a third faster on a CACTUS-sized import). Only takes effect on a new, empty file.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not read_only and not memory:
            enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only_uri(path: Path) -> str:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    folder = path.absolute().parent
    side_files_present = all(Path(f"{path}{s}").exists() for s in ("-wal", "-shm"))
    if not side_files_present and not os.access(folder, os.W_OK | os.X_OK):
        # Without a -shm file SQLite cannot open a WAL database read-only unless told that the
        # file cannot change under it; in an unwritable folder no writer can exist to change it.
        uri += "&immutable=1"
    return uri


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL once per database file. Switching needs a moment of exclusive access and
    SQLite answers "locked" at once instead of waiting, so two processes opening a new database
    together retry here (the busy timeout covers everything else)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def explain_database_error(exc: sqlite3.Error) -> str:
    """One sentence for a person: what is wrong with the database and what to do.

    Keyed on SQLite's own result code (`sqlite_errorname`), never on the message alone, so a
    full disk reads as a full disk even when it surfaces inside another statement."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    for code, words, explanation in _EXPLANATIONS:
        if name.startswith(code) or words in text:
            return explanation.format(text=text, busy_s=BUSY_TIMEOUT_S)
    return f"not a usable CBT Studio database ({text})"


#: SQLite's result code, words of its message that say the same, and what to tell a person
#: (`{text}`: SQLite's message); the first that matches answers.
_EXPLANATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "SQLITE_FULL",
        "disk is full",
        "the disk is full (database or disk is full); free some space and run again — "
        "the unfinished change was not saved, everything before it is kept",
    ),
    (
        "SQLITE_CORRUPT",
        "malformed",
        "the database file is damaged ({text}); restore it from a backup, or save what is "
        "readable with `sqlite3 FILE .recover | sqlite3 recovered.db`",
    ),
    (
        "SQLITE_NOTADB",
        "not a database",
        "not a usable CBT Studio database ({text}); check the path",
    ),
    (
        "SQLITE_READONLY",
        "readonly database",
        "the database cannot be changed here ({text}); make the file and its folder "
        "writable, or copy it somewhere writable (stats, export and review can still read it)",
    ),
    (
        "SQLITE_CANTOPEN",
        "unable to open",
        "cannot open the database file ({text}); check the path and its permissions",
    ),
    (
        "SQLITE_BUSY",
        "locked",
        "the database stayed locked by another process for {busy_s:.0f} s ({text}); "
        "run again when it is done",
    ),
    (
        "SQLITE_IOERR",
        "disk I/O",
        "the disk reported an error ({text}); check the disk and its free space",
    ),
)
