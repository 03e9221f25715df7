"""Errors that the CLI turns into exit codes (0 success, 1 failure while working, 2 bad input)."""

from __future__ import annotations


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
