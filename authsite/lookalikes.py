"""Names that can pass for other names (Unicode TR39): the confusable skeleton two look-alike
names share, letters mixing scripts, and the bidi controls that reorder what a page shows.

The skeleton comes from disarm (Unicode 17 confusables data, TR39's skeleton with its I/l/1 and
O/0 classes); scripts from the regex module's Script_Extensions. Both are imported on first use:
only a sign-up needs them, not every worker's start."""

from functools import cache

# UAX #9's explicit directional formatting characters: each can make a name read backwards.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# TR39's Recommended scripts (Table 4): letters of any other script are refused outright.
RECOMMENDED_SCRIPTS = (
    "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Thaana", "Devanagari", "Bengali",
    "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao",
    "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic", "Khmer", "Mongolian", "Hiragana", "Katakana",
    "Bopomofo", "Han",
)
# Beyond one script, TR39's "highly restrictive" level allows exactly these mixes.
ALLOWED_MIXES = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
    frozenset({"Latin", "Han", "Hangul"}),
)


def username_skeleton(name: str) -> str:
    """What a name looks like once confusable letters are folded: `аlice` and `alice`, `paypaI`
    and `paypal`, `rootl` and `root1` share one; it is lower-case, so case variants share it too."""
    from disarm import skeleton_key

    return skeleton_key(name, digit_policy="tr39")


def has_bidi_control(text: str) -> bool:
    return not BIDI_CONTROLS.isdisjoint(text)


def mixes_scripts(name: str) -> bool:
    """Whether the letters of `name` are not all of one Recommended script (by their
    Script_Extensions) nor of one allowed mix. Digits, '.', '_', '-' and marks belong to all."""
    letter_scripts = [scripts for char in name if (scripts := _scripts_of(char)) is not None]
    if any(not scripts for scripts in letter_scripts):
        return True  # a letter of a script outside the Recommended ones
    if not letter_scripts or frozenset.intersection(*letter_scripts):
        return False
    return not any(all(scripts & mix for scripts in letter_scripts) for mix in ALLOWED_MIXES)


@cache
def _scripts_of(char: str) -> frozenset[str] | None:
    """The Recommended scripts `char` is used in; None for one common to all scripts."""
    by_script, common = _patterns()
    scripts = frozenset(name for name, pattern in by_script.items() if pattern.match(char))
    if not scripts and common.match(char):
        return None
    return scripts


@cache
def _patterns():
    import regex

    by_script = {name: regex.compile(rf"\p{{scx={name}}}") for name in RECOMMENDED_SCRIPTS}
    return by_script, regex.compile(r"[\p{sc=Common}\p{sc=Inherited}]")
