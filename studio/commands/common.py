"""What every `studio` command shares: the `--db` option, error handling, opening the store."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from studio.errors import BadInputError, StudioError

if TYPE_CHECKING:
    from studio.store import Store

DEFAULT_DB = "studio.db"
F = TypeVar("F", bound=Callable[..., Any])


def db_option(func: F) -> F:
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="STUDIO_DB",
        default=DEFAULT_DB,
        show_default=True,
        show_envvar=True,
        help="The SQLite database file (created with owner-only permissions).",
    )(func)


def handle_errors(func: F) -> F:
    """Turn `StudioError`s into a one-line message on stderr and their exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StudioError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@contextmanager
def open_store(db: Path, *, must_exist: bool = False) -> Iterator[Store]:
    """Open (or, unless `must_exist`, create) a database; a bad file is a clear error, not a
    traceback. Commands that only read pass `must_exist`, so a mistyped path creates nothing."""
    import sqlite3

    from studio.store import Store

    if must_exist and not db.is_file():
        raise BadInputError(
            f"{db}: no such database (import something first, or try `studio demo`)"
        )
    try:
        store = Store(db)
    except OSError as exc:
        raise StudioError(f"{db}: cannot open the database ({exc})") from exc
    except sqlite3.DatabaseError as exc:
        raise StudioError(f"{db}: not a usable CBT Studio database ({exc})") from exc
    try:
        yield store
    finally:
        store.close()
