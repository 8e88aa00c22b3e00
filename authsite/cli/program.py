"""The name this program was called by, for usage lines and for commands it tells people to type."""

from __future__ import annotations

import os
import sys


def program_name() -> str:
    """How this command was called, for its usage lines: `run.py`, `authsite` or `python -m authsite`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m authsite" if name in ("__main__.py", "-c", "-m", "") else name


def command_line(prog: str) -> str:
    """`prog` as typed at a shell: `python run.py`, `authsite`, `python -m authsite`."""
    return f"python {prog}" if prog.endswith(".py") else prog
