"""`studio review`: the clinician review app (keyboard-first accept / edit / reject)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from studio.commands.common import db_option, group_reviewer, handle_errors, open_store

if TYPE_CHECKING:
    from studio.synth import Backend, SynthSettings


def resolve_reviewer(reviewer: str | None) -> str:
    """`--reviewer`, else the group's (`studio --reviewer NAME review`), else `STUDIO_REVIEWER`,
    else the OS user name."""
    import getpass

    return reviewer or group_reviewer() or os.environ.get("STUDIO_REVIEWER") or getpass.getuser()


def is_interactive() -> bool:
    """A person at a terminal (not a pipe, a test runner or CI) can use the app."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def open_review(db: Path, reviewer: str | None = None, config_path: Path | None = None) -> None:
    """Run the review app on `db` until the reviewer quits.

    The database must exist (the app never creates an empty one) and open cleanly: a database
    that is too new, damaged or unreadable is one line here, before the screen is taken over.
    One that may not be changed opens read-only (`Store.open`)."""
    with open_store(db, must_exist=True, read_only_ok=True):
        pass

    from studio.tui.startup import configure_process

    configure_process()  # before textual is imported: it reads the frame rate then
    from studio.settings import load_studio_settings
    from studio.tui import make_app
    from studio.tui.settings import ReviewSettings

    name = resolve_reviewer(reviewer)
    from studio.team.guidelines import guidelines_path

    studio_settings = load_studio_settings(config_path)
    keymap = studio_settings.keymap  # the file's [keymap], then STUDIO_KEYMAP

    def synthesis() -> tuple[Backend, SynthSettings]:
        # Called on the first `r`: the LLM SDKs load then, not at start-up.
        from studio.synth import SynthSettings, make_backend

        settings = SynthSettings.load(config_path).validate()
        return make_backend(settings), settings

    app = make_app(
        db,
        reviewer=name,
        backend_factory=synthesis,
        settings=ReviewSettings(
            reviewer=name, keymap=keymap, guidelines=guidelines_path(studio_settings)
        ),
    )
    app.run()
    if app.failure is not None:  # an unusable database: its reason, now the terminal is back
        raise app.failure


@click.command("review")
@db_option
@click.option(
    "--reviewer",
    help="Your name on every decision [env STUDIO_REVIEWER, else your OS user name].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STUDIO_CONFIG",
    help="TOML config with the synthesis backend that `r` (regenerate) uses, as for `studio synth`.",
)
@handle_errors
def review_command(db: Path, reviewer: str | None, config_path: Path | None) -> None:
    """Open the review app: a queue of records, each stage accepted, edited or rejected from the
    keyboard (? lists the keys). Decisions are saved at once; unsaved edits are kept as drafts.
    """
    open_review(db, reviewer, config_path)
