"""A readable device name ("Firefox on Ubuntu") from a User-Agent header, for the sessions list."""

from functools import lru_cache

from ua_parser import parse

UNKNOWN = "Unknown device"


@lru_cache(maxsize=1024)
def describe_device(user_agent: str | None) -> str:
    if not user_agent:
        return UNKNOWN
    result = parse(user_agent[:512]).with_defaults()
    browser, system = result.user_agent.family, result.os.family
    if browser == "Other" and system == "Other":
        return UNKNOWN
    if system == "Other":
        return browser
    if browser == "Other":
        return system
    return f"{browser} on {system}"
