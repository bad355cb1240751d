"""The one place where errors become HTTP answers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ember.control.validation import field_errors, invalid_spec
from ember.errors import EmberError, InvalidRequest, NotFound

log = logging.getLogger(__name__)


def error_response(err: EmberError) -> JSONResponse:
    return JSONResponse(
        {"error": err.to_dict()}, status_code=err.http_status, headers=err.headers or None
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(EmberError)
    async def _ember(_: Request, exc: EmberError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        return error_response(invalid_spec(errors))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err: EmberError = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = InvalidRequest(f"method {request.method} is not allowed on {request.url.path}")
            return JSONResponse({"error": err.to_dict()}, status_code=405)
        else:
            err = InvalidRequest(str(exc.detail))
            return JSONResponse({"error": err.to_dict()}, status_code=exc.status_code)
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(EmberError(f"internal error: {type(exc).__name__}: {exc}"))
