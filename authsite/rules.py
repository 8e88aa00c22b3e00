"""The input rules every form, API call and command applies (CONTRACT.md, "Rules every input meets")."""

import re
import unicodedata
from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

from authsite import lookalikes
from authsite.passwords import MAX_PASSWORD_CHARS

MIN_PASSWORD_CHARS = 8
MIN_USERNAME_CHARS = 3
MAX_USERNAME_CHARS = 32
USERNAME_PATTERN = re.compile(r"[\w.-]+")
MAX_NAME_CHARS = 50
MIXED_SCRIPTS = "Use letters of one script (Latin with Chinese, Japanese or Korean letters is fine)."
BIDI_CONTROL = "Remove the text-direction control characters (such as U+202E): they make text read backwards."
MAX_SKELETON_CHARS = 128  # the column user.username_skeleton
# zxcvbn scores 0-4; below 2 means guessable by an online attack: common and
# breached passwords, keyboard walks, repeats, the user's own name.
MIN_PASSWORD_SCORE = 2
# Words every password here is checked against besides the user's own name
# and email: a password built from the site's name is among the first guessed.
SITE_WORDS = ("authsite",)
# zxcvbn's cost grows quickly with length; a prefix this long decides.
STRENGTH_CHECK_CHARS = 72


PASSWORDS_DIFFER = "The two passwords differ."


MAX_ROW_ID = 2**31 - 1  # ids are 32-bit on Postgres


def is_row_id(value: int) -> bool:
    """Whether an id from a URL could name a row at all (else: not found, no query)."""
    return 1 <= value <= MAX_ROW_ID


def normalise_username(username: str) -> str:
    """The form a new name is stored in (what the length rule counted)."""
    return unicodedata.normalize("NFKC", username)


def username_key(username: str) -> str:
    """The form usernames are compared and stored unique in: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def username_skeleton(username: str) -> str:
    """The form look-alike names share, stored unique. Taken of the name as shown, not of its
    case-folded key: `paypaI` passes for `paypal` because its capital I looks like an l."""
    return lookalikes.username_skeleton(normalise_username(username))


def username_problem(username: str) -> str | None:
    """Why a new username is refused, or None when it is fine."""
    name = unicodedata.normalize("NFKC", username)
    if not MIN_USERNAME_CHARS <= len(name) <= MAX_USERNAME_CHARS:
        return f"Use {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters."
    # \w admits letters and digits of any script but also "_" and marks; we
    # refuse anything outside letters, digits, ".", "_", "-" explicitly (bidi controls among them).
    if not USERNAME_PATTERN.fullmatch(name) or not all(_is_username_char(c) for c in name):
        return "Use only letters, digits, '.', '_' and '-'."
    # A name mixing scripts is how `аlice` (Cyrillic а) passes for `alice`; TR39's "highly
    # restrictive" level allows one script, or Latin with Han and Japanese or Korean scripts.
    if lookalikes.mixes_scripts(name):
        return MIXED_SCRIPTS
    if len(username_skeleton(name)) > MAX_SKELETON_CHARS:
        return "Use a shorter name."
    return None


def password_problem(password: str, *, user_inputs: Iterable[str] = ()) -> str | None:
    """Why a new password is refused, or None. Length and guessability only:
    no composition rules, any characters allowed, never truncated. Judging guessability costs
    real CPU: servers run this through authsite.strength, off the event loop."""
    if problem := password_shape_problem(password):
        return problem
    # Imported here, not at the top: its word lists cost each worker about 12 MB, which a
    # worker that never sets a password (most of them, on most sites) need not pay.
    from zxcvbn import zxcvbn

    inputs = [value for value in (*user_inputs, *SITE_WORDS) if value]
    if zxcvbn(password[:STRENGTH_CHECK_CHARS], user_inputs=inputs)["score"] < MIN_PASSWORD_SCORE:
        return "This password is too common or easy to guess. Try a longer phrase of unrelated words."
    return None


def password_shape_problem(password: str) -> str | None:
    """The instant part of `password_problem`: length and whether it can be stored."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Use at least {MIN_PASSWORD_CHARS} characters."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Use at most {MAX_PASSWORD_CHARS} characters."
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "The password contains characters that cannot be stored."
    return None


def normalise_email(email: str) -> str:
    """The address as we store it; raises ValueError with a message for the form."""
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def email_key(email: str) -> str:
    return email.casefold()


def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME_CHARS:
        return f"Use at most {MAX_NAME_CHARS} characters."
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return "Remove the control characters."
    # Names are shown to admins and in lists: a U+202E would make the rest of a line read backwards.
    if lookalikes.has_bidi_control(name):
        return BIDI_CONTROL
    return None


def is_plausible_username(username: str) -> bool:
    """Cheap filter before any lookup: overlong, control or unstorable characters
    cannot be in an account name (and Postgres refuses NUL outright)."""
    if not 0 < len(username) <= MAX_USERNAME_CHARS * 4:
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in username)


def _is_username_char(char: str) -> bool:
    return char in "._-" or unicodedata.category(char)[0] in "LN"
