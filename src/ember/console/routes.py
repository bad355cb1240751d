"""``/console``: the page, its assets, and the session a login with an API key opens.

- ``GET /console`` — the single page (its views are addressed after ``#``).
- ``GET /console/assets/...`` — scripts, styles and vendored libraries, shipped in the
  package (no CDN: the console works offline).
- ``POST /console/session`` ``{"key": "ek_…"}`` — log in: sets the HttpOnly session cookie
  and answers who is logged in and the CSRF token that changes need.
- ``GET /console/session`` — who the cookie's session is (the page asks after a reload).
- ``DELETE /console/session`` — log out.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ember.api.auth import session_cookie
from ember.auth.keys import Principal
from ember.auth.sessions import COOKIE, ConsoleSessions
from ember.errors import EmberError, Unauthorized

STATIC = Path(__file__).parent / "static"

# The page loads only what this server sends: no inline script, no other origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256, description="an API key (ek_…)")


class SessionOut(BaseModel):
    key: str
    role: str
    functions: list[str]
    expires_at: datetime | None
    csrf: str


def _sessions(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.services.sessions
    return sessions


def _out(principal: Principal, expires: float | None, csrf: str) -> SessionOut:
    return SessionOut(
        key=principal.name, role=principal.role, functions=list(principal.functions),
        expires_at=datetime.fromtimestamp(expires, UTC) if expires is not None else None,
        csrf=csrf,
    )


@router.get("/console")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={
        **SECURITY_HEADERS, "Cache-Control": "no-store"})


@router.get("/console/")
async def page_slash() -> FileResponse:
    return await page()


@router.post("/console/session", response_model=SessionOut)
async def login(body: LoginIn, request: Request, response: Response) -> SessionOut:
    services = request.app.state.services
    sessions = _sessions(request)
    try:
        made = await asyncio.to_thread(sessions.login, body.key)
    except EmberError as err:
        await services.audit.record("(no valid key)", "POST", "/console/session",
                                    err.http_status)
        raise
    await services.audit.record(made.principal.name, "POST", "/console/session", 200)
    max_age = max(1, int(made.expires_at - services.clock.time()))
    response.set_cookie(
        COOKIE, made.session_id, max_age=max_age, path="/", httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return _out(made.principal, made.expires_at, made.csrf)


@router.get("/console/session", response_model=SessionOut)
async def whoami(request: Request, response: Response) -> SessionOut:
    session = session_cookie(request.scope)
    if session is None:
        raise Unauthorized("not logged in to the console", {"header": "Cookie"})
    sessions = _sessions(request)
    principal = await sessions.principal_async(session)
    response.headers["Cache-Control"] = "no-store"
    return _out(principal, None, sessions.csrf(session))


@router.delete("/console/session", status_code=204)
async def logout(request: Request) -> Response:
    session = session_cookie(request.scope)
    if session is not None:
        await asyncio.to_thread(_sessions(request).logout, session)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


class Assets:
    """The static files, with the console's security headers."""

    def __init__(self) -> None:
        self._files = StaticFiles(directory=STATIC, follow_symlink=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode())
                            for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await self._files(scope, receive, with_headers)
