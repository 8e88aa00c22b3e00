"""Runs a command's work on the event loop, with the database open when it needs one, and turns what
can go wrong there (a bad setting, a refused account, an unreachable database) into one line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from authsite.cli.failures import BadSetting, CommandFailed

if TYPE_CHECKING:
    from authsite.config import Settings
    from authsite.db import Database
    from authsite.passwords import PasswordHasher


def check_data_dir(settings: Settings) -> None:
    """The data folder is usable, when anything lives in it: the default SQLite file, the generated
    key or the outbox (a site with all three set elsewhere needs none, a read-only container say)."""
    from authsite.start_checks import data_dir_problem

    if settings.database_url and settings.secret_key and settings.smtp_url:
        return
    if problem := data_dir_problem(settings.data_dir):
        raise BadSetting(problem)


def run_with_database(
    settings: Settings, work: Callable[[Database, PasswordHasher], Awaitable[None]], *, upgrade: bool = True
) -> None:
    from authsite.db import Database
    from authsite.passwords import PasswordHasher

    check_data_dir(settings)

    async def run() -> None:
        # In a thread: a command has no pages to keep fast, and one hash needs no process of its own.
        db, hasher = Database(settings.resolved_database_url), PasswordHasher(in_processes=False)
        try:
            if upgrade:
                await db.create_schema()
            await work(db, hasher)
        finally:
            hasher.close()
            await db.dispose()

    run_to_end(settings, run())


def run_to_end(settings: Settings, work: Awaitable[None]) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from authsite import accounts
    from authsite.app import StartupError

    try:
        asyncio.run(work)
    except StartupError as exc:
        raise BadSetting(f"invalid setting {exc}") from None
    except accounts.AccountError as exc:
        raise CommandFailed(f"{exc.field}: {exc.message}") from None
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise CommandFailed(f"cannot open the database {_safe_url(settings)}: {_first_line(exc)}") from None


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
