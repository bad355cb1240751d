"""A handler's uncaught exception is in the function's logs, traceback and request id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.inprocess import Ember

Run = Callable[..., None]

FAILING = """
def check(value):
    raise ValueError(f"bad value {value}")


def handler(event, context):
    print("about to check")
    check(event["v"])
"""

FAILING_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raise KeyError("no such widget")
'''


async def error_logs(ember: Ember, name: str, request_id: str) -> list[dict[str, Any]]:
    answer = await ember.http.get(f"/functions/{name}/logs",
                                  params={"request_id": request_id, "level": "ERROR"})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["logs"])


def assert_traceback_logged(logs: list[dict[str, Any]], request_id: str, *words: str) -> None:
    tracebacks = [r for r in logs if r["line"].startswith("Traceback (most recent call last)")]
    assert len(tracebacks) == 1, logs
    entry = tracebacks[0]
    assert entry["request_id"] == request_id and entry["level"] == "ERROR"
    for word in words:
        assert word in entry["line"], entry["line"]
    assert "ember/runtime" not in entry["line"]


def test_uncaught_exception_of_a_sync_invocation_is_logged(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("failing", FAILING)
        answer = await ember.invoke("failing", {"v": 7})
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "FunctionError"
        request_id = answer.headers["x-ember-request-id"]
        logs = await error_logs(ember, "failing", request_id)
        assert_traceback_logged(logs, request_id, "in check", "main.py",
                                "ValueError: bad value 7")
        everything = (await ember.http.get("/functions/failing/logs",
                                           params={"request_id": request_id})).json()["logs"]
        # Next to the handler's own output (stdout and stderr are read apart: no order).
        lines = [r["line"] for r in everything]
        assert "about to check" in lines and len(lines) == 2, lines

    run(scenario)


def test_uncaught_exception_of_an_async_invocation_is_logged(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("failing", FAILING, **{"async": {"max_retries": 0}})
        submitted = await ember.http.post("/functions/failing/invoke", json={"v": 9},
                                          headers={"X-Ember-Invocation-Type": "async"})
        assert submitted.status_code == 202, submitted.text
        request_id = submitted.json()["request_id"]
        for _ in range(200):
            task = (await ember.http.get(f"/tasks/{request_id}", params={"wait_s": 1})).json()
            if task["status"] in ("succeeded", "failed"):
                break
        assert task["status"] == "failed", task
        logs = await error_logs(ember, "failing", request_id)
        assert_traceback_logged(logs, request_id, "in check", "ValueError: bad value 9")

    run(scenario)


def test_uncaught_exception_of_a_web_app_is_logged(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("widgets", {"app.py": FAILING_APP}, kind="web", app="app:app")
        answer = await ember.http.get("/functions/widgets/http/w/1")
        assert answer.status_code == 502, answer.text
        request_id = answer.headers["x-ember-request-id"]
        logs = await error_logs(ember, "widgets", request_id)
        assert_traceback_logged(logs, request_id, "app.py", "KeyError: 'no such widget'")

    run(scenario)
