"""What every `studio` command shares: which database `--db` means, error handling, opening the
store.

Which database, in one place for every command (synth and train included): the subcommand's own
`--db`, else the group's (`studio --db X COMMAND`), else `STUDIO_DB`, else `./studio.db`. The
same for `--reviewer`: the subcommand's, else the group's, else `STUDIO_REVIEWER`, else the OS user.
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from studio.errors import BadInputError, DatabaseError, StudioError
from studio.model import BackendName, SynthMode

if TYPE_CHECKING:
    from studio.store import Store

DEFAULT_DB = "studio.db"
#: `--backend` and the like: the names of `BackendName` (values, so click shows `groq`, not `GROQ`).
BACKEND_CHOICE = click.Choice([backend.value for backend in BackendName])
#: `--mode`: the names of `SynthMode`.
MODE_CHOICE = click.Choice([mode.value for mode in SynthMode])
DB_ENVVAR = "STUDIO_DB"
F = TypeVar("F", bound=Callable[..., Any])

# Where the group's explicit options wait for the subcommand (click shares `meta` along the chain).
_GROUP_DB = "studio.group_db"
_GROUP_REVIEWER = "studio.group_reviewer"

START_HINT = "create one with `studio demo` (a demo database) or `studio import FILE…` (your seeds)"


def resolve_db(own: Path | None, ctx: click.Context | None = None) -> Path:
    """The database a command works on: its own `--db`, the group's, `STUDIO_DB`, `studio.db`."""
    return own or group_db(ctx) or Path(os.environ.get(DB_ENVVAR) or DEFAULT_DB)


def group_db(ctx: click.Context | None = None) -> Path | None:
    """The group-level `--db` (`studio --db PATH COMMAND`), if one was given."""
    ctx = ctx or click.get_current_context(silent=True)
    value = ctx.meta.get(_GROUP_DB) if ctx is not None else None
    return Path(value) if value else None


def group_reviewer(ctx: click.Context | None = None) -> str | None:
    """The group-level `--reviewer` (`studio --reviewer NAME COMMAND`), if one was given."""
    ctx = ctx or click.get_current_context(silent=True)
    value = ctx.meta.get(_GROUP_REVIEWER) if ctx is not None else None
    return str(value) if value else None


class MissingDatabaseError(click.ClickException):
    """Raised while the command line is parsed, so nothing (not even a lock file) is created;
    shown as one line, like every other studio error."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def missing_database_message(db: Path) -> str:
    """Why `db` is not a database file, in the words that point at the fix."""
    if db.is_dir():
        return f"{db}: is a folder, not a database file"
    if db.is_symlink():
        try:
            db.resolve(strict=True)
        except RuntimeError:  # Python 3.11-3.12 report a loop this way
            return f"{db}: a symlink loop (the link points back at itself)"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"{db}: a symlink loop (the link points back at itself)"
            return f"{db}: a broken symlink (to {db.readlink()}); {START_HINT}"
    return f"{db}: no such database; {START_HINT}"


def require_database(db: Path) -> None:
    """Refuse a database file that does not exist (exit 2), naming how to start one."""
    if not db.is_file():
        raise BadInputError(missing_database_message(db))


def _resolve_existing(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    db = resolve_db(value, ctx)
    if ctx.resilient_parsing:  # shell completion: no checks
        return db
    if not db.is_file():
        raise MissingDatabaseError(missing_database_message(db))
    return db


def _resolve_any(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    return resolve_db(value, ctx)


_DB_HELP = (
    "The SQLite database file [default: the group's --db, else $STUDIO_DB, else ./studio.db]."
)


def db_option(func: F) -> F:
    """`--db` for a command that works on an existing database (refused at once if missing)."""
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_resolve_existing,
        help=_DB_HELP,
    )(func)


def new_db_option(func: F) -> F:
    """`--db` for a command that creates the database if needed (import; owner-only file)."""
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_resolve_any,
        help=_DB_HELP + " Created (owner-only) if missing.",
    )(func)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta[key] = value
        return value

    return callback


def group_options(func: F) -> F:
    """The group's `--db` and `--reviewer`: given before the command, they reach every command."""
    func = click.option(
        "--reviewer",
        default=None,
        callback=_remember(_GROUP_REVIEWER),
        help="Your name on decisions, for every command [env STUDIO_REVIEWER, else the OS user].",
    )(func)
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_remember(_GROUP_DB),
        help="The SQLite database for every command [env STUDIO_DB, else ./studio.db].",
    )(func)


