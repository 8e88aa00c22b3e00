"""The account page: details, profile, password, and the list of sessions to end."""

from functools import partial
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from authsite import accounts, cookies, email_ownership, events, flash, guards, sessions
from authsite.devices import describe_device
from authsite.errors import NotLoggedIn
from authsite.events import Kind
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import Session, User, utcnow
from authsite.logins import PasswordCheck
from authsite.notices import Notice
from authsite.web.audit import audit, notify
from authsite.web.deps import require_sudo, sudo_form
from authsite.web.inputs import client_ip
from authsite.web.user_auth import log_in_user, too_many_attempts

ACCOUNT_PATH = "/account"
REVOKE_OTHERS_PATH = "/account/sessions/revoke-others"
# The profile fields a confirmation (sudo mode) carries back to the form in its `next` link.
# Never a password: a URL ends up in logs and histories.
PROFILE_FIELDS = ("first_name", "last_name", "email")



def account_router(site) -> APIRouter:
    # Protected by default: every route below needs a logged-in user.
    router = APIRouter(prefix="/account", dependencies=[Depends(guards.logged_in)])
    Form = Annotated[dict[str, str], Depends(site.checked_form)]
    SudoForm = Annotated[dict[str, str], Depends(sudo_form(site, lambda request: ACCOUNT_PATH))]

    def back_to_account(request: Request, notice: str) -> Response:
        return flash.redirect_with_flash("/account", notice, conn=request, cookie_secure=site.settings.cookie_secure)

    def confirm_for(request: Request):
        """The check of a `current_password`: counted and audited like a failed login."""

        async def confirm(user: User, password: str):
            return await site.logins.confirm_password(PasswordCheck(
                user=user, password=password, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
            ))

        return confirm

    async def refused(request: Request, exc: Exception, *, form: str, values=None) -> Response:
        if isinstance(exc, accounts.Throttled):
            page = await _page(request, errors={"current_password": too_many_attempts(exc.retry_after)}, form=form,
                               values=values, status_code=429)
            page.headers["retry-after"] = str(exc.retry_after)
            return page
        field = "new_password" if exc.field == "password" else exc.field
        status = 409 if isinstance(exc, accounts.ChangedMeanwhile) else 400
        return await _page(request, errors={field: exc.message}, form=form, values=values, status_code=status)

    @router.get("")
    async def account_page(request: Request) -> Response:
        # Back from confirming who they are (sudo mode): the profile form as they had filled it in.
        carried = {name: request.query_params[name][:300] for name in PROFILE_FIELDS if name in request.query_params}
        if carried:
            return await _page(request, form="profile", values=carried)
        return await _page(request)

    @router.post("/profile")
    async def update_profile(request: Request, form: Form) -> Response:
        async with site.database.sessionmaker() as db:
            user = await _current_user(db, request)
            old_email, old_confirmed = user.email, user.email_confirmed_at is not None
            if _changes_email(form.get("email", ""), old_email):
                # A new address can reset the password: a sensitive change (sudo mode).
                kept = urlencode({name: form.get(name, "")[:300] for name in PROFILE_FIELDS})
                await require_sudo(site, request, next_path=f"{ACCOUNT_PATH}?{kept}")
            verifying = site.settings.email_verification != "none"
            wanted = form.get("email", "")
            try:
                if verifying and old_email and not wanted.strip() and site.settings.email_verification == "mandatory":
                    raise accounts.AccountError("email", "This site needs an email address: change it instead.")
                await accounts.update_profile(
                    db=db, user=user, confirm=confirm_for(request),
                    first_name=form.get("first_name", "").strip(), last_name=form.get("last_name", "").strip(),
                    email=wanted, current_password=form.get("current_password", ""), email_now=not verifying,
                )
            except (accounts.AccountError, accounts.Throttled) as exc:
                return await refused(request, exc, form="profile", values=form)
        if user.email != old_email:
            await audit(site, request, Kind.EMAIL_CHANGED, user_id=user.id)
            if old_email and verifying and not user.email:
                await site.email_links.removed(request, user, old_email, old_confirmed=old_confirmed)
            elif old_email:
                notify(site, request, Notice.EMAIL_CHANGED, user=user, to=old_email,
                       new_email=user.email or "none (the address was removed)")
        elif verifying and _changes_email(wanted, old_email):
            # The new address must prove itself first; the old one is told and can cancel.
            await site.email_links.request_change(request, user, accounts.checked_email(wanted))
            await audit(site, request, Kind.EMAIL_CHANGE_REQUESTED, user_id=user.id)
            return back_to_account(request, "email_change_requested")
        return back_to_account(request, "profile_saved")

    @router.post("/password")
    async def change_password(request: Request, form: Form) -> Response:
        current, new = form.get("current_password", ""), form.get("new_password", "")
        errors = {}
        if not new:
            errors["new_password"] = "Choose a new password."
        elif new != form.get("new_password_confirm", ""):
            errors["new_password_confirm"] = "The two passwords differ."
        if errors:
            return await _page(request, errors=errors, form="password")
        # Each try costs a password check and a strength judgement: an account gets a handful.
        tries = await site.throttle.attempt(site.limits.new_password_tries(request.user.id))
        if tries.is_throttled:
            return await refused(request, accounts.Throttled(tries.retry_after), form="password")
        # The browser stays logged in under a new session; it keeps the sudo time of this one.
        proved = await site.database.run(partial(sessions.proved_at, session_id=request.scope[SESSION_SCOPE_KEY].id))
        async with site.database.sessionmaker() as db:
            user = await _current_user(db, request)
            try:
                await accounts.change_password(
                    db=db, hasher=site.hasher, user=user, current_password=current, new_password=new,
                    confirm=confirm_for(request),
                )
            except (accounts.AccountError, accounts.Throttled) as exc:
                return await refused(request, exc, form="password")
        await audit(site, request, Kind.PASSWORD_CHANGED, user_id=user.id, via="account")
        notify(site, request, Notice.PASSWORD_CHANGED, user=user)
        # Every session ended with the old password; this browser carries on
        # with a brand-new token.
        response = back_to_account(request, "password_changed")
        if not await log_in_user(site, request, response, user, remember=request.scope[SESSION_SCOPE_KEY].remember,
                                 authenticated_at=proved):
            # Changed again by another request in between: log in afresh.
            return RedirectResponse("/auth/login", status_code=303)
        return response

    @router.post("/sessions/{session_id}/revoke")
    async def revoke_session(request: Request, session_id: int, form: Form) -> Response:
        if session_id != request.scope[SESSION_SCOPE_KEY].id:
            # Ending another device's session is sensitive (sudo mode); logging this one out is not.
            await require_sudo(site, request, next_path=ACCOUNT_PATH)
        async with site.database.sessionmaker() as db:
            ended = await sessions.end_own_session(db=db, user_id=request.user.id, session_id=session_id)
        if not ended:
            # Someone else's session id looks exactly like one that does not exist.
            raise HTTPException(404, "No such session.")
        await audit(site, request, Kind.SESSION_REVOKED, user_id=request.user.id, session_id=session_id)
        if session_id != request.scope[SESSION_SCOPE_KEY].id:
            return back_to_account(request, "session_revoked")
        # This browser's own session: it is now logged out, and /account will
        # send it on to the login page, which shows the notice.
        response = back_to_account(request, "logged_out")
        cookies.clear_session_cookie(response, secure=cookies.is_secure(request.scope, site.settings.cookie_secure))
        return response

    @router.get("/sessions/revoke-others")
    async def ask_before_revoking_other_sessions(request: Request) -> Response:
        # Every other device logged out at once cannot be undone: a page asks first, and works
        # without JavaScript. Confirming who they are comes before the question, not after the answer.
        await require_sudo(site, request, next_path=REVOKE_OTHERS_PATH)
        async with site.database.sessionmaker() as db:
            rows = await sessions.list_user_sessions(db=db, user_id=request.user.id)
        others = sum(1 for row in rows if row.id != request.scope[SESSION_SCOPE_KEY].id)
        context = {
            "title": "End every other session?",
            "message": _others_message(others),
            "action": REVOKE_OTHERS_PATH,
            "fields": {},
            "confirm_label": "End every other session",
            "cancel_url": f"{ACCOUNT_PATH}#sessions",
        }
        return site.pages.render(request, "confirm_action.html", context)

    @router.post("/sessions/revoke-others")
    async def revoke_other_sessions(request: Request, form: SudoForm) -> Response:
        async with site.database.sessionmaker() as db:
            await sessions.end_user_sessions(
                db=db, user_id=request.user.id, keep_session_id=request.scope[SESSION_SCOPE_KEY].id
            )
        await audit(site, request, Kind.SESSION_REVOKED, user_id=request.user.id, others=True)
        return back_to_account(request, "others_revoked")

    async def _page(request, *, errors=None, form=None, values=None, status_code=None) -> Response:
        async with site.database.sessionmaker() as db:
            user = await _current_user(db, request)
            rows = await sessions.list_user_sessions(db=db, user_id=user.id)
            recent = await events.recent_events_for_user(db=db, user_id=user.id)
        current_id = request.scope[SESSION_SCOPE_KEY].id
        pending_email = await site.database.run(partial(email_ownership.pending_change, user_id=user.id, now=utcnow()))
        factors = await site.database.run(partial(site.factors.summary, user_id=user.id))
        context = {
            "account": user,
            "verifying": site.settings.email_verification != "none",
            "pending_email": pending_email,
            "sessions": [_session_view(row, current_id) for row in rows],
            "errors": errors or {},
            "failed_form": form,
            "values": values or {},
            "events": recent,
            "factors": factors,
        }
        status_code = status_code or (400 if errors else 200)
        return site.pages.render(request, "account.html", context, status_code=status_code)

    return router


def _others_message(others: int) -> str:
    if not others:
        return "You are not logged in anywhere else."
    count = "1 other session" if others == 1 else f"{others} other sessions"
    return f"This logs out {count}: whoever uses them must log in again. This browser stays logged in."


def _changes_email(submitted: str, current: str | None) -> bool:
    """Whether the form asks for another address; an invalid one is left to the domain to refuse."""
    try:
        wanted = accounts.checked_email(submitted)
    except accounts.AccountError:
        return False
    return wanted != current


async def _current_user(db, request: Request) -> User:
    user = await accounts.get_user_by_id(db, request.user.id)
    if user is None:  # deleted since the middleware looked
        raise NotLoggedIn()
    return user


def _session_view(row: Session, current_id: int) -> dict:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "last_seen_at": row.last_seen_at,
        "ip": row.ip or "unknown",
        "device": describe_device(row.user_agent),
        "user_agent": row.user_agent or "",
        "remember": row.remember,
        "is_current": row.id == current_id,
    }
