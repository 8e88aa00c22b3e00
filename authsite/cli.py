"""`python run.py [command]` (also `authsite [command]` and `python -m authsite [command]`):
serve the site, or manage users from the shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

    from authsite.app import AuthSite
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

    args = _parser(program_name()).parse_args(argv)
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
    """One line naming each invalid variable, the value given (never a secret) and what is accepted."""
    from authsite.config import describe_settings_problem

    return "; ".join(describe_settings_problem(error) for error in exc.errors())


def program_name() -> str:
    """How this command was called, for its usage lines: `run.py`, `authsite` or `python -m authsite`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m authsite" if name in ("__main__.py", "-c", "-m", "") else name


ABOUT = "authsite: serve the site, or manage its users from the shell."
SETTINGS_NOTE = """\
With no command, serves the site: the same as the `serve` command.

Settings are AUTHSITE_* environment variables, also read from a .env file in the
working directory (see .env.example). The SQLite database and the generated secret
key live in ./data unless AUTHSITE_DATA_DIR says otherwise. Every setting is listed
in the Settings section of README.md. `COMMAND --help` tells more about each command."""
NAME_HELP = "the username (Alice, ALICE and alice are one name)"
STDIN_HELP = "read the password from standard input, one line (for scripts, and `docker exec` without -t)"


