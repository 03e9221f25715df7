"""Errors that the CLI turns into exit codes (0 success, 1 failure while working, 2 bad input)."""

from __future__ import annotations


class StudioError(Exception):
    """Something went wrong while working (exit code 1)."""

    exit_code = 1


class BadInputError(StudioError):
    """The user's input or configuration is wrong; the message says what and where (exit 2)."""

    exit_code = 2
