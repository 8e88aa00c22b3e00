"""How a command fails: one line on stderr and an exit status."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


class CommandFailed(Exception):
    """Ends a command with one line on stderr and exit status 1."""


class BadSetting(CommandFailed):
    """A setting that parsed but cannot work (a weak admin password): exit status 2."""


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid variable, the value given (never a secret) and what is accepted."""
    from authsite.config import describe_settings_problem

    return "; ".join(describe_settings_problem(error) for error in exc.errors())