def _parser(prog: str = "run.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=ABOUT, epilog=SETTINGS_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(handler=serve, prog=prog)
    _add_serve_options(parser, default=1)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, summary: str, handler, parent=commands) -> argparse.ArgumentParser:
        found = parent.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        found.set_defaults(handler=handler, command=name)
        return found

    serve_cmd = command("serve", "serve the site on AUTHSITE_HOST:AUTHSITE_PORT (the default command)", serve)
    # SUPPRESS: `run.py --workers 2 serve` keeps the 2 given before the command.
    _add_serve_options(serve_cmd, default=argparse.SUPPRESS)

    create = command("create-user", "create a user; asks for the password twice, unless --password-stdin", create_user)
    create.add_argument("name", help="the new username: 3 to 32 letters, digits, '.', '_' or '-'")
    create.add_argument("--email", help="the user's email address, taken as confirmed (you vouch for it)")
    create.add_argument("--scope", action="append", default=[], help="extra scope, e.g. admin or super; repeatable")
    create.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)

    set_pw = command("set-password", "set a user's password and end their sessions", set_password)
    set_pw.add_argument("name", help=NAME_HELP)
    set_pw.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)

    set_scopes_cmd = command(
        "set-scopes", "set a user's scopes to exactly those given (and authenticated); keeps one active super", set_scopes
    )
    set_scopes_cmd.add_argument("name", help=NAME_HELP)
    set_scopes_cmd.add_argument("--scope", action="append", default=[], help="a scope to hold, e.g. admin or super; repeatable")

    mfa = command(
        "mfa-reset", "remove a user's second factors (authenticator app, passkeys, recovery codes) and end their sessions",
        mfa_reset,
    )
    mfa.add_argument("name", help=NAME_HELP)

    link = command("reset-link", "print a one-time password-reset link (for sites without mail)", reset_link)
    link.add_argument("name", help=NAME_HELP)

    end = command("end-sessions", "log a user, or with --all everyone, out everywhere", end_sessions)
    who = end.add_mutually_exclusive_group(required=True)
    who.add_argument("name", nargs="?", help=NAME_HELP)
    who.add_argument("--all", action="store_true", help="end every session of every user")

    db_cmd = command("db", "the database schema: `db upgrade` migrates it, `db current` shows its migration", None)
    db_actions = db_cmd.add_subparsers(title="actions", metavar="ACTION", required=True)
    command("upgrade", "bring the schema to the newest migration (every start does this too)", db_upgrade, db_actions)
    command("current", "print the schema's migration and whether it is the newest", db_current, db_actions)
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
    from authsite.start_checks import listen_problem

    _check_data_dir(settings)
    if problem := listen_problem(settings.host, settings.port):
        raise BadSetting(problem)
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

    async def check(db: Database, hasher: PasswordHasher) -> None:
        # The name (and address) first: a refusal after typing a password twice wastes both.
        async with db.sessionmaker() as session:
            problems = await accounts.new_account_problems(db=session, username=args.name, password="", email=args.email)
        problems.pop("password", None)
        if problems:
            raise accounts.AccountError.of(problems)

    _run_with_database(settings, check)
    password = _read_new_password(args)
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

    async def check(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            if await accounts.get_user_by_username(session, args.name) is None:
                raise CommandFailed(f"no user named {args.name!r}")

    _run_with_database(settings, check)
    password = _read_new_password(args)

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
        state = "up to date" if current == head else f"behind: run `{_command_line(args.prog)} db upgrade` to reach {head}"
        print(f"{current or 'empty'} ({state})")

    _run_with_database(settings, show, upgrade=False)
    return 0


def _read_new_password(args: argparse.Namespace) -> str:
    from authsite import rules

    if args.password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        # getpass would read the pipe, or end in an EOFError traceback when there is nothing in it.
        command = f"{_command_line(args.prog)} {args.command} {shlex.quote(args.name)} --password-stdin"
        raise BadSetting(f"no terminal to ask for the password: use --password-stdin, "
                         f"e.g. printf '%s\\n' \"$PASSWORD\" | {command}")
    print(f"The password: {rules.MIN_PASSWORD_CHARS} to {rules.MAX_PASSWORD_CHARS} characters, any characters "
          "(spaces too); common and easily guessed passwords are refused.", file=sys.stderr)
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise CommandFailed("the two passwords differ")
    return password


async def _start_and_stop_site(settings: Settings) -> None:
    from authsite.app import AuthSite

    missing = [path for path in _files_a_start_makes(settings) if not path.exists()]
    site = AuthSite(settings)
    try:
        await site.start()
        for line in await start_messages(settings, site, created=[path for path in missing if path.exists()]):
            print(line, flush=True)
    finally:
        await site.stop()


async def start_messages(settings: Settings, site: AuthSite, *, created: list[Path]) -> list[str]:
    """What `serve` tells the person who started it, on stdout (stderr is the JSON log), one line
    each: what this start created, where the site is, what needs doing. A new message is a line here."""
    from authsite.first_admin import setup_link_lines
    from authsite.start_checks import is_loopback

    names = {"authsite.db": "the database", "secret_key": "the secret key"}
    lines = [f"created {names.get(path.name, 'the file')} {path}" for path in created]
    lines.append(f"open {settings.public_url} in a browser")
    # While the site has no user: the one-time link that makes the first (super) account.
    lines += await setup_link_lines(site.setup_links, base_url=settings.public_url)
    if not settings.base_url and not is_loopback(settings.host):
        lines.append(f"warning: listening on {settings.host} without AUTHSITE_BASE_URL, so links in mail point to "
                     f"{settings.public_url}; set AUTHSITE_BASE_URL to the address people use")
    return lines


def _files_a_start_makes(settings: Settings) -> list[Path]:
    from sqlalchemy.engine import make_url

    from authsite.db import sqlite_file
    from authsite.secret_key import KEY_FILE_NAME

    files = [] if settings.secret_key else [settings.data_dir.resolve() / KEY_FILE_NAME]
    if database_file := sqlite_file(make_url(settings.resolved_database_url)):
        files.insert(0, Path(database_file))
    return files


def _command_line(prog: str) -> str:
    """`prog` as typed at a shell: `python run.py`, `authsite`, `python -m authsite`."""
    return f"python {prog}" if prog.endswith(".py") else prog


def _check_data_dir(settings: Settings) -> None:
    """The data folder is usable, when anything lives in it: the default SQLite file, the generated
    key or the outbox (a site with all three set elsewhere needs none, a read-only container say)."""
    from authsite.start_checks import data_dir_problem

    if settings.database_url and settings.secret_key and settings.smtp_url:
        return
    if problem := data_dir_problem(settings.data_dir):
        raise BadSetting(problem)


def _run_with_database(
    settings: Settings, work: Callable[[Database, PasswordHasher], Awaitable[None]], *, upgrade: bool = True
) -> None:
    from authsite.db import Database
    from authsite.passwords import PasswordHasher

    _check_data_dir(settings)

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
