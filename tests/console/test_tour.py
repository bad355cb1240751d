"""Every page of the console, with something on it, at 1280x800 and at phone width: each
renders its heading without an error message or a JavaScript error, and leaves a screenshot
in test-artifacts/console/."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests import apicalls as api
from tests.conftest import make_zip
from tests.console.conftest import DESKTOP, PHONE, open_console
from tests.waiting import wait_until

SOURCE = """
def handler(event, context):
    print("tour", event)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
"""
WORKFLOW = {
    "document": {"dsl": "1.0.0", "namespace": "tour", "name": "tour-flow", "version": "1.0.0"},
    "do": [
        {"first": {"call": "tour-fn"}},
        {"second": {"call": "tour-fn:live"}},
    ],
}


@pytest.fixture(scope="module")
def seeded(console_server: str) -> Iterator[dict[str, str]]:
    """A function with a version, an alias, a trigger, a failed task (a dead letter), a
    workflow and an execution of it."""
    url = console_server
    code = {"zip": base64.b64encode(make_zip({"main.py": SOURCE})).decode()}
    created = api.post(f"{url}/functions", json={
        "name": "tour-fn", "config": {"handler": "main.handler", "async": {"max_retries": 0}},
        "code": code})
    assert created.status_code == 201, created.text
    assert api.post(f"{url}/functions/tour-fn/versions", json={}).status_code == 201
    assert api.put(f"{url}/functions/tour-fn/aliases/live", json={"version": 1}
                   ).status_code in (200, 201)
    trigger = api.post(f"{url}/triggers", json={
        "name": "tour-web", "function": "tour-fn", "source": {"kind": "http", "path": "/tour"}})
    assert trigger.status_code == 201, trigger.text
    assert api.post(f"{url}/functions/tour-fn/invoke", json={"a": 1}).status_code == 200
    failed = api.post(f"{url}/functions/tour-fn/invoke", json={"fail": True},
                      headers={"X-Ember-Invocation-Type": "async"})
    assert failed.status_code == 202, failed.text
    task = failed.json()["request_id"]
    wait_until(lambda: api.get(f"{url}/dead-letters/{task}").status_code == 200,
               timeout=30, message="the failed task's dead letter")
    flow = api.put(f"{url}/workflows/tour-flow", content=json.dumps(WORKFLOW),
                   headers={"Content-Type": "application/json"})
    assert flow.status_code in (200, 201), flow.text
    run = api.post(f"{url}/workflows/tour-flow/executions", params={"wait_s": 30},
                   json={"input": {"n": 1}})
    assert run.status_code == 201 and run.json()["status"] == "succeeded", run.text
    yield {"task": task, "execution": run.json()["id"]}


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("overview", "/"),
        ("functions", "/functions"),
        ("function-config", "/functions/tour-fn?tab=config"),
        ("function-versions", "/functions/tour-fn?tab=versions"),
        ("function-aliases", "/functions/tour-fn?tab=aliases"),
        ("function-instances", "/functions/tour-fn?tab=instances"),
        ("function-invoke", "/functions/tour-fn?tab=invoke"),
        ("function-logs", "/functions/tour-fn?tab=logs"),
        ("function-stats", "/functions/tour-fn?tab=stats"),
        ("function-triggers", "/functions/tour-fn?tab=triggers"),
        ("tasks", f"/tasks?function=tour-fn&task={ids['task']}"),
        ("dead-letters", "/dead-letters"),
        ("triggers", "/triggers"),
        ("workflows", "/workflows"),
        ("workflow", "/workflows/tour-flow"),
        ("execution", f"/executions/{ids['execution']}"),
        ("not-found", "/no-such-page"),
    ]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_renders_without_errors(browser: object, console_server: str,
                                           seeded: dict[str, str], size: str) -> None:
    context, tab = open_console(browser, console_server,  # type: ignore[arg-type]
                                DESKTOP if size == "desktop" else PHONE)
    try:
        tab.login()
        for name, route in pages(seeded):
            tab.goto(route)
            heading = tab.page.get_by_role("heading", level=1)
            heading.first.wait_for()
            tab.page.wait_for_load_state("networkidle")
            alerts = tab.page.get_by_role("alert")
            shown = [alerts.nth(i).inner_text() for i in range(alerts.count())]
            assert not shown, f"{route} shows an error: {shown}"
            if size == "desktop" or name in ("overview", "functions", "function-aliases",
                                             "execution"):
                tab.shot(f"tour-{name}-{size}")
        tab.no_errors()
    finally:
        context.close()
