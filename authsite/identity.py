"""The objects behind `request.user` and `request.auth`."""

from collections.abc import Iterator

from starlette.authentication import AuthCredentials, BaseUser

from authsite.sessions import ActiveSession


class AuthenticatedUser(BaseUser):
    def __init__(self, session: ActiveSession, *, needs_second_factor: bool = False):
        self.id = session.user_id
        self.username = session.username
        self.email = session.email
        self.first_name = session.first_name
        self.last_name = session.last_name
        self.scopes = tuple(session.scopes)
        self.has_second_factor = session.mfa_enabled
        # A scope the site names in AUTHSITE_MFA_REQUIRED_SCOPES, and no second factor yet: the
        # guards send this user to /account/security until they add one.
        self.needs_second_factor = needs_second_factor

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        full = " ".join(n for n in (self.first_name, self.last_name) if n)
        return full or self.username

    @property
    def identity(self) -> str:
        return str(self.id)

    def __repr__(self) -> str:
        return f"AuthenticatedUser(id={self.id}, username={self.username!r})"


class AnonymousUser(BaseUser):
    id = None
    username = ""
    email = None
    scopes: tuple[str, ...] = ()
    has_second_factor = False
    needs_second_factor = False

    @property
    def is_authenticated(self) -> bool:
        return False

    @property
    def display_name(self) -> str:
        return ""

    @property
    def identity(self) -> str:
        return ""


class Scopes(AuthCredentials):
    """Starlette's AuthCredentials (so `starlette.authentication.requires` works), also usable as a set."""

    def __contains__(self, scope: object) -> bool:
        return scope in self.scopes

    def __iter__(self) -> Iterator[str]:
        return iter(self.scopes)

    def __len__(self) -> int:
        return len(self.scopes)

    def __repr__(self) -> str:
        return f"Scopes({self.scopes!r})"


ANONYMOUS = AnonymousUser()
NO_SCOPES = Scopes([])
