"""Security notices: a mail to the account's owner when something about its security changed.

Each says what happened, when, from which address and device, and what to do if it was not them;
none holds a secret (no code, link token or password). They go through the mailer's queue like
every mail (the outbox when there is no SMTP), so sending one never slows a page.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from authsite.devices import describe_device
from authsite.mail import Mail, Mailer
from authsite.models import utcnow


class Notice(StrEnum):
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    EMAIL_CHANGED = "email_changed"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_REMOVED = "email_removed"
    FACTOR_ADDED = "factor_added"
    FACTOR_REMOVED = "factor_removed"
    FACTORS_RESET = "factors_reset"
    RECOVERY_CODES_REPLACED = "recovery_codes_replaced"
    RECOVERY_CODE_USED = "recovery_code_used"
    NEW_DEVICE = "new_device"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    PASSKEY_CLONED = "passkey_cloned"


# (subject, what happened, what to do if it was not them); {site} and {account} are filled in.
SECURE_IT = "change your password at {account} at once and end the sessions you do not know there"
TEXTS = {
    Notice.PASSWORD_CHANGED: (
        "Your {site} password was changed",
        "The password of your account was changed, and every other device was logged out.",
        "someone else has your account: reset your password at {reset} and then check {account}",
    ),
    Notice.PASSWORD_RESET: (
        "Your {site} password was reset",
        "The password of your account was reset through a link mailed to this address, and every "
        "device was logged out.",
        "someone can read this mailbox: secure it, then reset your password again at {reset}",
    ),
    Notice.EMAIL_CHANGED: (
        "The email address of your {site} account was changed",
        "The email address of your account was changed to {new_email}. Mail about the account, "
        "password reset links included, now goes there instead of here.",
        "someone else has your account: reset your password at {reset} (the link still comes to this "
        "address until the change is undone) and put your address back at {account}",
    ),
    Notice.EMAIL_CHANGE_REQUESTED: (
        "A new email address was asked for on your {site} account",
        "Someone signed in to your account asked to move its email to {new_email}. Nothing changes "
        "unless the link just sent there is opened (within 24 hours); until then mail, password reset "
        "links included, still comes here.",
        "{cancel}: this logs out every device, turns the password off, and puts this address back "
        "if the change went through; then set a new password with the reset link it lets you ask for",
    ),
    Notice.EMAIL_REMOVED: (
        "The email address of your {site} account was removed",
        "The email address of your account was removed: mail about the account no longer comes here.",
        "{cancel}: this logs out every device and turns the password off; then set a new password with "
        "the reset link it lets you ask for",
    ),
    Notice.FACTOR_ADDED: (
        "An authenticator app was added to your {site} account",
        "An authenticator app was turned on for your account: logging in now needs a code from it.",
        SECURE_IT + ", then turn the app off at {security}",
    ),
    Notice.FACTOR_REMOVED: (
        "The authenticator app of your {site} account was turned off",
        "The authenticator app of your account was turned off: logging in now needs only the password.",
        SECURE_IT + ", then turn a second factor on again at {security}",
    ),
    Notice.FACTORS_RESET: (
        "The second factors of your {site} account were removed",
        "An administrator removed every second factor of your account and logged it out everywhere.",
        "tell the site's administrators at once, and " + SECURE_IT,
    ),
    Notice.RECOVERY_CODES_REPLACED: (
        "New recovery codes for your {site} account",
        "New recovery codes were made for your account; the old ones no longer work.",
        SECURE_IT + ", then make new recovery codes at {security}",
    ),
    Notice.RECOVERY_CODE_USED: (
        "A recovery code of your {site} account was used",
        "One of your recovery codes was used to sign in or to confirm a change. {codes_left}",
        "someone has your password and a recovery code: " + SECURE_IT + ", and make new recovery codes at {security}",
    ),
    Notice.PASSKEY_ADDED: (
        "A passkey was added to your {site} account",
        "A passkey named \"{name}\" was added to your account: it can sign in without the password.",
        SECURE_IT + ", then remove the passkey at {security}",
    ),
    Notice.PASSKEY_REMOVED: (
        "A passkey was removed from your {site} account",
        "The passkey named \"{name}\" was removed from your account and can no longer sign in.",
        SECURE_IT + ", then check the second factors at {security}",
    ),
    Notice.PASSKEY_CLONED: (
        "A passkey of your {site} account may have been copied",
        "One of your passkeys was refused: its authenticator's counter went back, which is what a copied "
        "passkey does. It is marked on your security page.",
        "remove that passkey at {security}, " + SECURE_IT,
    ),
    Notice.NEW_DEVICE: (
        "New sign-in to your {site} account",
        "Your account was signed in to from a browser or device that has not signed in to it before.",
        SECURE_IT,
    ),
}
BODY = """Hello {username},

{what}

When: {when}
From: {ip} ({device})

If this was you, there is nothing to do.
If it was not you, {advice}.

-- 
{site}
"""


@dataclass(frozen=True)
class Where:
    """Where a change came from, as the notice tells it."""

    ip: str | None
    user_agent: str | None
    when: datetime | None = None


def compose(notice: Notice, *, to: str, username: str, where: Where, site: str, base_url: str,
            **details: str) -> Mail:
    subject, what, advice = TEXTS[notice]
    links = {"site": site, "account": f"{base_url}/account", "security": f"{base_url}/account/security",
             "reset": f"{base_url}/auth/reset", **details}
    body = BODY.format(
        username=username, what=what.format(**links), advice=advice.format(**links), site=site,
        when=f"{(where.when or utcnow()):%Y-%m-%d %H:%M} UTC", ip=where.ip or "an unknown address",
        device=describe_device(where.user_agent),
    )
    return Mail(to=to, subject=subject.format(site=site), body=body)


def codes_left_sentence(left: int) -> str:
    if left == 0:
        return "No recovery codes are left."
    return f"{left} recovery code{'s are' if left != 1 else ' is'} left."


class Notices:
    def __init__(self, *, mailer: Mailer, site: str, base_url: str):
        self.mailer, self.site, self.base_url = mailer, site, base_url

    def send(self, notice: Notice, *, to: str | None, username: str, where: Where, **details: str) -> None:
        """Queue the notice; nothing for an account without an address."""
        if not to:
            return
        self.mailer.send_later(compose(notice, to=to, username=username, where=where, site=self.site,
                                       base_url=self.base_url, **details))