def handle_errors(func: F) -> F:
    """Turn `StudioError`s, and any SQLite error that escapes, into one line on stderr and their
    exit code: a person sees what is wrong and what to do, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StudioError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except sqlite3.Error as exc:
            db = kwargs.get("db")
            error = database_error(Path(db) if db else None, exc)
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)

    return wrapper  # type: ignore[return-value]


def database_error(db: Path | None, exc: sqlite3.Error) -> StudioError:
    """A SQLite error as one line naming the file, with what to do: exit 2 when the path itself
    is wrong (SQLite cannot open it), else 1."""
    from studio.store.connect import explain_database_error

    message = (f"{db}: " if db else "") + explain_database_error(exc)
    if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_CANTOPEN"):
        return BadInputError(message)
    return DatabaseError(message)


@contextmanager
def open_store(
    db: Path, *, must_exist: bool = False, read_only_ok: bool = False
) -> Iterator[Store]:
    """Open (or, unless `must_exist`, create) a database; a bad file is one clear line, not a
    traceback, also when SQLite fails later, inside the `with`. Commands that only read pass
    `must_exist`, so a mistyped path creates nothing, and `read_only_ok`, so a database that may
    not be changed here (write-protected, read-only folder or filesystem) is still read."""
    from studio.store import Store
    from studio.store.connect import write_problem

    if must_exist:
        require_database(db)
    elif not read_only_ok:
        problem = write_problem(db)
        if problem:
            raise DatabaseError(
                f"{db}: cannot be changed here: {problem}; make it writable, or copy it somewhere "
                "writable (stats, export and review can still read it)"
            )
    try:
        store = Store.open(db) if read_only_ok else Store(db)
    except StudioError as exc:
        message = str(exc)
        raise type(exc)(message if message.startswith(f"{db}:") else f"{db}: {message}") from exc
    except OSError as exc:  # the file or its folder cannot be created: a bad path (exit 2)
        raise BadInputError(
            f"{db}: cannot create or open the database ({exc.strerror or exc})"
        ) from exc
    except sqlite3.Error as exc:
        raise database_error(db, exc) from exc
    try:
        yield store
    except sqlite3.Error as exc:
        raise database_error(db, exc) from exc
    finally:
        store.close()


def progress_bar(*, info: bool, transient: bool) -> Any:
    """The studio's one progress bar (a `rich.progress.Progress`): description, bar, n/m done,
    time elapsed, and with `info` a free-text field per task. rich is imported here, on use."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, transient=transient)


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What the `batch_options` flags asked for, passed whole to `studio.commands.synth_batch`
    and `studio.commands.judge_batch`."""

    batch: bool
    """`--batch`: through the server's Batch API."""
    wait: bool
    """`--wait`: stay until every request is back."""
    cancel: bool
    """`--cancel`: cancel the batches in flight."""
    dry_run: bool
    """`--dry-run`: requests, tokens and price; send nothing."""
    completion_window: str
    """How long the server may take ("24h")."""
    poll_interval: float
    """Seconds between polls while waiting (at first; it backs off while nothing moves)."""

    @classmethod
    def take(cls, options: dict[str, Any]) -> BatchOptions:
        """The batch flags, taken out of a command's keyword arguments (the rest are settings)."""
        return cls(**{f.name: options.pop(f.name) for f in fields(cls)})


def batch_options(done: str) -> Callable[[F], F]:
    """The Batch API options that `studio synth` and `studio judge` share (`BatchOptions.take`
    reads them back); `done` names what the batches bring back ("stage", "judgement")."""
    options = [
        click.option(
            "--batch",
            is_flag=True,
            help="Through the server's Batch API (half the price): submit what is ready, collect"
            " what is finished, return. Run it again to go on.",
        ),
        click.option("--wait", is_flag=True, help=f"--batch, and stay until every {done} is back."),
        click.option("--cancel", is_flag=True, help="Cancel the batches in flight."),
        click.option(
            "--dry-run", is_flag=True, help="--batch: requests, tokens and price; sends nothing."
        ),
        click.option(
            "--completion-window",
            default="24h",
            show_default=True,
            help="--batch: how long the server may take (Groq: 24h to 7d).",
        ),
        click.option("--poll-interval", type=float, default=5.0, hidden=True),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="STUDIO_CONFIG",
            help="TOML config file (default: ./studio.toml, then the user config folder).",
        ),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply
