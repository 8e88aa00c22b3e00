"""What `serve` tells the person who started it: the files this start made, where the site is, what needs doing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authsite.app import AuthSite
    from authsite.config import Settings


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


def files_a_start_makes(settings: Settings) -> list[Path]:
    """The database file (on SQLite) and the generated key file, which a first start creates."""
    from sqlalchemy.engine import make_url

    from authsite.db import sqlite_file
    from authsite.secret_key import KEY_FILE_NAME

    files = [] if settings.secret_key else [settings.data_dir.resolve() / KEY_FILE_NAME]
    if database_file := sqlite_file(make_url(settings.resolved_database_url)):
        files.insert(0, Path(database_file))
    return files
