"""Per-instance concurrency: an instance of a web function serves up to ``concurrency``
requests at once, and the router fills instances before it starts another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.inprocess import Ember
from tests.triggers.test_api import trigger

Run = Callable[..., None]

ASGI_COUNTER = '''
import asyncio, os

inflight = 0
peak = 0


async def app(scope, receive, send):
    global inflight, peak
    if scope["type"] != "http":
        return
    inflight += 1
    peak = max(peak, inflight)
    try:
        await asyncio.sleep(0.4)
        body = f"{os.getpid()} {peak}".encode()
    finally:
        inflight -= 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''

WSGI_COUNTER = '''
import os, threading, time

lock = threading.Lock()
inflight = 0
peak = 0


def app(environ, start_response):
    global inflight, peak
    with lock:
        inflight += 1
        peak = max(peak, inflight)
    time.sleep(0.3)
    with lock:
        inflight -= 1
        seen = peak
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {seen}".encode()]
'''


async def burst(ember: Ember, path: str, count: int) -> list[tuple[int, int]]:
    async with ember.served() as client:
        answers = await asyncio.gather(*(client.get(path) for _ in range(count)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [(int(pid), int(peak)) for pid, peak in (a.text.split() for a in answers)]


def test_64_requests_to_an_asgi_app_with_concurrency_16_use_at_most_4_instances(
    run: Run,
) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("wide", {"app.py": ASGI_COUNTER}, kind="web", app="app:app",
                                 concurrency=16, max_instances=4)
        await trigger(ember, "wide-http", "wide", {"kind": "http", "path": "/wide"})
        await ember.settle()
        results = await burst(ember, "/http/wide/", 64)
        pids = {pid for pid, _ in results}
        assert 1 <= len(pids) <= 4, pids
        peaks = [peak for _, peak in results]
        assert max(peaks) <= 16
        assert max(peaks) > 1  # requests really overlapped inside one instance
        assert ember.instances("wide") <= 4
        stats = (await ember.http.get("/functions/wide/stats")).json()
        assert stats["invocations"] == 64, stats

    run(scenario)


def test_wsgi_app_serves_concurrent_requests_on_threads(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("threads", {"app.py": WSGI_COUNTER}, kind="web",
                                 app="app:app", concurrency=4, max_instances=1)
        await trigger(ember, "threads-http", "threads", {"kind": "http", "path": "/threads"})
        await ember.settle()
        results = await burst(ember, "/http/threads/", 8)
        assert len({pid for pid, _ in results}) == 1
        assert 1 < max(peak for _, peak in results) <= 4

    run(scenario)


def test_concurrency_one_queues_requests_for_one_instance(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("narrow", {"app.py": ASGI_COUNTER}, kind="web",
                                 app="app:app", max_instances=1)
        await trigger(ember, "narrow-http", "narrow", {"kind": "http", "path": "/narrow"})
        await ember.settle()
        results = await burst(ember, "/http/narrow/", 3)
        assert [peak for _, peak in results] == [1, 1, 1]

    run(scenario)


LOGGING_APP = '''
import asyncio, logging, threading, time

log = logging.getLogger("app")


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    n = scope["query_string"].decode()
    log.warning("start %s", n)
    await asyncio.sleep(0.2)
    log.warning("end %s", n)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": n.encode()})


def wsgi(environ, start_response):
    n = environ["QUERY_STRING"]
    log.warning("start %s", n)
    time.sleep(0.2)
    log.warning("end %s", n)
    start_response("200 OK", [])
    return [n.encode()]
'''


def test_logging_records_keep_their_request_when_requests_overlap(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        for name, app in (("alog", "app:asgi"), ("wlog", "app:wsgi")):
            await ember.deploy_files(name, {"app.py": LOGGING_APP}, kind="web", app=app,
                                     concurrency=8, max_instances=1)
            await trigger(ember, f"{name}-http", name, {"kind": "http", "path": f"/{name}"})
            await ember.settle()
            answers = await asyncio.gather(*(ember.http.get(f"/http/{name}/?{n}")
                                             for n in range(6)))
            for answer in answers:
                n = answer.text
                logs = (await ember.http.get(f"/functions/{name}/logs", params={
                    "request_id": answer.headers["x-ember-request-id"]})).json()["logs"]
                assert [r["line"] for r in logs] == [f"start {n}", f"end {n}"], (name, logs)

    run(scenario)
