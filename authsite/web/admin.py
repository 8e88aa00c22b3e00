"""Admin pages: find users, change their permissions, deactivate them, read the audit log."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from authsite import accounts, email_ownership, events, flash, guards, resets, sessions, user_admin
from authsite.events import Kind
from authsite.factors.second_factors import factors_of, remove_all_factors
from authsite.models import utcnow
from authsite.headers import no_referrer_path
from authsite.models import User
from authsite.notices import Notice
from authsite.web.audit import audit, notify
from authsite.web.deps import checked_form, require_sudo

# The audit filter's menu: each kind in the words the log's table uses, its code as the value.
KIND_CHOICES = [(kind.value, events.LABELS[kind]) for kind in Kind]


def admin_router(site) -> APIRouter:
    # Every route here needs admin or super, checked before anything else, so a
    # user without the scope gets the same 403 whether or not an id exists.
    router = APIRouter(prefix="/admin", dependencies=[Depends(guards.admin_user)])
    Form = Annotated[dict, Depends(checked_form(lambda: site.csrf, repeatable=("scopes",)))]
    grantable = site.settings.admin_grantable

    async def sudo(request: Request, user_id: int) -> None:
        # Changing another account (its permissions, a reset link, its second factors) is sensitive:
        # an admin's session stolen an hour ago must not be enough (sudo mode).
        await require_sudo(site, request, next_path=f"/admin/users/{user_id}")

    @router.get("")
    async def admin_home() -> Response:
        return RedirectResponse("/admin/users", status_code=303)

    @router.get("/users")
    async def users_page(request: Request, q: str = "", after: str | None = None) -> Response:
        async with site.database.sessionmaker() as db:
            page = await user_admin.search_users(db=db, query=q[:254], after=after)
        factors = await site.database.run(partial(factors_of, user_ids=[u.id for u in page.users]))
        return site.pages.render(request, "admin_users.html", {"page": page, "q": q[:254], "factors": factors})

    def back_to_user(request: Request, user_id: int, notice: str) -> Response:
        return flash.redirect_with_flash(
            f"/admin/users/{user_id}", notice, conn=request, cookie_secure=site.settings.cookie_secure
        )

    @router.get("/users/{user_id}")
    async def user_page(request: Request, user_id: int) -> Response:
        return await _user_page(request, user_id)

    @router.post("/users/{user_id}")
    async def change_user(request: Request, user_id: int, form: Form) -> Response:
        await sudo(request, user_id)
        active = form.get("active", "true")
        if active not in ("true", "false"):
            return await _user_page(request, user_id, error="'active' must be true or false.")
        try:
            scopes = user_admin.clean_scopes(form["scopes"])
            change = await site.database.run(partial(
                user_admin.change_user, actor_id=request.user.id, user_id=user_id, scopes=scopes,
                active=active == "true", grantable=grantable,
            ))
        except user_admin.NoSuchUser:
            raise HTTPException(404, "No such user.") from None
        except user_admin.AdminRefused as exc:
            raise HTTPException(403, str(exc)) from None
        except user_admin.AdminInvalid as exc:
            return await _user_page(request, user_id, error=str(exc))
        if change.scopes_changed:
            await audit(site, request, Kind.SCOPES_CHANGED, user_id=user_id, actor_id=request.user.id,
                        before=change.before, after=scopes)
        if change.active_changed:
            kind = Kind.ACTIVATED if active == "true" else Kind.DEACTIVATED
            await audit(site, request, kind, user_id=user_id, actor_id=request.user.id)
        return back_to_user(request, user_id, "user_saved")

    async def ask_first(request: Request, user_id: int, action: str, question, *, fields=None) -> tuple[User, Response]:
        """A page asking before something that cannot be undone, without JavaScript: it holds the
        real form (the contract's POST, unchanged), so the user page only links here."""
        path = f"/admin/users/{user_id}"
        await require_sudo(site, request, next_path=f"{path}/{action}")
        async with site.database.sessionmaker() as db:
            user = await _user_or_404(db, user_id)
        try:
            user_admin.check_may_touch(_actor(request), user)  # refused now, not after the question
        except user_admin.AdminRefused as exc:
            raise HTTPException(403, str(exc)) from None
        title, message, confirm_label = question(user.username)
        context = {"title": title, "message": message, "confirm_label": confirm_label, "cancel_url": path,
                   "action": path if action == "deactivate" else f"{path}/{action}", "fields": fields(user) if fields else {}}
        return user, site.pages.render(request, "confirm_action.html", context)

    @router.get("/users/{user_id}/deactivate")
    async def ask_before_deactivating(request: Request, user_id: int) -> Response:
        # The user page's own POST with the permissions as they are now and active=false.
        user, page = await ask_first(request, user_id, "deactivate", lambda name: (
            f"Deactivate {name}?",
            f"{name} will be logged out everywhere at once, any reset link made for them stops working, and "
            "they cannot log in until an admin makes the account active again.",
            f"Deactivate {name}",
        ), fields=lambda user: {"scopes": list(user.scopes), "active": "false"})
        return page if user.is_active else RedirectResponse(f"/admin/users/{user_id}", status_code=303)

    @router.get("/users/{user_id}/revoke-sessions")
    async def ask_before_ending_sessions(request: Request, user_id: int) -> Response:
        _, page = await ask_first(request, user_id, "revoke-sessions", lambda name: (
            f"End every session of {name}?",
            f"{name} will be logged out on every device at once and has to log in again.",
            "End all sessions",
        ))
        return page

    @router.get("/users/{user_id}/mfa-reset", dependencies=[Depends(guards.super_user)])
    async def ask_before_removing_factors(request: Request, user_id: int) -> Response:
        _, page = await ask_first(request, user_id, "mfa-reset", lambda name: (
            f"Remove {name}'s second factors?",
            f"{name}'s authenticator app, passkeys and recovery codes stop working and are removed, and they are "
            "logged out everywhere. Do this only once you are sure the person asking is the account's owner.",
            "Remove second factors",
        ))
        return page

    @router.post("/users/{user_id}/revoke-sessions")
    async def revoke_sessions(request: Request, user_id: int, form: Form) -> Response:
        await sudo(request, user_id)
        async with site.database.sessionmaker() as db:
            user = await _user_or_404(db, user_id)
            try:
                await user_admin.end_all_sessions(db=db, actor=_actor(request), user=user)
            except user_admin.AdminRefused as exc:
                raise HTTPException(403, str(exc)) from None
        await audit(site, request, Kind.SESSION_REVOKED, user_id=user_id, actor_id=request.user.id, all=True)
        return back_to_user(request, user_id, "user_sessions_revoked")

    @router.post("/users/{user_id}/reset-link")
    async def reset_link(request: Request, user_id: int, form: Form) -> Response:
        await sudo(request, user_id)
        async with site.database.sessionmaker() as db:
            user = await _user_or_404(db, user_id)
            try:
                user_admin.check_may_issue_reset(_actor(request), user)
            except user_admin.AdminRefused as exc:
                raise HTTPException(403, str(exc)) from None
            except user_admin.AdminInvalid as exc:
                return await _user_page(request, user_id, error=str(exc))
            token = await resets.create_reset_token(db=db, user=user, issued_by=request.user.id)
        await audit(site, request, Kind.RESET_REQUESTED, user_id=user_id, actor_id=request.user.id, via="admin")
        link = f"{site.settings.public_url}/auth/reset/{token}"
        return no_referrer_path(site.pages.render(request, "admin_reset_link.html", {"account": user, "link": link}))

    @router.post("/users/{user_id}/email-confirmed")
    async def confirm_address(request: Request, user_id: int, form: Form) -> Response:
        # An admin's word that the address is the user's (they checked by their own means).
        await sudo(request, user_id)
        async with site.database.sessionmaker() as db:
            await _user_or_404(db, user_id)

        def mark(conn):
            marked = email_ownership.mark_confirmed(conn, user_id=user_id, now=utcnow())
            conn.commit()
            return marked

        if await site.database.run(mark):
            await audit(site, request, Kind.EMAIL_CONFIRMED, user_id=user_id, actor_id=request.user.id, via="admin")
        return back_to_user(request, user_id, "email_marked_confirmed")

    @router.post("/users/{user_id}/mfa-reset", dependencies=[Depends(guards.super_user)])
    async def reset_second_factors(request: Request, user_id: int, form: Form) -> Response:
        await sudo(request, user_id)
        async with site.database.sessionmaker() as db:
            user = await _user_or_404(db, user_id)
        had = await site.database.run(partial(remove_all_factors, user_id=user_id))
        await audit(site, request, Kind.MFA_RESET, user_id=user_id, actor_id=request.user.id, had_factors=had)
        if had:
            notify(site, request, Notice.FACTORS_RESET, user=user)
        return back_to_user(request, user_id, "mfa_reset")

    @router.get("/events")
    async def events_page(request: Request, kind: str = "", user: str = "", before: int | None = None) -> Response:
        kind = kind if kind in {k.value for k in Kind} else ""
        async with site.database.sessionmaker() as db:
            rows = await events.list_events(db=db, kind=kind or None, username=user[:64] or None, before_id=before)
            names = await _usernames(db, {r.user_id for r in rows} | {r.actor_id for r in rows})
        context = {"events": rows, "names": names, "kind": kind, "user_filter": user[:64],
                   "kinds": KIND_CHOICES, "next_before": rows[-1].id if len(rows) == 50 else None}
        return site.pages.render(request, "admin_events.html", context)

    async def _user_page(request: Request, user_id: int, *, error=None) -> Response:
        async with site.database.sessionmaker() as db:
            user = await _user_or_404(db, user_id)
            live = await sessions.list_user_sessions(db=db, user_id=user_id)
            recent = await events.recent_events_for_user(db=db, user_id=user_id, limit=20)
        factors = await site.database.run(partial(site.factors.summary, user_id=user_id))
        actor = _actor(request)
        context = {"account": user, "session_count": len(live), "events": recent, "error": error, "factors": factors,
                   "verifying": site.settings.email_verification != "none",
                   "scope_choices": user_admin.scope_choices(actor, user, grantable), "is_self": user.id == actor.id,
                   "may_add_scope": actor.is_super and user.id != actor.id}
        return site.pages.render(request, "admin_user.html", context, status_code=400 if error else 200)

    return router


def _actor(request: Request) -> user_admin.Actor:
    return user_admin.Actor(id=request.user.id, scopes=frozenset(request.auth.scopes))


async def _user_or_404(db, user_id: int) -> User:
    user = await accounts.get_user_by_id(db, user_id)
    if user is None:
        raise HTTPException(404, "No such user.")
    return user


async def _usernames(db, ids: set[int | None]) -> dict[int, str]:
    return await accounts.usernames_by_id(db, {i for i in ids if i is not None})
