"""The console's session over HTTP (no browser): a login with an API key sets an HttpOnly
cookie, changes need the CSRF token, revoking the key or logging out ends it, and nothing
usable is stored. Also the page's headers and ``GET /stats``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ember.auth.keys import KeyService
from ember.auth.sessions import RECHECK_S, ConsoleSessions
from ember.clock import ManualClock
from ember.errors import Unauthorized
from ember.settings import Settings
from ember.store.keys import SqlKeyStore
from ember.store.migrate import upgrade
from ember.store.schema import console_sessions
from ember.store.sessions import SqlSessionStore
from ember.store.sql import create_engine
from tests.conftest import ADMIN_KEY, HELLO
from tests.inprocess import Ember, running

Scenario = Callable[[Ember], Awaitable[None]]


def run(settings: Settings, scenario: Scenario, clock: ManualClock | None = None) -> None:
    async def main() -> None:
        async with running(settings, clock) as ember:
            await scenario(ember)

    asyncio.run(main())


def browser(ember: Ember) -> httpx.AsyncClient:
    """A client without the bearer key, keeping cookies, as a browser on the page does."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=ember.app),
                             base_url="http://127.0.0.1:8080")


async def make_key(ember: Ember, name: str, role: str, **extra: object) -> str:
    answer = await ember.http.post("/keys", json={"name": name, "role": role, **extra})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["key"]
    return token


async def login(client: httpx.AsyncClient, key: str) -> str:
    """Logs in; returns the CSRF token."""
    answer = await client.post("/console/session", json={"key": key})
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf"]
    return csrf


