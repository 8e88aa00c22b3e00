"""Logging for `run.py`: one JSON line per record, with secrets kept out."""

import json
import logging
import re
import traceback
from datetime import datetime, timezone

# Links mailed or printed carry their token in the path (a sign-in link's is a login); the access
# log must not keep it. "/auth/code/confirm" is a page, and too short to be taken for a token.
SECRET_IN_PATH = re.compile(r"(/auth/(?:reset|setup|verify|code|email-change/cancel)/)[A-Za-z0-9_-]{8,}")
# A database or SMTP URL's password, should a library's message ever quote the URL.
PASSWORD_IN_URL = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@]+(@)")


class JsonLineFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", ...fields}; a traceback becomes one escaped field."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            kind, error, tb = record.exc_info
            line["error"] = f"{kind.__name__}: {redact(str(error))}"
            line["traceback"] = redact("".join(traceback.format_tb(tb)))
        return json.dumps(line, default=str, ensure_ascii=False)


def redact(text: str) -> str:
    return PASSWORD_IN_URL.sub(r"\1***\2", SECRET_IN_PATH.sub(r"\1[token]", text))


def logging_config(level: str) -> dict:
    """A dictConfig for authsite's and uvicorn's loggers at `level`, and every other library's
    (asyncpg, SQLAlchemy, asyncio) through the same JSON lines at warning and above."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["stderr"], "level": level, "propagate": False}
               for name in ("authsite", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")}
    # Without a root handler other libraries' records reach Python's last resort, which prints a
    # traceback as many plain lines (asyncpg's "failed to restore the pool" while Postgres is
    # silent). Never below warning: at info SQLAlchemy would log every statement with its values.
    root_level = max(logging.getLevelName(level), logging.WARNING)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "handlers": {"stderr": handler},
        "loggers": loggers,
        "root": {"handlers": ["stderr"], "level": logging.getLevelName(root_level)},
    }
