"""An Ember server in this process, on one event loop, driven through its HTTP API."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ember.api import create_app
from ember.bootstrap import Services, build
from ember.clock import Clock
from ember.pool.pool import VersionPool
from ember.queue.worker import AsyncInvoker
from ember.settings import Settings
from tests.conftest import AUTH, make_zip
from tests.waiting import until


class Ember:
    """An in-process server on one event loop, driven through its HTTP API."""

    def __init__(self, http: httpx.AsyncClient, services: Services, app: Any = None) -> None:
        self.http = http
        self.services = services
        self.app = app

    async def deploy(self, name: str, source: str, **config: Any) -> dict[str, Any]:
        return await self.deploy_files(name, {"main.py": source}, **config)

    async def deploy_files(
        self, name: str, files: dict[str, str | bytes], **config: Any
    ) -> dict[str, Any]:
        code = {"zip": base64.b64encode(make_zip(files)).decode()}
        answer = await self.http.post(
            "/functions", json={"name": name, "config": config, "code": code}
        )
        assert answer.status_code == 201, answer.text
        await self.settle()
        return dict(answer.json())

    async def update_code(self, name: str, source: str) -> None:
        code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
        answer = await self.http.put(f"/functions/{name}/code", json=code)
        assert answer.status_code == 200, answer.text
        await self.settle()

    async def invoke(self, name: str, event: Any = None, **params: Any) -> httpx.Response:
        headers = params.pop("headers", {})
        return await self.http.post(
            f"/functions/{name}/invoke", json=event, params=params, headers=headers
        )

    async def settle(self) -> None:
        """Wait until the server has reacted to every control-plane change made so far.

        A change reaches the router, the trigger supervisor and the async worker as a
        callback queued on this loop before the API answers; each reacts in a task of its
        own, awaited here."""
        services = self.services
        refresh = AsyncInvoker._refresh_paused.__code__  # the worker keeps no task set
        while True:
            await asyncio.sleep(0)  # callbacks queued from the API's threads run first
            await services.router.wait_settled()
            await services.supervisor.wait_settled()
            worker = [t for t in asyncio.all_tasks()
                      if not t.done() and getattr(t.get_coro(), "cr_code", None) is refresh]
            if not worker:
                return
            await asyncio.gather(*worker, return_exceptions=True)

    @asynccontextmanager
    async def served(self) -> AsyncIterator[httpx.AsyncClient]:
        """The same server on a real port (uvicorn), for what ASGITransport cannot show:
        responses that stream, many connections at once."""
        import socket

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, lifespan="off", log_level="warning"))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        await until(lambda: server.started or task.done(), message="uvicorn started")
        if task.done():
            task.result()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=60, headers=AUTH) as client:
                yield client
        finally:
            server.should_exit = True
            await task
            sock.close()

    def pools(self, name: str) -> list[VersionPool]:
        """The pools of ``name``'s versions."""
        return [p for p in self.services.router._pools.pools() if p.key.function == name]

    def instances(self, name: str) -> int:
        """``name``'s instances: starting, idle or busy."""
        return sum(p.size for p in self.pools(name))

    def idle(self, name: str) -> int:
        return sum(len(p.idle) for p in self.pools(name))

    def busy(self, name: str) -> int:
        return sum(len(p.busy) for p in self.pools(name))

    def waiting(self, name: str) -> bool:
        """Whether a request for ``name`` waits for an instance."""
        return any(p.has_waiters() for p in self.pools(name))


@asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Ember]:
    services = build(settings, clock)
    app = create_app(services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ember",
                                     timeout=60, headers=AUTH) as http:
            yield Ember(http, services, app)


Scenario = Callable[[Ember], Awaitable[None]]
