"""Asks for a new password: twice at a terminal, or one line from standard input with --password-stdin."""

from __future__ import annotations

import argparse
import getpass
import shlex
import sys

from authsite.cli.failures import BadSetting, CommandFailed
from authsite.cli.program import command_line


def read_new_password(args: argparse.Namespace) -> str:
    from authsite import rules

    if args.password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        # getpass would read the pipe, or end in an EOFError traceback when there is nothing in it.
        command = f"{command_line(args.prog)} {args.command} {shlex.quote(args.name)} --password-stdin"
        raise BadSetting(f"no terminal to ask for the password: use --password-stdin, "
                         f"e.g. printf '%s\\n' \"$PASSWORD\" | {command}")
    print(f"The password: {rules.MIN_PASSWORD_CHARS} to {rules.MAX_PASSWORD_CHARS} characters, any characters "
          "(spaces too); common and easily guessed passwords are refused.", file=sys.stderr)
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise CommandFailed("the two passwords differ")
    return password
