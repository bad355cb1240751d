"""Builds the FastAPI application over the services made by the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

import ember
from ember.api import (
    builds,
    errors,
    functions,
    instances,
    invocations,
    invoke,
    keys,
    layers,
    nodes,
    scaling,
    secrets,
    tasks,
    triggers,
    workflows,
)
from ember.api.auth import Authenticate
from ember.api.guard import RequestGuard
from ember.api.hot import HotInvoke
from ember.api.limits import BodyLimit
from ember.api.schemas import ErrorBody, Health
from ember.console import routes as console
from ember.errors import ServiceUnavailable

if TYPE_CHECKING:
    from ember.bootstrap import Services

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 429, 500, 502, 504)
}


def create_app(services: Services) -> FastAPI:
    """The API app; its lifespan starts and stops ``services``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.close()

    app = _EmberAPI(
        title="Ember",
        version=ember.__version__,
        description="A self-hosted serverless platform for Python functions.",
        lifespan=lifespan,
        responses=_ERRORS,
        # Ember exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would
        # otherwise look up providers in the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    errors.install(app)
    app.include_router(functions.router)
    app.include_router(invoke.router)
    app.include_router(invocations.router)
    app.include_router(instances.router)
    app.include_router(scaling.router)
    app.include_router(tasks.router)
    app.include_router(triggers.router)
    app.include_router(layers.router)
    app.include_router(builds.router)
    app.include_router(workflows.router)
    app.include_router(keys.router)
    app.include_router(secrets.router)
    app.include_router(nodes.router)
    app.include_router(console.router)
    app.mount("/console/assets", console.Assets(), name="console-assets")

    @app.get("/healthz", response_model=Health, tags=["system"],
             responses={503: {"model": ErrorBody}})
    async def healthz() -> Health:
        """``ok``, or 503 ``ServiceUnavailable`` saying why invocations cannot run."""
        problem = services.problem()
        if problem is not None:
            raise ServiceUnavailable(problem)
        return Health(status="ok", version=ember.__version__)

    limits = services.limits
    code_body = limits.max_code_bytes * 4 // 3 + 64 * 1024

    def limit_for(path: str) -> int:
        workflow_limit = workflows.body_limit(path, limits)
        if workflow_limit is not None:
            return workflow_limit
        # Async payloads have their own, smaller limit, checked once the mode is known.
        if (path.endswith("/invoke") or path.startswith("/http")
                or triggers.direct_http_target(path) is not None):
            return limits.max_sync_payload_bytes
        return code_body

    settings = services.settings
    origins = settings.origin_list()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["*"])
    allowed_hosts = settings.host_list()

    def front(stack: ASGIApp) -> ASGIApp:
        # The guard and the body limit apply to the fast path too.
        limited = BodyLimit(invoke.InvokeFastPath(stack, services), limit_for)
        peers = services.peers
        authenticated = Authenticate(limited, services.keys, services.audit.record,
                                     services.sessions,
                                     peers.credential if peers is not None else None)
        guard = RequestGuard(authenticated, [*allowed_hosts, *_origin_hosts(origins)])
        return HotInvoke(guard, services, services.keys,
                         peers.credential if peers is not None else None,
                         limits.max_sync_payload_bytes)

    app.front = front
    return app


def _origin_hosts(origins: list[str]) -> list[str]:
    """The host names of the CORS origins: pages there may change things too."""
    return [urlsplit(origin).hostname or "" for origin in origins if origin != "*"]


class _EmberAPI(FastAPI):
    """FastAPI with ``front`` wrapped around its whole middleware stack: the invoke fast
    path answers warm invocations before FastAPI's error and telemetry wrappers, which
    cost a noticeable share of them (the fast path renders its own errors)."""

    front: Callable[[ASGIApp], ASGIApp] = staticmethod(lambda stack: stack)

    def build_middleware_stack(self) -> ASGIApp:
        return self.front(super().build_middleware_stack())
