"""What a user would pick instead of authsite, serving bench/apps.py's page to a logged-in user.

uvicorn loads them by factory, as bench/apps.py's apps:

- `bench.peers:signed_cookie_app`: Starlette's SessionMiddleware, the whole session in a signed
  cookie, no database; /login puts the username in it (checked against the bench's one user).
- `bench.peers:fastapi_users_app`: fastapi-users with its cookie transport and DatabaseStrategy
  (access tokens in a table), on SQLAlchemy and aiosqlite; the tables are created at start,
  the bench registers its user through /auth/register.

fastapi-users' SQLite file is BENCH_PEER_DATABASE_URL (bench/tools.py's peer_env), apart from authsite's.
"""

import os
import secrets
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyAccessTokenDatabase, SQLAlchemyBaseAccessTokenTableUUID
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from starlette.middleware.sessions import SessionMiddleware

from bench.apps import PAGE
from bench.tools import PASSWORD, SECRET, USERNAME


def _app(**options) -> FastAPI:
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **options)


def signed_cookie_app() -> FastAPI:
    app = _app()
    app.add_middleware(SessionMiddleware, secret_key=SECRET)

    @app.get("/page", response_class=HTMLResponse)
    async def page(request: Request) -> str:
        username = request.session.get("username")
        if username is None:
            raise HTTPException(401)
        return PAGE.format(name=username)

    @app.post("/login", status_code=204)
    async def login(request: Request) -> None:
        credentials = await request.json()
        if not (secrets.compare_digest(credentials.get("username", ""), USERNAME)
                and secrets.compare_digest(credentials.get("password", ""), PASSWORD)):
            raise HTTPException(401)
        request.session["username"] = USERNAME

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


class _Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, _Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, _Base):
    pass


class _UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = verification_token_secret = SECRET


def fastapi_users_app() -> FastAPI:
    engine = create_async_engine(os.environ["BENCH_PEER_DATABASE_URL"])
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def database():
        async with sessions() as session:
            yield session

    async def user_manager(session=Depends(database)):
        yield _UserManager(SQLAlchemyUserDatabase(session, User))

    def strategy(session=Depends(database)) -> DatabaseStrategy:
        return DatabaseStrategy(SQLAlchemyAccessTokenDatabase(session, AccessToken), lifetime_seconds=14 * 86400)

    # cookie_secure=False: the bench speaks plain HTTP on loopback.
    backend = AuthenticationBackend(name="cookie", transport=CookieTransport(cookie_secure=False),
                                    get_strategy=strategy)
    users = FastAPIUsers[User, uuid.UUID](user_manager, [backend])
    current_user = users.current_user(active=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        yield
        await engine.dispose()

    app = _app(lifespan=lifespan)

    @app.get("/page", response_class=HTMLResponse)
    async def page(user: User = Depends(current_user)) -> str:
        return PAGE.format(name=user.email.split("@")[0])

    app.include_router(users.get_auth_router(backend), prefix="/auth")
    app.include_router(users.get_register_router(schemas.BaseUser[uuid.UUID], schemas.BaseUserCreate), prefix="/auth")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app
