"""The command line's grammar and help: every command and argument, and which function runs each."""

from __future__ import annotations

import argparse

from authsite.cli.database import db_current, db_upgrade
from authsite.cli.serve import serve
from authsite.cli.users import create_user, end_sessions, mfa_reset, reset_link, set_password, set_scopes

ABOUT = "authsite: serve the site, or manage its users from the shell."
SETTINGS_NOTE = """\
With no command, serves the site: the same as the `serve` command.

Settings are AUTHSITE_* environment variables, also read from a .env file in the
working directory (see .env.example). The SQLite database and the generated secret
key live in ./data unless AUTHSITE_DATA_DIR says otherwise. Every setting is listed
in the Settings section of README.md. `COMMAND --help` tells more about each command."""
NAME_HELP = "the username (Alice, ALICE and alice are one name)"
STDIN_HELP = "read the password from standard input, one line (for scripts, and `docker exec` without -t)"


def build_parser(prog: str = "run.py") -> argparse.ArgumentParser:
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