def test_login_sets_an_httponly_strict_cookie_and_stores_only_a_digest(
        settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        key = await make_key(ember, "ops", "developer")
        async with browser(ember) as page:
            answer = await page.post("/console/session", json={"key": key})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["key"] == "ops" and body["role"] == "developer"
            assert key not in answer.text
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith("ember_session=")
            for flag in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age="):
                assert flag.lower() in cookie.lower(), cookie
            session_id = page.cookies["ember_session"]
            # The session is who the page says it is.
            me = await page.get("/console/session")
            assert me.json()["key"] == "ops" and me.json()["csrf"] == body["csrf"]
        with ember.services.store.engine.connect() as conn:
            rows = conn.execute(sa.select(console_sessions)).mappings().all()
        assert len(rows) == 1
        stored = " ".join(str(v) for v in rows[0].values())
        assert session_id not in stored and key not in stored
        assert key.split("_", 2)[2] not in stored

    run(settings, scenario)


def test_the_cookie_reads_and_changes_need_the_csrf_token(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("hello", HELLO["main.py"])
        async with browser(ember) as page:
            assert (await page.get("/functions")).status_code == 401
            csrf = await login(page, ADMIN_KEY)
            listed = await page.get("/functions")
            assert listed.status_code == 200
            assert [f["name"] for f in listed.json()["functions"]] == ["hello"]
            refused = await page.post("/functions/hello/disable")
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "Forbidden"
            assert "X-Ember-CSRF" in refused.json()["error"]["message"]
            wrong = await page.post("/functions/hello/disable",
                                    headers={"X-Ember-CSRF": "0" * 64})
            assert wrong.status_code == 403
            done = await page.post("/functions/hello/disable", headers={"X-Ember-CSRF": csrf})
            assert done.status_code == 200 and done.json()["state"] == "disabled"
        audit = await ember.http.get("/audit")
        actions = [(r["key"], r["action"], r["resource"], r["status"])
                   for r in audit.json()["records"]]
        assert ("admin", "POST", "/console/session", 200) in actions
        assert ("admin", "POST", "/functions/hello/disable", 200) in actions
        assert ("admin", "POST", "/functions/hello/disable", 403) in actions

    run(settings, scenario)


def test_a_bad_key_gets_no_session(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        async with browser(ember) as page:
            for key in ("nope", "ek_0123456789abcdef_" + "x" * 43, "et_abc_" + "y" * 43):
                answer = await page.post("/console/session", json={"key": key})
                assert answer.status_code == 401, answer.text
                assert answer.json()["error"]["code"] == "Unauthorized"
                assert "set-cookie" not in answer.headers
            empty = await page.post("/console/session", json={"key": ""})
            assert empty.status_code == 400
            assert empty.json()["error"]["details"]["errors"][0]["field"] == "key"
            # A made-up cookie is no session.
            page.cookies.set("ember_session", "z" * 43)
            assert (await page.get("/functions")).status_code == 401
            assert (await page.get("/console/session")).status_code == 401

    run(settings, scenario)


def test_revoking_the_key_or_logging_out_ends_the_session(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        key = await make_key(ember, "temp", "viewer")
        async with browser(ember) as first, browser(ember) as second:
            await login(first, key)
            await login(second, key)
            assert (await first.get("/functions")).status_code == 200
            # A viewer's session reads but changes nothing, as the key would.
            csrf = (await first.get("/console/session")).json()["csrf"]
            refused = await first.post("/functions", json={}, headers={"X-Ember-CSRF": csrf})
            assert refused.status_code == 403
            out = await first.delete("/console/session")
            assert out.status_code == 204
            assert "ember_session=" in out.headers["set-cookie"]
            assert "ember_session" not in first.cookies
            stale = first.cookies
            assert (await first.get("/functions")).status_code == 401
            assert stale is not None
            assert (await second.get("/functions")).status_code == 200
            assert (await ember.http.delete("/keys/temp")).status_code == 204
            gone = await second.get("/functions")
            assert gone.status_code == 401
            assert "log in again" in gone.json()["error"]["message"]

    run(settings, scenario)


def test_a_session_ends_after_its_lifetime(home: object) -> None:
    clock = ManualClock()
    settings = Settings(home=home, console_session_s=600)  # type: ignore[arg-type]

    async def scenario(ember: Ember) -> None:
        async with browser(ember) as page:
            await login(page, ADMIN_KEY)
            clock.advance(599)
            assert (await page.get("/functions")).status_code == 200
            clock.advance(2)
            assert (await page.get("/functions")).status_code == 401

    run(settings, scenario, clock)


def test_the_page_and_its_assets_come_with_a_strict_policy(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        async with browser(ember) as page:
            for path in ("/console", "/console/", "/console/assets/js/main.js",
                         "/console/assets/vendor/preact-htm-3.1.1.mjs"):
                answer = await page.get(path)
                assert answer.status_code == 200, path
                policy = answer.headers["content-security-policy"]
                assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
                assert answer.headers["x-content-type-options"] == "nosniff"
            assert "text/html" in (await page.get("/console")).headers["content-type"]
            assert "javascript" in (await page.get(
                "/console/assets/js/main.js")).headers["content-type"]
            for bad in ("/console/assets/../routes.py", "/console/assets/%2e%2e/routes.py",
                        "/console/assets/nothing.js"):
                assert (await page.get(bad)).status_code == 404, bad
            # The console is not part of the API's description.
            spec = (await ember.http.get("/openapi.json")).json()
            assert not [p for p in spec["paths"] if p.startswith("/console")]

    run(settings, scenario)


def test_stats_covers_every_function_the_key_reaches(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("orders", HELLO["main.py"])
        await ember.deploy("billing", HELLO["main.py"])
        for name, times in (("orders", 3), ("billing", 2)):
            for _ in range(times):
                answer = await ember.http.post(f"/functions/{name}/invoke", json={"name": "x"})
                assert answer.status_code == 200, answer.text
        overview = (await ember.http.get("/stats", params={"window_s": 3600})).json()
        assert overview["invocations"] == 5 and overview["errors"] == 0
        assert overview["functions"]["orders"]["invocations"] == 3
        assert overview["functions"]["billing"]["invocations"] == 2
        assert sum(point["invocations"] for point in overview["series"]) == 5
        limited = await make_key(ember, "orders-only", "viewer", functions=["orders"])
        async with browser(ember) as page:
            page.headers["Authorization"] = f"Bearer {limited}"
            mine = (await page.get("/stats")).json()
        assert mine["invocations"] == 3 and list(mine["functions"]) == ["orders"]

    run(settings, scenario)


def test_a_logout_on_one_node_ends_the_session_on_another(tmp_path: Path) -> None:
    """Two servers on one store: each trusts what it read of a session for RECHECK_S."""
    engine = create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    clock = ManualClock()
    keys = KeyService(SqlKeyStore(engine), clock)
    token, _ = keys.create("ops", "developer")
    first = ConsoleSessions(SqlSessionStore(engine), keys, clock)
    second = ConsoleSessions(SqlSessionStore(engine), keys, clock)
    made = first.login(token)
    assert second.principal(made.session_id).name == "ops"
    first.logout(made.session_id)
    with pytest.raises(Unauthorized):
        first.principal(made.session_id)
    clock.advance(RECHECK_S)
    assert second.needs_lookup(made.session_id)
    with pytest.raises(Unauthorized):
        second.principal(made.session_id)
    engine.dispose()
