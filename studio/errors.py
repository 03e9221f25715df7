"""Errors that the CLI turns into exit codes (0 success, 1 failure while working, 2 bad input)."""

from __future__ import annotations

from collections.abc import Sequence


class StudioError(Exception):
    """Something went wrong while working (exit code 1)."""

    exit_code = 1


class BadInputError(StudioError):
    """The user's input or configuration is wrong; the message says what and where (exit 2)."""

    exit_code = 2


class DatabaseError(StudioError):
    """The database cannot be used as it is (too new, damaged, read-only, disk full); the message
    says what is wrong and what to do (exit 1)."""


class ReadOnlyDatabaseError(DatabaseError):
    """A write was asked of a store opened read-only (`Store.read_only`); refused before SQLite is
    asked, so nothing is half-written."""


# -- the domain's refusals: each is a StudioError, so `handle_errors` maps it to its exit code ---


class ConflictError(StudioError):
    """What was about to be written was changed by someone else since it was read; nothing was
    overwritten (exit 1: nobody's input was wrong, run it again on what is there now)."""


class EditConflict(ConflictError, ValueError):
    """A reviewer's edit was based on a text that is no longer the stage's text.

    Also a `ValueError`, as it was before it joined this family."""


class UndoConflict(ConflictError):
    """The decision to undo was overtaken by a later change (a regeneration, another reviewer);
    nothing was changed."""


class StageChanged(ConflictError):
    """The stage changed (a reviewer's decision or edit, another run) while its answer was being
    generated; nothing was written, so that work is not lost."""


class RatingChanged(ConflictError):
    """The rating to undo was changed since (by a later rating)."""


class InvalidStage(BadInputError):
    """A reviewer tried to accept a stage whose text breaks its stage's rule (exit 2)."""


class NotAssigned(BadInputError):
    """A reviewer tried to decide a record that `studio assign` gave two or more others to
    review: only they decide it (exit 2)."""


class NoBackend(BadInputError):
    """No synthesis backend is configured (the message says why; exit 2: configuration)."""


class CallFailed(StudioError):
    """A call to a model failed after its last attempt (or with an error not worth retrying)
    (exit 1: nobody's input was wrong; the stage keeps the full message)."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason
        """A short, countable cause for the run's summary (the stage keeps the full message)."""


class FormInvalid(BadInputError, ValueError):
    """A form's values cannot make a run (exit 2); one message per problem, for the form to show
    beside its fields. Also a `ValueError`, as it was before it joined this family."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)
