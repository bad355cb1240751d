"""Health checks of web functions: the runtime asks the app for ``GET path`` in-process;
an app that keeps failing them is replaced, a healthy one is left alone."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import make_zip
from tests.inprocess import Ember
from tests.web.test_custom_runtimes import alive_instances, gone, instance_tree

Run = Callable[..., None]

ASGI_APP = '''
import os

state = {"healthy": True, "checks": 0}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"][len(scope["root_path"]):]  # ASGI paths include the root path
    if path == "/healthz":
        state["checks"] += 1
        print("checked by", dict(scope["headers"]).get(b"user-agent", b"").decode())
        status, body = (200, b"ok") if state["healthy"] else (503, b"sick")
    elif path == "/sicken":
        state["healthy"] = False
        status, body = 200, b"now sick"
    elif path == "/checks":
        status, body = 200, str(state["checks"]).encode()
    else:
        status, body = 200, str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''

WSGI_APP = '''
import os

state = {"healthy": True, "checks": 0}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/healthz":
        state["checks"] += 1
        print("checked by", environ.get("HTTP_USER_AGENT"))
        status, body = ("200 OK", b"ok") if state["healthy"] else ("503 Unavailable", b"sick")
    elif path == "/sicken":
        state["healthy"] = False
        status, body = "200 OK", b"now sick"
    elif path == "/checks":
        status, body = "200 OK", str(state["checks"]).encode()
    else:
        status, body = "200 OK", str(os.getpid()).encode()
    start_response(status, [("content-type", "text/plain")])
    return [body]
'''

CHECK = {"path": "/healthz", "interval_s": 0.1, "timeout_s": 2, "failure_threshold": 2}


async def deploy(ember: Ember, name: str, source: str, **config: Any) -> None:
    await ember.deploy_files(name, {"app.py": source}, kind="web", app="app:app", **config)


@pytest.mark.parametrize("source", [ASGI_APP, WSGI_APP], ids=["asgi", "wsgi"])
def test_a_healthy_web_app_is_checked_and_kept(run: Run, source: str) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy(ember, "site", source, health_check=CHECK)
        pid = (await ember.http.get("/functions/site/http/pid")).text
        for _ in range(1000):  # until the checks have run a few times
            if int((await ember.http.get("/functions/site/http/checks")).text) >= 3:
                break
            await ember.settle()
        else:
            raise AssertionError("the app was never health-checked")
        assert (await ember.http.get("/functions/site/http/pid")).text == pid
        logs = (await ember.http.get("/functions/site/logs",
                                     params={"grep": "checked by"})).json()["logs"]
        assert logs and all(r["line"] == "checked by ember-probe" for r in logs), logs

    run(scenario)


@pytest.mark.parametrize("source", [ASGI_APP, WSGI_APP], ids=["asgi", "wsgi"])
def test_an_unhealthy_web_app_is_replaced(run: Run, source: str) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy(ember, "site", source, min_instances=1, health_check=CHECK)
        for _ in range(400):  # the instance min_instances asks for, then traffic to it
            old = set(alive_instances(ember, "site"))
            if old:
                break
            await asyncio.sleep(0.05)
        assert len(old) == 1
        first = int((await ember.http.get("/functions/site/http/pid")).text)
        assert set(alive_instances(ember, "site")) == old
        tree = instance_tree(ember, "site")
        await ember.http.get("/functions/site/http/sicken")
        # Two failed checks, the instance exits, min_instances brings up a new one.
        for _ in range(400):
            now = set(alive_instances(ember, "site"))
            if now and not now & old:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the unhealthy instance was not replaced")
        after = await ember.http.get("/functions/site/http/pid")
        assert after.status_code == 200 and int(after.text) != first
        assert await gone(tree)
        lines = [r["line"] for r in (await ember.http.get("/functions/site/logs")).json()["logs"]]
        assert any("health check GET /healthz failed (2/2): it answered 503" in line
                   for line in lines), lines
        assert any("unhealthy" in line and "replaced" in line for line in lines), lines

    run(scenario)


def test_health_checks_are_for_web_and_custom_functions(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        code = {"zip": base64.b64encode(make_zip({"main.py": "def handler(e, c): pass\n"}))
                .decode()}
        refused = await ember.http.post("/functions", json={
            "name": "plain", "config": {"health_check": {"path": "/"}}, "code": code})
        assert refused.status_code == 400, refused.text
        assert "web and custom functions" in refused.text
        refused = await ember.http.post("/functions", json={
            "name": "site", "code": code,
            "config": {"kind": "web", "app": "app:app", "startup_probe": {"path": "/"}}})
        assert refused.status_code == 400, refused.text
        assert "'startup_probe' is for custom functions" in refused.text

    run(scenario)
