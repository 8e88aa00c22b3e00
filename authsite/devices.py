"""A readable device name ("Firefox on Ubuntu") from a User-Agent header, for the sessions list."""

import logging
from functools import lru_cache

log = logging.getLogger("authsite.devices")

UNKNOWN = "Unknown device"
MAX_HEADER_CHARS = 512


@lru_cache(maxsize=1024)
def describe_device(user_agent: str | None) -> str:
    if not user_agent:
        return UNKNOWN
    header = user_agent[:MAX_HEADER_CHARS]
    # Imported at the first sessions list or new-device notice, not at start: with the parser's
    # rules (and PyYAML, which it loads where installed) it is about 1 MB in every worker.
    from ua_parser import parse_os, parse_user_agent

    try:
        # Only the browser and the system are shown, so only they are parsed (the device table
        # is the largest). The parser's rules are data it ships; any header is the client's to
        # choose, and one it chokes on (ua-parser raises ValueError for "Android 5;  )") must
        # not take the sessions list, and so the owner's view of an intruder, down with it.
        browser, system = _family(parse_user_agent(header)), _family(parse_os(header))
    except Exception as exc:
        log.debug("could not name the device of a User-Agent (%s)", type(exc).__name__)
        return UNKNOWN
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or UNKNOWN


def _family(parsed) -> str | None:
    family = parsed.family if parsed is not None else None
    return family if family and family != "Other" else None
