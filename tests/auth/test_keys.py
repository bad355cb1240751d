"""API keys and roles through the API: what needs a key, what each role may do, keys shown
once and stored as digests, the audit of changes, the first admin key."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ember.auth.keys import KeyService
from ember.bootstrap import build
from ember.clock import ManualClock
from ember.errors import Unauthorized
from ember.settings import Settings
from ember.store.keys import SqlKeyStore
from ember.store.migrate import upgrade
from ember.store.schema import api_keys
from ember.store.sql import create_engine
from tests.conftest import AUTH, HELLO, make_zip
from tests.inprocess import Ember, running

Scenario = Callable[[Ember], Awaitable[None]]


def run(settings: Settings, scenario: Scenario) -> None:
    async def main() -> None:
        async with running(settings) as ember:
            await scenario(ember)

    asyncio.run(main())


def as_key(ember: Ember, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=ember.app),
                             base_url="http://ember", headers=headers)


async def make_key(ember: Ember, name: str, role: str, **extra: Any) -> str:
    answer = await ember.http.post("/keys", json={"name": name, "role": role, **extra})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["key"]
    return token


CODE = {"zip": base64.b64encode(make_zip(HELLO)).decode()}


def test_every_api_route_needs_a_key_but_health_and_http_triggers(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("hello", HELLO["main.py"])
        created = await ember.http.post("/triggers", json={
            "name": "web", "function": "hello", "source": {"kind": "http", "path": "/hi"}})
        assert created.status_code == 201, created.text
        async with as_key(ember, None) as anonymous:
            for method, path in [("GET", "/functions"), ("POST", "/functions/hello/invoke"),
                                 ("GET", "/metrics"), ("GET", "/openapi.json"),
                                 ("DELETE", "/functions/hello"), ("GET", "/keys"),
                                 ("POST", "/events"), ("GET", "/workflows"),
                                 ("GET", "/tasks/x"), ("GET", "/secrets")]:
                answer = await anonymous.request(method, path)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "Unauthorized"
                assert answer.headers["www-authenticate"].startswith("Bearer")
            assert (await anonymous.get("/healthz")).status_code == 200
            assert (await anonymous.get("/http/hi")).status_code == 200
        async with as_key(ember, "ek_0123456789abcdef_" + "x" * 43) as unknown:
            assert (await unknown.get("/functions")).status_code == 401
        async with as_key(ember, "not-a-key") as wrong:
            assert (await wrong.get("/functions")).status_code == 401

    run(settings, scenario)


def test_roles_and_patterns(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("orders-api", HELLO["main.py"])
        await ember.deploy("billing", HELLO["main.py"])
        viewer = await make_key(ember, "watcher", "viewer")
        invoker = await make_key(ember, "caller", "invoker", functions=["orders-*"])
        developer = await make_key(ember, "dev", "developer", functions=["orders-*"])
        async with as_key(ember, viewer) as http:
            assert (await http.get("/functions")).status_code == 200
            assert (await http.get("/functions/billing/logs")).status_code == 200
            refused = await http.post("/functions/billing/invoke", json={})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "Forbidden"
            assert (await http.post("/functions/billing/disable")).status_code == 403
            assert (await http.get("/keys")).status_code == 403
        async with as_key(ember, invoker) as http:
            assert (await http.post("/functions/orders-api/invoke", json=1)).status_code == 200
            # Its pattern does not reach billing: the invoke route is no way around it.
            assert (await http.post("/functions/billing/invoke", json=1)).status_code == 403
            assert (await http.post("/functions/orders-api/disable")).status_code == 403
            assert (await http.get("/functions")).status_code == 403
        async with as_key(ember, developer) as http:
            created = await http.post("/functions", json={
                "name": "orders-worker", "config": {}, "code": CODE})
            assert created.status_code == 201, created.text
            other = await http.post("/functions", json={
                "name": "payroll", "config": {}, "code": CODE})
            assert other.status_code == 403
            assert (await http.post("/functions/orders-api/versions", json={})).status_code == 201
            assert (await http.post("/functions/billing/versions", json={})).status_code == 403
            assert (await http.post("/keys", json={"name": "x", "role": "admin"})
                    ).status_code == 403
            assert (await http.get("/audit")).status_code == 403

    run(settings, scenario)


def test_a_key_is_shown_once_stored_as_a_digest_and_revoked_at_once(
    settings: Settings,
) -> None:
    async def scenario(ember: Ember) -> None:
        token = await make_key(ember, "ci", "developer")
        listed = (await ember.http.get("/keys")).json()["keys"]
        names = {k["name"]: k for k in listed}
        assert names["ci"]["role"] == "developer" and "key" not in names["ci"]
        engine = ember.services.store.engine
        with engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys)).mappings().all()
        stored = " ".join(str(v) for row in rows for v in row.values())
        assert token.split("_", 2)[2] not in stored
        async with as_key(ember, token) as http:
            assert (await http.get("/functions")).status_code == 200
            revoked = await ember.http.delete("/keys/ci")
            assert revoked.status_code == 204
            assert (await http.get("/functions")).status_code == 401
        again = await ember.http.delete("/keys/ci")
        assert again.status_code == 404 and again.json()["error"]["code"] == "KeyNotFound"
        bad = await ember.http.post("/keys", json={"name": "Bad Name", "role": "boss"})
        assert bad.status_code == 400
        fields = {e["field"] for e in bad.json()["error"]["details"]["errors"]}
        assert {"body.name", "body.role"} <= fields or {"name", "role"} <= fields

    run(settings, scenario)


def test_every_change_is_audited_with_its_key(settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        developer = await make_key(ember, "dev", "developer")
        viewer = await make_key(ember, "watcher", "viewer")
        async with as_key(ember, developer) as http:
            created = await http.post("/functions", json={"name": "f", "config": {},
                                                          "code": CODE})
            assert created.status_code == 201
            await http.post("/functions/f/invoke", json={})  # data plane: not audited
        async with as_key(ember, viewer) as http:
            assert (await http.delete("/functions/f")).status_code == 403
        records = (await ember.http.get("/audit")).json()["records"]
        seen = [(r["key"], r["action"], r["resource"], r["status"]) for r in records]
        assert ("dev", "POST", "/functions", 201) in seen
        assert ("watcher", "DELETE", "/functions/f", 403) in seen
        assert ("admin", "POST", "/keys", 201) in seen
        assert not any(r[2].endswith("/invoke") for r in seen)
        only = (await ember.http.get("/audit", params={"key": "dev"})).json()["records"]
        assert {r["key"] for r in only} == {"dev"}

    run(settings, scenario)


def test_an_expired_key_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        upgrade(engine)
        clock = ManualClock(1_800_000_000)
        keys = KeyService(SqlKeyStore(engine), clock)
        token, _ = keys.create("short", "viewer", expires_in_s=60)
        assert keys.authenticate(token).name == "short"
        clock.advance(61)
        with pytest.raises(Unauthorized):
            keys.authenticate(token)
    finally:
        engine.dispose()


def test_the_first_start_makes_an_admin_key_in_home(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBER_ADMIN_KEY")
    home = tmp_path / "home"
    first = build(Settings(home=home))
    try:
        assert first.new_admin_key is not None
        path = home / "admin.key"
        assert path.read_text().strip() == first.new_admin_key
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert first.keys.authenticate(first.new_admin_key).role == "admin"
    finally:
        first.store.close()
    second = build(Settings(home=home))
    try:
        assert second.new_admin_key is None  # made once
    finally:
        second.store.close()


def test_clients_find_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ember.client import find_api_key

    monkeypatch.delenv("EMBER_API_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))
    assert find_api_key() is None
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "admin.key").write_text("from-home\n")
    assert find_api_key() == "from-home"
    (tmp_path / "config" / "ember").mkdir(parents=True)
    (tmp_path / "config" / "ember" / "credentials").write_text("from-config\n")
    assert find_api_key() == "from-config"
    monkeypatch.setenv("EMBER_API_KEY", "from-env")
    assert find_api_key() == "from-env"
    assert find_api_key("given") == "given"
    assert AUTH  # the suite's own key is the admin key of every test server


def test_no_route_of_the_api_answers_without_a_valid_key(settings: Settings) -> None:
    """Every operation of the OpenAPI document, called without a key, with a made-up one
    and with a revoked one: 401, but ``/healthz``."""

    async def scenario(ember: Ember) -> None:
        spec = (await ember.http.get("/openapi.json")).json()
        revoked = await make_key(ember, "gone", "admin")
        assert (await ember.http.delete("/keys/gone")).status_code == 204
        tried = 0
        for template, operations in spec["paths"].items():
            if template.startswith("/http"):
                continue  # HTTP triggers keep their own auth
            path = template
            for name in ("name", "alias", "number", "task_id", "execution_id", "build_id",
                         "version", "function", "trigger", "layer", "request_id", "id", "node"):
                path = path.replace("{" + name + "}", "x1")
            path = path.replace("{path}", "a/b")
            assert "{" not in path, template
            for method in operations:
                if method == "options":
                    continue  # a CORS preflight carries no key
                for key in (None, "ek_0123456789abcdef_" + "A" * 43, revoked):
                    async with as_key(ember, key) as http:
                        answer = await http.request(method.upper(), path)
                    expected = 200 if path == "/healthz" else 401
                    assert answer.status_code == expected, (method, path, key, answer.text)
                tried += 1
        assert tried > 50

    run(settings, scenario)
