"""The one place where errors become HTTP answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ember.control.validation import field_errors, invalid_spec
from ember.errors import EmberError, InvalidPolicy, InvalidRequest, MethodNotAllowed, NotFound
from ember.ids import new_id

log = logging.getLogger(__name__)

# A request id a client sent is kept when it is a plain token (it goes into the log line).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def error_response(err: EmberError) -> JSONResponse:
    return JSONResponse(
        {"error": err.to_dict()}, status_code=err.http_status, headers=err.headers or None
    )


def unexpected_response(
    exc: BaseException, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]
) -> JSONResponse:
    """The answer to an error that is not an EmberError: a bug or a failure of the server.
    Its text may hold paths, SQL or secrets, so it goes to the log under a request id (the
    request's own ``X-Ember-Request-Id`` when it sent one, else a new one) and the client
    gets that id, in the details and in the header, and a generic message."""
    request_id = None
    for name, value in headers:
        if name.lower() == b"x-ember-request-id":
            text = value.decode("latin-1")
            request_id = text if _REQUEST_ID_RE.match(text) else None
    request_id = request_id or new_id()
    log.error("unexpected error on %s %s, request %s", method, path, request_id, exc_info=exc)
    err = EmberError(
        f"internal error: the server's log has the details under request id {request_id}",
        {"request_id": request_id},
    )
    err.headers["X-Ember-Request-Id"] = request_id
    return error_response(err)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes on the request's path. (Starlette's own ``Allow``
    names only those of the first route matching the path.)"""
    routes = request.app.router.routes
    return [
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(EmberError)
    async def _ember(_: Request, exc: EmberError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        err = invalid_spec(errors)
        if request.url.path.endswith("/provisioned"):
            err = InvalidPolicy(err.message, err.details)
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err: EmberError = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            err = MethodNotAllowed(
                f"method {request.method} is not allowed on {request.url.path}: "
                f"{', '.join(allowed)}",
                {"allowed": allowed},
            )
            err.headers["Allow"] = ", ".join(allowed)
            return error_response(err)
        else:
            err = InvalidRequest(str(exc.detail))
            return JSONResponse({"error": err.to_dict()}, status_code=exc.status_code,
                                headers=exc.headers)
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_response(exc, request.method, request.url.path, request.scope["headers"])
