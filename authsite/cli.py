"""`python run.py [command]`: serve the site, or manage users from the shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

    from authsite.config import Settings
    from authsite.db import Database
    from authsite.passwords import PasswordHasher

# Commands import the domain (SQLAlchemy, pydantic) when they run, not here: every uvicorn worker
# re-imports this module (its parent's __main__) before it can answer its first health check.

EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


class CommandFailed(Exception):
    """Ends a command with one line on stderr and exit status 1."""


class BadSetting(CommandFailed):
    """A setting that parsed but cannot work (a weak admin password): exit status 2."""


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from authsite.config import Settings

    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"authsite: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        return args.handler(settings, args) or 0
    except CommandFailed as exc:
        print(f"authsite: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS if isinstance(exc, BadSetting) else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid variable and what is wrong with it."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            problems.append(f"invalid setting AUTHSITE_{str(error['loc'][0]).upper()}: {message}")
        else:
            problems.append(f"invalid settings: {message}")
    return "; ".join(problems)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description="authsite: serve the site (the default) or manage users."
    )
    parser.set_defaults(handler=serve)
    _add_serve_options(parser, default=1)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="serve the site on AUTHSITE_HOST:AUTHSITE_PORT (default)")
    # SUPPRESS: `run.py --workers 2 serve` keeps the 2 given before the command.
    _add_serve_options(serve_cmd, default=argparse.SUPPRESS)
    serve_cmd.set_defaults(handler=serve)

    create = commands.add_parser("create-user", help="create a user")
    create.add_argument("name")
    create.add_argument("--email", help="the user's email address, taken as confirmed (you vouch for it)")
    create.add_argument("--scope", action="append", default=[], help="extra scope, e.g. admin or super; repeatable")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(handler=create_user)

    set_pw = commands.add_parser("set-password", help="set a user's password and end their sessions")
    set_pw.add_argument("name")
    set_pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    set_pw.set_defaults(handler=set_password)

    set_scopes_cmd = commands.add_parser(
        "set-scopes", help="set a user's scopes to exactly those given (and authenticated); keeps one active super"
    )
    set_scopes_cmd.add_argument("name")
    set_scopes_cmd.add_argument("--scope", action="append", default=[], help="a scope to hold, e.g. admin or super; repeatable")
    set_scopes_cmd.set_defaults(handler=set_scopes)

    mfa = commands.add_parser(
        "mfa-reset", help="remove a user's second factors (authenticator app, passkeys, recovery codes) and end their sessions"
    )
    mfa.add_argument("name")
    mfa.set_defaults(handler=mfa_reset)

    link = commands.add_parser("reset-link", help="print a one-time password-reset link (for sites without mail)")
    link.add_argument("name")
    link.set_defaults(handler=reset_link)

    end = commands.add_parser("end-sessions", help="log a user, or with --all everyone, out everywhere")
    who = end.add_mutually_exclusive_group(required=True)
    who.add_argument("name", nargs="?")
    who.add_argument("--all", action="store_true", help="end every session of every user")
    end.set_defaults(handler=end_sessions)

    db_cmd = commands.add_parser("db", help="database schema: `db upgrade` or `db current`")
    db_actions = db_cmd.add_subparsers(title="actions", metavar="ACTION", required=True)
    db_actions.add_parser("upgrade", help="bring the schema to the newest migration").set_defaults(handler=db_upgrade)
    db_actions.add_parser("current", help="print the schema's migration and the newest one").set_defaults(handler=db_current)
    return parser


def _add_serve_options(parser: argparse.ArgumentParser, *, default) -> None:
    parser.add_argument(
        "--workers", type=_positive, default=default, metavar="N",
        help="worker processes sharing the database (default 1)",
    )


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(value)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import logging.config

    import uvicorn

    from authsite.logs import logging_config

    config = logging_config(settings.log_level)
    logging.config.dictConfig(config)
    # Start once before serving so a bad database URL, key file or admin
    # password ends in one clear line rather than a server traceback; this
    # also migrates the schema before any worker starts.
    _run(settings, _start_and_stop_site(settings))
    from authsite import serving

    uvicorn.run(
        **serving.uvicorn_options(settings, workers=args.workers), log_config=config, log_level=settings.log_level
    )
    return 0


def create_user(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events
    from authsite.models import DEFAULT_SCOPES, utcnow

    password = _read_new_password(args.password_stdin)
    scopes = [*DEFAULT_SCOPES, *args.scope]

    async def create(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.create_user(
                db=session, hasher=hasher, username=args.name, password=password, email=args.email, scopes=scopes
            )
            if user.email:
                # The operator typed the address: their word stands for the mailed link.
                user.email_confirmed_at = utcnow()
                session.add(user)
                await session.commit()
        await events.AuditLog(db).record(events.Kind.USER_CREATED, user_id=user.id, via="cli")
        print(f"created user {user.username!r} (id {user.id}) with scopes {', '.join(user.scopes)}")

    _run_with_database(settings, create)
    return 0


def set_password(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events

    password = _read_new_password(args.password_stdin)

    async def change(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            await accounts.set_password(db=session, hasher=hasher, user=user, password=password)
        await events.AuditLog(db).record(events.Kind.PASSWORD_CHANGED, user_id=user.id, via="cli")
        print(f"password changed for {user.username!r}; their sessions have ended")

    _run_with_database(settings, change)
    return 0


def set_scopes(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, user_admin

    try:
        scopes = user_admin.clean_scopes(args.scope)
    except user_admin.AdminInvalid as exc:
        raise CommandFailed(str(exc)) from None

    async def change(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
        if user is None:
            raise CommandFailed(f"no user named {args.name!r}")
        # The operator is bound by one rule only: an active super user remains.
        work = partial(user_admin.change_user, actor_id=None, user_id=user.id, scopes=scopes, active=None,
                       grantable=frozenset())
        try:
            done = await db.run(work)
        except (user_admin.AdminInvalid, user_admin.NoSuchUser) as exc:
            raise CommandFailed(f"{user.username!r} keeps their scopes: {exc}") from None
        if not done.scopes_changed:
            print(f"{done.username!r} already holds {', '.join(scopes)}; nothing changed")
            return
        await events.AuditLog(db).record(events.Kind.SCOPES_CHANGED, user_id=user.id, via="cli",
                                         before=done.before, after=scopes)
        print(f"{done.username!r} now holds {', '.join(scopes)} (before: {', '.join(done.before)}); "
              "any reset link pending for them is void")

    _run_with_database(settings, change)
    return 0


def reset_link(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, resets

    async def make_link(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            if not user.is_active:
                raise CommandFailed(f"{user.username!r} is deactivated; a reset link would not let them in")
            token = await resets.create_reset_token(db=session, user=user)
        await events.AuditLog(db).record(events.Kind.RESET_REQUESTED, user_id=user.id, via="cli")
        print(f"{settings.public_url}/auth/reset/{token}")
        print(f"(valid for one hour, once; for {user.username!r})", file=sys.stderr)

    _run_with_database(settings, make_link)
    return 0


def mfa_reset(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events
    from authsite.factors.second_factors import remove_all_factors
    from authsite.mail import Mailer
    from authsite.notices import Notice, Notices, Where

    async def reset(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
        if user is None:
            raise CommandFailed(f"no user named {args.name!r}")
        had = await db.run(partial(remove_all_factors, user_id=user.id))
        await events.AuditLog(db).record(events.Kind.MFA_RESET, user_id=user.id, via="cli", had_factors=had)
        if not had:
            print(f"{user.username!r} had no second factor; their sessions have ended")
            return
        mailer = Mailer(smtp_url=settings.smtp_url, outbox_dir=settings.data_dir / "outbox")
        await mailer.start()
        Notices(mailer=mailer, site=settings.site_name, base_url=settings.public_url).send(
            Notice.FACTORS_RESET, to=user.email, username=user.username, where=Where(ip="the server's shell", user_agent=None),
        )
        await mailer.stop()
        print(f"removed every second factor of {user.username!r} and ended their sessions; "
              "they can log in with their password and set up a new one")

    _run_with_database(settings, reset)
    return 0


def end_sessions(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, sessions

    async def end(db: Database, hasher: PasswordHasher) -> None:
        audit = events.AuditLog(db)
        async with db.sessionmaker() as session:
            if args.all:
                count = await sessions.end_all_sessions(db=session)
                await audit.record(events.Kind.SESSION_REVOKED, via="cli", everyone=True, count=count)
                print(f"ended {count} session(s): everyone must log in again")
                return
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            await sessions.end_user_sessions(db=session, user_id=user.id)
        await audit.record(events.Kind.SESSION_REVOKED, user_id=user.id, via="cli", all=True)
        print(f"ended every session of {user.username!r}")

    _run_with_database(settings, end)
    return 0


def db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import schema

    async def upgrade(db: Database, hasher: PasswordHasher) -> None:
        print(f"database is at migration {await schema.current_revision(db.engine)} (newest)")

    _run_with_database(settings, upgrade)  # opening the database upgrades it
    return 0


def db_current(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import schema

    async def show(db: Database, hasher: PasswordHasher) -> None:
        current, head = await schema.current_revision(db.engine), schema.head_revision()
        state = "up to date" if current == head else f"behind: run `python run.py db upgrade` to reach {head}"
        print(f"{current or 'empty'} ({state})")

    _run_with_database(settings, show, upgrade=False)
    return 0


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise CommandFailed("the two passwords differ")
    return password


async def _start_and_stop_site(settings: Settings) -> None:
    from authsite.app import AuthSite

    site = AuthSite(settings)
    try:
        await site.start()
    finally:
        await site.stop()


def _run_with_database(
    settings: Settings, work: Callable[[Database, PasswordHasher], Awaitable[None]], *, upgrade: bool = True
) -> None:
    from authsite.db import Database
    from authsite.passwords import PasswordHasher

    async def run() -> None:
        db, hasher = Database(settings.resolved_database_url), PasswordHasher()
        try:
            if upgrade:
                await db.create_schema()
            await work(db, hasher)
        finally:
            hasher.close()
            await db.dispose()

    _run(settings, run())


def _run(settings: Settings, work: Awaitable[None]) -> None:
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
