"""Where a `next` parameter may send the browser: our own paths only."""

from urllib.parse import unquote, urlsplit

MAX_NEXT_CHARS = 2000
FALLBACK = "/"


def safe_next(target: str | None, fallback: str = FALLBACK) -> str:
    """`target` if it is a local path (with query), else `fallback`.

    Open redirects hide in browser leniency: `//evil`, `/\\evil`, `/%2F%2Fevil`,
    tabs and newlines that browsers strip, or a scheme. We accept only a path
    that starts with one "/" and still does after decoding, with no control
    characters or backslashes anywhere."""
    if not target or len(target) > MAX_NEXT_CHARS:
        return fallback
    decoded = target
    for _ in range(3):
        if not _is_plain_local_path(decoded):
            return fallback
        decoded = unquote(decoded)
    if not _is_plain_local_path(decoded):
        return fallback
    return target


def _is_plain_local_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//"):
        return False
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc
