"""The warm path of POST /functions/{name}/invoke (``ember.api.hot``) answers what the full
stack answers: it serves a program's usual request itself, and every request it is not
sure of — a key not seen yet, one refused, a browser's headers, a foreign host, a body
over the limit or of unknown length — goes through the full stack and gets its answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

import ember.api.hot
from ember.settings import Settings
from tests.conftest import AUTH, HELLO
from tests.inprocess import Ember, running

Scenario = Callable[[Ember, list[str]], Awaitable[None]]


def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, scenario: Scenario) -> None:
    """Run ``scenario`` with what the warm path served: a function's name for an invoke,
    the path for a trigger's request."""
    served: list[str] = []
    real = ember.api.hot.run_invoke

    async def counting(services: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        served.append(name)
        return await real(services, name, *args, **kwargs)

    monkeypatch.setattr(ember.api.hot, "run_invoke", counting)
    real_trigger = ember.api.hot.serve_http_trigger

    async def counting_trigger(services: Any, path: str, request: Any, body: bytes) -> Any:
        served.append(f"/http{path}")
        return await real_trigger(services, path, request, body)

    monkeypatch.setattr(ember.api.hot, "serve_http_trigger", counting_trigger)

    async def main() -> None:
        async with running(settings) as server:
            await scenario(server, served)

    asyncio.run(main())


def client(server: Ember, key: str | None = None, host: str = "127.0.0.1",
           **headers: str) -> httpx.AsyncClient:
    sent = dict(AUTH) if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app),  # type: ignore[arg-type]
                             base_url=f"http://{host}", headers={**sent, **headers})


async def make_key(server: Ember, name: str, role: str, **extra: Any) -> str:
    answer = await server.http.post("/keys", json={"name": name, "role": role, **extra})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def test_the_usual_request_is_served_on_the_warm_path(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(server: Ember, served: list[str]) -> None:
        await server.deploy("hello", HELLO["main.py"])
        async with client(server) as http:
            answer = await http.post("/functions/hello/invoke", json={"name": "warm"})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"hello": {"name": "warm"}}
            assert answer.headers["x-ember-version"] == "latest"
            assert answer.headers["x-ember-request-id"]
            tail = await http.post("/functions/hello/invoke", json={},
                                   headers={"X-Ember-Log-Type": "Tail"})
            assert tail.status_code == 200 and "x-ember-log-tail" in tail.headers
            queued = await http.post("/functions/hello/invoke", json={},
                                     headers={"X-Ember-Invocation-Type": "async"})
            assert queued.status_code == 202, queued.text
            await http.post("/functions/hello/versions", json={})
            pinned = await http.post("/functions/hello/invoke", params={"qualifier": "1"},
                                     json={})
            assert pinned.headers["x-ember-version"] == "1"
            missing = await http.post("/functions/nope/invoke", json={})
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "FunctionNotFound"
        assert served == ["hello"] * 4 + ["nope"]

    run(settings, monkeypatch, scenario)


def test_keys_are_checked_as_on_every_route(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(server: Ember, served: list[str]) -> None:
        await server.deploy("orders", HELLO["main.py"])
        await server.deploy("billing", HELLO["main.py"])
        invoker = await make_key(server, "caller", "invoker", functions=["orders"])
        viewer = await make_key(server, "watcher", "viewer")
        async with client(server, invoker) as http:
            # A key not seen yet is looked up by the full stack, then known here.
            for _ in range(2):
                assert (await http.post("/functions/orders/invoke", json={})).status_code == 200
            refused = await http.post("/functions/billing/invoke", json={})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "Forbidden"
        assert served == ["orders"]
        async with client(server, viewer) as http:
            assert (await http.post("/functions/orders/invoke", json={})).status_code == 403
        for key in ("ek_0123456789abcdef_" + "x" * 43, "not-a-key", ""):
            async with client(server, key) as http:
                answer = await http.post("/functions/orders/invoke", json={})
                assert answer.status_code == 401, key
                assert answer.headers["www-authenticate"] == 'Bearer realm="ember"'
        assert (await server.http.delete("/keys/caller")).status_code == 204
        async with client(server, invoker) as http:
            assert (await http.post("/functions/orders/invoke", json={})).status_code == 401
        assert served == ["orders"]

    run(settings, monkeypatch, scenario)


def test_browsers_foreign_hosts_and_large_bodies_get_the_full_stacks_answer(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(server: Ember, served: list[str]) -> None:
        await server.deploy("hello", HELLO["main.py"])
        async with client(server, host="attacker.example") as http:
            answer = await http.post("/functions/hello/invoke", json={})
            assert answer.status_code == 400
            assert answer.json()["error"]["details"]["field"] == "Host"
        async with client(server, origin="http://attacker.example") as http:
            answer = await http.post("/functions/hello/invoke", json={})
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "Forbidden"
        limit = server.services.limits.max_sync_payload_bytes
        async with client(server) as http:
            answer = await http.post("/functions/hello/invoke", content=b"1" * (limit + 1),
                                     headers={"Content-Type": "application/json"})
            assert answer.status_code == 413
            assert answer.json()["error"]["code"] == "PayloadTooLarge"

            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"name": '
                yield b'"chunked"}'

            chunked = await http.post("/functions/hello/invoke", content=chunks(),
                                      headers={"Content-Type": "application/json"})
            assert chunked.status_code == 200, chunked.text
            assert chunked.json() == {"hello": {"name": "chunked"}}
            nul = await http.post("/functions/hello/invoke?qualifier=%00", json={})
            assert nul.status_code == 400
        assert served == []

    run(settings, monkeypatch, scenario)


def test_http_triggers_are_served_on_the_warm_path_and_keep_their_own_auth(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(server: Ember, served: list[str]) -> None:
        await server.deploy("hello", HELLO["main.py"])
        for name, source in (("open", {"kind": "http", "path": "/open"}),
                             ("guarded", {"kind": "http", "path": "/guarded",
                                          "auth": "api_key", "api_key": "k" * 24})):
            created = await server.http.post("/triggers", json={
                "name": name, "function": "hello", "source": source})
            assert created.status_code == 201, created.text
        await server.settle()
        async with client(server) as anonymous:  # an API key means nothing to a trigger
            answer = await anonymous.post("/http/open", json={"n": 1})
            assert answer.status_code == 200, answer.text
            assert answer.json()["hello"]["type"] == "dev.ember.http.request"
            assert (await anonymous.get("/http/guarded")).status_code == 401
            ok = await anonymous.get("/http/guarded", headers={"x-api-key": "k" * 24})
            assert ok.status_code == 200
            assert (await anonymous.get("/http/nowhere")).status_code == 404
        assert served == ["/http/open", "/http/guarded", "/http/guarded", "/http/nowhere"]
        async with client(server, origin="http://attacker.example") as browser:
            answer = await browser.post("/http/open", json={})
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "Forbidden"
        async with client(server, host="attacker.example") as rebound:
            assert (await rebound.post("/http/open", json={})).status_code == 400
        assert len(served) == 4

    run(settings, monkeypatch, scenario)
