"""`python run.py [command]` (also `authsite [command]` and `python -m authsite [command]`):
serve the site, or manage users from the shell."""

from __future__ import annotations

import sys

from authsite.cli.failures import EXIT_BAD_SETTINGS, EXIT_FAILED, BadSetting, CommandFailed, describe_settings_error
from authsite.cli.parser import build_parser
from authsite.cli.program import program_name

# Commands import the domain (SQLAlchemy, pydantic) when they run, not here: every uvicorn worker
# re-imports this package (its parent's __main__) before it can answer its first health check.

__all__ = ["main", "describe_settings_error"]

_parser = build_parser  # the name tests/test_cli_help.py imports


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from authsite.config import Settings

    args = build_parser(program_name()).parse_args(argv)
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
