"""An existing FastAPI app that adds authsite in a few lines.

Run it from the top of the repository:

    uvicorn examples.existing_app:app

then open http://127.0.0.1:8000/dashboard (you will be sent to the login page;
create a user first with `python run.py create-user NAME`).
"""

from html import escape

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from authsite import AuthSite, CurrentUser, Settings

app = FastAPI(title="My existing app")
auth = AuthSite(Settings())
auth.install(app)


@app.get("/ping")
async def ping() -> dict:
    """A public route the host app already had."""
    return {"pong": True}


@app.get("/dashboard", response_class=HTMLResponse)
async def dashboard(user: CurrentUser) -> str:
    return f"<h1>Hello, {escape(user.display_name)}</h1><p>Only logged-in people see this.</p>"


@app.get("/reports", dependencies=[Depends(auth.require("admin"))])
async def reports(request: Request) -> dict:
    return {"reports": [], "viewer": request.user.username, "scopes": list(request.auth)}
