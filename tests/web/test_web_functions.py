"""Web functions: real FastAPI (ASGI) and Flask (WSGI) apps served inside instances and
called through HTTP triggers, over a real port where streaming matters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HOST_FILES
from tests.inprocess import Ember
from tests.triggers.test_api import trigger

Run = Callable[..., None]

FASTAPI_APP = '''
import asyncio, logging
from fastapi import FastAPI, Form, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

log = logging.getLogger("shop")
started = []
app = FastAPI()


@app.on_event("startup")
async def startup():
    started.append(True)


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None):
    return {"id": item_id, "q": q, "started": len(started)}


@app.post("/echo")
async def echo(request: Request):
    body = await request.json()
    log.warning("echoing %s", body)
    return {"got": body, "agent": request.headers.get("user-agent"),
            "url": str(request.url_for("echo")),
            "request_id": request.headers.get("x-ember-request-id"),
            "trigger": request.headers.get("x-ember-trigger")}


@app.post("/form")
async def form(name: str = Form(), size: int = Form()):
    return {"name": name, "size": size}


@app.get("/login")
async def login(response: Response):
    response.set_cookie("session", "s3cr3t", httponly=True)
    response.set_cookie("theme", "dark")
    return {"ok": True}


@app.get("/whoami")
async def whoami(request: Request):
    return {"session": request.cookies.get("session"), "theme": request.cookies.get("theme")}


@app.get("/download")
async def download():
    return Response(bytes(range(256)) * 4, media_type="application/octet-stream",
                    headers={"content-disposition": "attachment; filename=blob.bin"})


@app.post("/upload")
async def upload(request: Request):
    data = await request.body()
    return {"size": len(data), "sum": sum(data)}


released = asyncio.Event()


@app.get("/stream")
async def stream(n: int = 3, delay: float = 0.2, hold: bool = False):
    async def parts():
        for i in range(n):
            yield f"part {i}\\n".encode()
            if hold and i == 0:  # the rest only once /release is called
                await asyncio.wait_for(released.wait(), 10)
            else:
                await asyncio.sleep(delay)
    return StreamingResponse(parts(), media_type="text/plain")


@app.get("/release")
async def release():
    released.set()
    return {"released": True}


@app.get("/teapot")
async def teapot():
    return JSONResponse({"short": "stout"}, status_code=418)


@app.get("/boom")
async def boom():
    raise RuntimeError("kaboom")


@app.get("/slow")
async def slow(seconds: float = 0.3):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.post("/invoke")
async def invoke(request: Request):
    event = await request.json()
    return {"event": event, "request_id": request.headers.get("x-ember-request-id")}
'''

FLASK_APP = '''
import asyncio
import threading
import time
from flask import Flask, Response, jsonify, make_response, request, stream_with_context, url_for

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"), many=request.args.getlist("tag"))


@app.post("/echo")
def echo():
    return jsonify(got=request.get_json(), url=url_for("echo", _external=False),
                   method=request.method)


@app.post("/form")
def form():
    return jsonify(name=request.form["name"], size=int(request.form["size"]))


@app.get("/login")
def login():
    response = make_response(jsonify(ok=True))
    response.set_cookie("session", "s3cr3t", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@app.get("/whoami")
def whoami():
    return jsonify(session=request.cookies.get("session"), theme=request.cookies.get("theme"))


@app.get("/download")
def download():
    return Response(bytes(range(256)) * 4, mimetype="application/octet-stream")


released = threading.Event()


@app.get("/stream")
def stream():
    n = int(request.args.get("n", 3))
    delay = float(request.args.get("delay", 0.2))
    hold = request.args.get("hold") == "true"

    def parts():
        for i in range(n):
            yield f"part {i}\\n"
            if hold and i == 0:  # the rest only once /release is called
                if not released.wait(10):
                    raise RuntimeError("never released: the first part did not stream")
            else:
                time.sleep(delay)
    return Response(stream_with_context(parts()), mimetype="text/plain")


@app.get("/release")
def release():
    released.set()
    return jsonify(released=True)


@app.get("/teapot")
def teapot():
    return jsonify(short="stout"), 418


@app.get("/boom")
def boom():
    raise RuntimeError("kaboom")


@app.post("/invoke")
def invoke():
    return jsonify(event=request.get_json(), request_id=request.headers.get("x-ember-request-id"))
'''


async def deploy_app(ember: Ember, name: str, source: str, path: str, **config: Any) -> None:
    await ember.deploy_files(name, {"app.py": source}, kind="web", app="app:app", **config)
    await trigger(ember, f"{name}-http", name, {"kind": "http", "path": path, "methods": [
        "GET", "HEAD", "POST", "PUT", "DELETE"]})
    await ember.settle()


async def exercise_app(ember: Ember, base: str, *, asgi: bool) -> None:
    """What both apps must do the same way through an HTTP trigger."""
    http = ember.http
    item = await http.get(f"{base}/items/7", params={"q": "blue"})
    assert item.status_code == 200, item.text
    assert item.json()["id"] == 7 and item.json()["q"] == "blue"
    assert item.headers["x-ember-request-id"]

    echo = await http.post(f"{base}/echo", json={"a": [1, 2]},
                           headers={"user-agent": "ember-test"})
    assert echo.status_code == 200, echo.text
    assert echo.json()["got"] == {"a": [1, 2]}
    # The app sees its mount point: URLs it builds point back through the trigger.
    assert echo.json()["url"].endswith(f"/http{base.removeprefix('/http')}/echo")

    form = await http.post(f"{base}/form", data={"name": "lamp", "size": "3"})
    assert form.json() == {"name": "lamp", "size": 3}

    login = await http.get(f"{base}/login")
    cookies = login.headers.get_list("set-cookie")
    assert len(cookies) == 2, cookies
    assert any(c.startswith("session=s3cr3t") and "HttpOnly" in c for c in cookies)
    whoami = await http.get(f"{base}/whoami",
                            headers={"cookie": "session=s3cr3t; theme=dark"})
    assert whoami.json() == {"session": "s3cr3t", "theme": "dark"}

    download = await http.get(f"{base}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.content == bytes(range(256)) * 4

    teapot = await http.get(f"{base}/teapot")
    assert teapot.status_code == 418 and teapot.json() == {"short": "stout"}

    missing = await http.get(f"{base}/no/such/route")
    assert missing.status_code == 404  # the app's own 404, not Ember's
    assert "X-Ember-Request-Id" in missing.headers

    boom = await http.get(f"{base}/boom")
    assert boom.status_code == 500  # the app turned its exception into a 500

    # HEAD is the app's business: Flask answers it, FastAPI's GET routes refuse it.
    head = await http.head(f"{base}/items/1")
    assert head.status_code == (405 if asgi else 200) and head.content == b""


def test_fastapi_app_through_an_http_trigger(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_app(ember, "shop", FASTAPI_APP, "/shop")
        await exercise_app(ember, "/http/shop", asgi=True)
        item = await ember.http.get("/http/shop/items/1")
        assert item.json()["started"] == 1  # the lifespan startup ran once
        upload = await ember.http.post("/http/shop/upload", content=bytes(range(256)))
        assert upload.json() == {"size": 256, "sum": sum(range(256))}
        # The app's logging lands in the request's logs.
        echo = await ember.http.post("/http/shop/echo", json={"x": 1},
                                     headers={"x-ember-trigger": "spoofed"})
        request_id = echo.headers["x-ember-request-id"]
        # The app sees the request id of its logs, and the trigger (not a client's claim).
        assert echo.json()["request_id"] == request_id
        assert echo.json()["trigger"] == "shop-http"
        logs = (await ember.http.get("/functions/shop/logs",
                                     params={"request_id": request_id})).json()["logs"]
        assert any(r["line"] == "echoing {'x': 1}" and r["level"] == "WARNING"
                   for r in logs), logs

    run(scenario)


def test_flask_app_through_an_http_trigger(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_app(ember, "blog", FLASK_APP, "/blog")
        await exercise_app(ember, "/http/blog", asgi=False)
        many = await ember.http.get("/http/blog/items/3?tag=a&tag=b")
        assert many.json()["many"] == ["a", "b"]

    run(scenario)


def test_direct_invoke_of_a_web_function_posts_to_invoke(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_app(ember, "shop", FASTAPI_APP, "/shop")
        await ember.deploy_files("blog", {"app.py": FLASK_APP}, kind="web", app="app:app")
        for name in ("shop", "blog"):
            answer = await ember.invoke(name, {"n": 1})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["event"] == {"n": 1}
            assert body["request_id"] == answer.headers["x-ember-request-id"]

    run(scenario)


def test_streamed_responses_arrive_as_they_are_produced(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_app(ember, "shop", FASTAPI_APP, "/shop", concurrency=2)
        await deploy_app(ember, "blog", FLASK_APP, "/blog", concurrency=2)
        async with ember.served() as client:
            for base in ("/http/shop", "/http/blog"):
                await client.get(f"{base}/items/1")  # warm
                async with client.stream("GET", f"{base}/stream",
                                         params={"n": 3, "hold": "true"}) as response:
                    assert response.status_code == 200
                    lines = response.aiter_lines()
                    # The first part arrives while the app waits: it cannot have finished.
                    assert await anext(lines) == "part 0"
                    released = await client.get(f"{base}/release")
                    assert released.status_code == 200, released.text
                    assert [line async for line in lines if line] == ["part 1", "part 2"]

    run(scenario)


def test_app_that_fails_to_import_gives_a_clear_error(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("broken", {"app.py": "import not_a_module_anywhere\n"},
                                 kind="web", app="app:app")
        await trigger(ember, "b", "broken", {"kind": "http", "path": "/broken"})
        await ember.settle()
        answer = await ember.http.get("/http/broken/")
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert error["code"] == "InitError"
        assert "not_a_module_anywhere" in error["message"]

    run(scenario)


def test_web_config_is_validated(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        for config, field, words in [
            ({"kind": "web"}, "config.app", "needs its ASGI or WSGI app"),
            ({"kind": "web", "app": "not an app"}, "config.app", "is not an app"),
            ({"concurrency": 4}, "config.concurrency", "for web and custom functions"),
            ({"kind": "custom"}, "config.command", "serves HTTP on $PORT"),
            ({"kind": "custom", "command": []}, "config.command", "non-empty list"),
            ({"app": "app:app"}, "config.kind", "set kind to 'web'"),
            ({"kind": "web", "app": "a:b", "startup_probe": {}}, "config.kind", "custom"),
            ({"health_check": {}}, "config.kind", "web and custom"),
            ({"kind": "custom", "command": "x", "startup_probe": {"path": "no-slash"}},
             "config.startup_probe.path", "pattern"),
        ]:
            answer = await ember.http.post("/functions", json={
                "name": "bad", "config": config, "code": {"zip": ""}})
            assert answer.status_code == 400, (config, answer.text)
            errors = answer.json()["error"]["details"]["errors"]
            assert errors[0]["field"] == field, (config, errors)
            assert words in errors[0]["message"], (config, errors)

    run(scenario)


CRASHY = '''
import asyncio, os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/exit"):
        os._exit(7)
    if scope["path"].endswith("/slow"):
        await asyncio.sleep(5)
    if scope["path"].endswith("/half"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        raise RuntimeError("failed mid-stream")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
'''


def test_timeouts_crashes_and_broken_streams_of_a_web_function(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_app(ember, "crashy", CRASHY, "/crashy", timeout_s=0.5, concurrency=4)
        http = ember.http
        pid = (await http.get("/http/crashy/pid")).text
        # A request past the timeout is cancelled; the instance and its other requests
        # go on.
        slow, other = await asyncio.gather(http.get("/http/crashy/slow"),
                                           http.get("/http/crashy/pid"))
        assert slow.status_code == 504, slow.text
        assert slow.json()["error"]["code"] == "FunctionTimeout"
        assert other.text == pid
        assert (await http.get("/http/crashy/pid")).text == pid
        # An app that fails after its response started: the body is cut short.
        async with ember.served() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/http/crashy/half")
            assert (await client.get("/http/crashy/pid")).text == pid
        # The process dies: the caller is told, the next request gets a new instance.
        crashed = await http.get("/http/crashy/exit")
        assert crashed.status_code == 502
        assert crashed.json()["error"]["code"] == "InstanceCrashed"
        assert "exit code 7" in crashed.json()["error"]["message"] or \
            crashed.json()["error"]["details"].get("exit_code") == 7
        again = await http.get("/http/crashy/pid")
        assert again.status_code == 200 and again.text != pid
        stats = (await http.get("/functions/crashy/stats")).json()
        assert stats["timeouts"] >= 1 and stats["errors"] >= 2, stats

    run(scenario)


def test_direct_http_reaches_a_web_function_without_a_trigger(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("blog", {"app.py": FLASK_APP}, kind="web", app="app:app")
        published = await ember.http.post("/functions/blog/versions", json={})
        assert published.status_code == 201, published.text
        item = await ember.http.get("/functions/blog/http/items/4", params={"q": "x"})
        assert item.status_code == 200 and item.json()["id"] == 4
        echo = await ember.http.post("/functions/blog/http/echo", json={"a": 1},
                                     headers={"x-ember-qualifier": "1"})
        assert echo.json()["url"] == "/functions/blog/http/echo"
        assert echo.headers["x-ember-version"] == "1"
        await ember.deploy("plain", "def handler(event, context):\n    return 1\n")
        refused = await ember.http.get("/functions/plain/http/")
        assert refused.status_code == 400
        assert "handler function, not a web app" in refused.json()["error"]["message"]
        missing = await ember.http.get("/functions/ghost/http/")
        assert missing.status_code == 404

    run(scenario)


RETRYING = '''
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/invoke")
async def invoke(request: Request):
    attempt = int(request.headers["x-ember-attempt"])
    event = await request.json()
    if attempt < event["succeed_on"]:
        return JSONResponse({"detail": f"not yet ({attempt})"}, status_code=503)
    return {"attempt": attempt, "event": event}
'''


def test_async_invocations_of_a_web_function_are_retried_on_error_statuses(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("jobs", {"app.py": RETRYING}, kind="web", app="app:app",
                                 **{"async": {"max_retries": 2}})
        submitted = await ember.http.post("/functions/jobs/invoke", json={"succeed_on": 2},
                                          headers={"X-Ember-Invocation-Type": "async"})
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["request_id"]
        for _ in range(200):
            task = (await ember.http.get(f"/tasks/{task_id}", params={"wait_s": 1})).json()
            if task["status"] in ("succeeded", "failed"):
                break
        assert task["status"] == "succeeded", task
        assert task["result"] == {"value": {"attempt": 2, "event": {"succeed_on": 2}}}
        first = task["history"][0]
        assert first["outcome"] == "error"
        assert "POST /invoke answered 503" in str(first), first

    run(scenario, async_retry_delay_s=0.05)


PRODUCER = '''
import asyncio, os

CHUNK = b"x" * (1024 * 1024)
produced = {"asgi": 0, "wsgi": 0}


def record(kind, n):
    produced[kind] = n
    with open(os.environ["PROGRESS"] + "." + kind, "w") as f:
        f.write(str(n))


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(40):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        record("asgi", i + 1)
    await send({"type": "http.response.body", "body": b""})


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for i in range(40):
        yield CHUNK
        record("wsgi", i + 1)
'''


def test_a_slow_client_slows_a_streaming_app_down(run: Run, tmp_path: Path) -> None:
    async def scenario(ember: Ember) -> None:
        progress = tmp_path / "progress"
        for kind in ("asgi", "wsgi"):
            name = f"big{kind}"
            await ember.deploy_files(name, {"app.py": PRODUCER}, kind="web", app=f"app:{kind}",
                                     environment={"PROGRESS": str(progress)})
            await trigger(ember, f"{name}-http", name, {"kind": "http", "path": f"/{name}"})
            await ember.settle()
            async with ember.served() as client:
                async with client.stream("GET", f"/http/{name}/") as response:
                    stream = response.aiter_raw()
                    received = len(await anext(stream))
                    await asyncio.sleep(0.5)  # a slow client: the app must wait for it
                    made = int((tmp_path / f"progress.{kind}").read_text())
                    assert made < 20, f"{kind}: {made} MiB produced for a paused client"
                    async for chunk in stream:
                        received += len(chunk)
                assert received == 40 * 1024 * 1024
            assert int((tmp_path / f"progress.{kind}").read_text()) == 40

    run(scenario, **HOST_FILES)


ENDLESS = '''
import asyncio, os, time

made = {"asgi": 0, "wsgi": 0}


def record(kind):
    made[kind] += 1
    with open(os.environ["PROGRESS"] + "." + kind, "w") as f:
        f.write(str(made[kind]))


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(200):
        await send({"type": "http.response.body", "body": f"data: {i}\\n\\n".encode(),
                    "more_body": True})
        record("asgi")
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b""})


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    for i in range(200):
        yield f"data: {i}\\n\\n".encode()
        record("wsgi")
        time.sleep(0.05)
'''


def test_a_client_leaving_an_endless_stream_stops_the_app(run: Run, tmp_path: Path) -> None:
    async def scenario(ember: Ember) -> None:
        progress = tmp_path / "progress"
        async with ember.served() as client:
            for kind in ("asgi", "wsgi"):
                name = f"sse{kind}"
                await ember.deploy_files(name, {"app.py": ENDLESS}, kind="web",
                                         app=f"app:{kind}", timeout_s=60,
                                         environment={"PROGRESS": str(progress)})
                await trigger(ember, f"{name}-http", name, {"kind": "http", "path": f"/{name}"})
                await ember.settle()
                async with client.stream("GET", f"/http/{name}/") as response:
                    lines = response.aiter_lines()
                    assert await anext(lines) == "data: 0"
                    assert (await anext(lines)) == ""
                    assert await anext(lines) == "data: 1"
                # The client is gone: within a few events the app is stopped.
                await asyncio.sleep(0.3)
                stopped_at = int((tmp_path / f"progress.{kind}").read_text())
                await asyncio.sleep(0.5)
                assert int((tmp_path / f"progress.{kind}").read_text()) == stopped_at
                assert stopped_at < 20, stopped_at
                # And the instance is free for the next request.
                assert ember.instances(name) == 1
                pool = next(p for p in ember.services.router._pools.pools()
                            if p.key.function == name)
                assert not pool.busy, pool.load

    run(scenario, **HOST_FILES)


FAILING_STARTUP = '''
from contextlib import asynccontextmanager
from fastapi import FastAPI


@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("no database configured")
    yield


app = FastAPI(lifespan=lifespan)
'''


def test_an_app_whose_startup_fails_gives_a_clear_error(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("nodb", {"app.py": FAILING_STARTUP}, kind="web",
                                 app="app:app")
        answer = await ember.invoke("nodb", {})
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert error["code"] == "InitError"
        assert "startup failed" in error["message"]
        assert "no database configured" in error["message"]

    run(scenario)
