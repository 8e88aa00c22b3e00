"""The commands that manage users from the shell: create one, set a password or scopes, print a
reset link, remove second factors, end sessions. Each records what it did in the audit log, via cli."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING

from authsite.cli.failures import CommandFailed
from authsite.cli.prompts import read_new_password
from authsite.cli.runner import run_with_database

if TYPE_CHECKING:
    from authsite.config import Settings
    from authsite.db import Database
    from authsite.passwords import PasswordHasher


def create_user(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events
    from authsite.models import DEFAULT_SCOPES, utcnow

    async def check(db: Database, hasher: PasswordHasher) -> None:
        # The name (and address) first: a refusal after typing a password twice wastes both.
        async with db.sessionmaker() as session:
            problems = await accounts.new_account_problems(db=session, username=args.name, password="", email=args.email)
        problems.pop("password", None)
        if problems:
            raise accounts.AccountError.of(problems)

    run_with_database(settings, check)
    password = read_new_password(args)
    scopes = [*DEFAULT_SCOPES, *args.scope]

    async def create(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.create_user(
                db=session, hasher=hasher, username=args.name, password=password, email=args.email, scopes=scopes
            )
            if user.email:
                # The operator typed the address: their word stands for the mailed link.
                user.email_confirmed_at = utcnow()
                session.add(user)
                await session.commit()
        await events.AuditLog(db).record(events.Kind.USER_CREATED, user_id=user.id, via="cli")
        print(f"created user {user.username!r} (id {user.id}) with scopes {', '.join(user.scopes)}")

    run_with_database(settings, create)
    return 0


def set_password(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events

    async def check(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            if await accounts.get_user_by_username(session, args.name) is None:
                raise CommandFailed(f"no user named {args.name!r}")

    run_with_database(settings, check)
    password = read_new_password(args)

    async def change(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            await accounts.set_password(db=session, hasher=hasher, user=user, password=password)
        await events.AuditLog(db).record(events.Kind.PASSWORD_CHANGED, user_id=user.id, via="cli")
        print(f"password changed for {user.username!r}; their sessions have ended")

    run_with_database(settings, change)
    return 0


def set_scopes(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, user_admin

    try:
        scopes = user_admin.clean_scopes(args.scope)
    except user_admin.AdminInvalid as exc:
        raise CommandFailed(str(exc)) from None

    async def change(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
        if user is None:
            raise CommandFailed(f"no user named {args.name!r}")
        # The operator is bound by one rule only: an active super user remains.
        work = partial(user_admin.change_user, actor_id=None, user_id=user.id, scopes=scopes, active=None,
                       grantable=frozenset())
        try:
            done = await db.run(work)
        except (user_admin.AdminInvalid, user_admin.NoSuchUser) as exc:
            raise CommandFailed(f"{user.username!r} keeps their scopes: {exc}") from None
        if not done.scopes_changed:
            print(f"{done.username!r} already holds {', '.join(scopes)}; nothing changed")
            return
        await events.AuditLog(db).record(events.Kind.SCOPES_CHANGED, user_id=user.id, via="cli",
                                         before=done.before, after=scopes)
        print(f"{done.username!r} now holds {', '.join(scopes)} (before: {', '.join(done.before)}); "
              "any reset link pending for them is void")

    run_with_database(settings, change)
    return 0


def reset_link(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, resets

    async def make_link(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            if not user.is_active:
                raise CommandFailed(f"{user.username!r} is deactivated; a reset link would not let them in")
            token = await resets.create_reset_token(db=session, user=user)
        await events.AuditLog(db).record(events.Kind.RESET_REQUESTED, user_id=user.id, via="cli")
        print(f"{settings.public_url}/auth/reset/{token}")
        print(f"(valid for one hour, once; for {user.username!r})", file=sys.stderr)

    run_with_database(settings, make_link)
    return 0


def mfa_reset(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events
    from authsite.factors.second_factors import remove_all_factors
    from authsite.mail import Mailer
    from authsite.notices import Notice, Notices, Where

    async def reset(db: Database, hasher: PasswordHasher) -> None:
        async with db.sessionmaker() as session:
            user = await accounts.get_user_by_username(session, args.name)
        if user is None:
            raise CommandFailed(f"no user named {args.name!r}")
        had = await db.run(partial(remove_all_factors, user_id=user.id))
        await events.AuditLog(db).record(events.Kind.MFA_RESET, user_id=user.id, via="cli", had_factors=had)
        if not had:
            print(f"{user.username!r} had no second factor; their sessions have ended")
            return
        mailer = Mailer(smtp_url=settings.smtp_url, outbox_dir=settings.data_dir / "outbox")
        await mailer.start()
        Notices(mailer=mailer, site=settings.site_name, base_url=settings.public_url).send(
            Notice.FACTORS_RESET, to=user.email, username=user.username, where=Where(ip="the server's shell", user_agent=None),
        )
        await mailer.stop()
        print(f"removed every second factor of {user.username!r} and ended their sessions; "
              "they can log in with their password and set up a new one")

    run_with_database(settings, reset)
    return 0


def end_sessions(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import accounts, events, sessions

    async def end(db: Database, hasher: PasswordHasher) -> None:
        audit = events.AuditLog(db)
        async with db.sessionmaker() as session:
            if args.all:
                count = await sessions.end_all_sessions(db=session)
                await audit.record(events.Kind.SESSION_REVOKED, via="cli", everyone=True, count=count)
                print(f"ended {count} session(s): everyone must log in again")
                return
            user = await accounts.get_user_by_username(session, args.name)
            if user is None:
                raise CommandFailed(f"no user named {args.name!r}")
            await sessions.end_user_sessions(db=session, user_id=user.id)
        await audit.record(events.Kind.SESSION_REVOKED, user_id=user.id, via="cli", all=True)
        print(f"ended every session of {user.username!r}")

    run_with_database(settings, end)
    return 0
