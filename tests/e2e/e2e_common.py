"""What the browser tests' fixtures and tests both need, without Playwright (so a
missing Playwright is a clear skip, not an import error)."""

from dataclasses import dataclass
from pathlib import Path

from support import PASSWORD

REPO = Path(__file__).resolve().parents[2]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
PLAYWRIGHT_MISSING = "playwright is not installed (pip install -e '.[dev]')"


@dataclass
class User:
    username: str
    password: str = PASSWORD
    email: str | None = None
