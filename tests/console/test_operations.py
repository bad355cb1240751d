"""The console's operations pages in Chromium against a real server: tasks (attempts,
logs, stop), dead letters (redrive), triggers (pause / resume) and workflows (the definition,
executions, and an execution's task graph)."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest

from tests import apicalls as api
from tests.conftest import ADMIN_KEY, make_zip
from tests.console.conftest import PHONE, Console, open_console
from tests.waiting import wait_until

pytest.importorskip("playwright")
from playwright.sync_api import Browser, expect

FAIL = """
def handler(event, context):
    print("about to fail on", event)
    raise RuntimeError("asked to fail")
"""
SLEEP = """
import time

def handler(event, context):
    time.sleep(event)
    return event
"""
ECHO = """
def handler(event, context):
    return {"echo": event}
"""
ASYNC = {"X-Ember-Invocation-Type": "async"}


def unique(prefix: str) -> str:
    return f"ops-{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(url: str, name: str, source: str, **config: Any) -> None:
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    answer = api.post(f"{url}/functions", json={"name": name, "config": config, "code": code},
                      timeout=60)
    assert answer.status_code == 201, answer.text


def invoke_async(url: str, name: str, event: Any) -> str:
    answer = api.post(f"{url}/functions/{name}/invoke", json=event, headers=ASYNC, timeout=30)
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def task(url: str, task_id: str, wait_s: float = 0) -> dict[str, Any]:
    answer = api.get(f"{url}/tasks/{task_id}", params={"wait_s": wait_s}, timeout=wait_s + 30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_failed_task_shows_its_attempts_and_is_redriven_from_the_dead_letters(
        console: Console) -> None:
    url, page = console.url, console.page
    name = unique("fail")
    deploy(url, name, FAIL, **{"async": {"max_retries": 1}})
    task_id = invoke_async(url, name, {"n": 7})
    failed = task(url, task_id, wait_s=60)
    assert failed["status"] == "failed" and failed["attempts"] == 2, failed
    assert failed["dead_lettered"] is True

    console.goto("/")
    console.login()
    console.goto("/tasks")
    page.get_by_label("Function").select_option(name)
    page.get_by_label("Status").select_option("failed")
    tasks = page.get_by_role("table", name="Tasks")
    row = tasks.get_by_role("row").filter(has_text=task_id)
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("FunctionError")
    assert f"function={name}" in page.url and "status=failed" in page.url
    row.get_by_role("link", name=task_id).click()
    detail = page.locator(".task-detail")
    attempts = detail.get_by_role("table", name="Attempts")
    expect(attempts.locator("tbody tr")).to_have_count(2)
    expect(attempts).to_contain_text("asked to fail")
    expect(detail).to_contain_text("dead letter")
    expect(detail.get_by_role("log", name="Logs")).to_contain_text("about to fail on")
    expect(detail.get_by_role("button", name="Stop")).to_have_count(0)  # it has ended
    console.shot("tasks")

    # The dead letter: listed with its reason, then redriven.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Dead letters").click()
    # The tasks page has a Function filter too: choose only once the new page is there.
    expect(page.get_by_role("heading", name="Dead letters", level=1)).to_be_visible()
    page.get_by_label("Function").select_option(name)
    letters = page.get_by_role("table", name="Dead letters")
    letter = letters.get_by_role("row").filter(has_text=task_id)
    expect(letter).to_contain_text("RetriesExhausted")
    expect(letter).to_contain_text(name)
    letter.get_by_role("link", name=task_id).click()
    expect(page.get_by_role("heading", name=f"Dead letter {task_id}")).to_be_visible()
    expect(page.locator("pre").filter(has_text='"n": 7')).to_be_visible()
    console.shot("dead-letters")
    page.get_by_role("button", name="Redrive").click()
    page.get_by_role("dialog").get_by_role("button", name="Redrive").click()
    expect(page.get_by_role("status")).to_contain_text(f"Redriven: task {task_id}")
    # Queued again, it runs again (and fails again: two more attempts).
    wait_until(lambda: len(task(url, task_id)["history"]) > 2, interval=0.05,
               message="the redriven task run again")
    assert len(task(url, task_id, wait_s=60)["history"]) == 4


def test_the_tasks_page_stops_a_running_task(console: Console) -> None:
    url, page = console.url, console.page
    name = unique("sleep")
    deploy(url, name, SLEEP)
    task_id = invoke_async(url, name, 120)
    wait_until(lambda: task(url, task_id)["status"] == "running", interval=0.05,
               message="the task running")

    console.goto("/")
    console.login()
    console.goto(f"/tasks?function={name}&task={task_id}")
    row = page.get_by_role("table", name="Tasks").get_by_role("row").filter(has_text=task_id)
    expect(row).to_contain_text("running")
    detail = page.locator(".task-detail")
    expect(detail).to_contain_text("running")
    detail.get_by_role("button", name="Stop").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(task_id)
    dialog.get_by_role("button", name="Stop task").click()
    expect(detail.locator(".badge").first).to_have_text("stopped", timeout=30_000)
    expect(row).to_contain_text("stopped", timeout=30_000)
    assert task(url, task_id)["status"] == "stopped"
    console.no_errors()


def test_triggers_are_listed_and_paused_and_resumed(console: Console) -> None:
    url, page = console.url, console.page
    name = unique("trig")
    deploy(url, name, ECHO)
    trigger = unique("timer")
    made = api.post(f"{url}/triggers", json={
        "name": trigger, "function": name, "description": "once an hour",
        "source": {"kind": "timer", "schedule": "rate(1 hour)"},
    }, timeout=30)
    assert made.status_code == 201, made.text

    console.goto("/")
    console.login()
    console.goto("/triggers")
    page.get_by_label("Search triggers").fill(trigger)
    table = page.get_by_role("table", name="Triggers")
    expect(table.locator("tbody tr")).to_have_count(1)
    row = table.get_by_role("row").filter(has_text=trigger)
    expect(row).to_contain_text("timer")
    expect(row).to_contain_text("rate(1 hour)")
    expect(row).to_contain_text(f"{name}:latest")
    expect(row).to_contain_text("enabled")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".badge", has_text="paused")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(f"Trigger {trigger} paused")
    assert api.get(f"{url}/triggers/{trigger}").json()["state"] == "paused"
    console.shot("triggers")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".badge", has_text="enabled")).to_be_visible()
    assert api.get(f"{url}/triggers/{trigger}").json()["state"] == "enabled"
    row.get_by_role("button", name="Disable").click()
    expect(row.get_by_role("button", name="Enable")).to_be_visible()
    assert api.get(f"{url}/triggers/{trigger}").json()["state"] == "disabled"
    page.get_by_label("Search triggers").fill("no-such-trigger-anywhere")
    expect(page.get_by_text("No trigger matches")).to_be_visible()


def document(name: str, do: list[dict[str, Any]]) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "ops", "name": name, "version": "1.2.0"},
            "do": do}


def test_a_workflow_its_executions_and_the_task_graph(console: Console) -> None:
    url, page = console.url, console.page
    fn = unique("wfn")
    deploy(url, fn, ECHO)
    flow = unique("flow")
    deployed = api.put(f"{url}/workflows/{flow}", json=document(flow, [
        {"greet": {"call": fn, "with": {"who": "${ .who }"}}},
        {"shape": {"set": {"said": "${ .echo.who }"}}},
        {"again": {"call": fn, "with": "${ .said }"}},
    ]), timeout=30)
    assert deployed.status_code == 201, deployed.text
    ran = api.post(f"{url}/workflows/{flow}/executions", json={"input": {"who": "Ada"}},
                   params={"wait_s": 60}, timeout=90)
    assert ran.status_code == 201, ran.text
    execution = ran.json()
    assert execution["status"] == "succeeded", execution

    console.goto("/")
    console.login()
    console.goto("/workflows")
    row = page.get_by_role("table", name="Workflows").get_by_role("row").filter(has_text=flow)
    expect(row).to_contain_text("ops/1.2.0")
    expect(row.locator("td").nth(3)).to_have_text("3")  # its tasks
    console.shot("workflows")
    row.get_by_role("link", name=flow, exact=True).click()
    page.get_by_role("heading", name=flow, level=1).wait_for()
    definition = page.locator("pre.definition")
    expect(definition).to_contain_text(f"call: {fn}")
    page.get_by_role("tab", name="JSON").click()
    expect(definition).to_contain_text(f'"call": "{fn}"')
    executions = page.get_by_role("table", name="Executions")
    expect(executions.get_by_role("row").filter(has_text=execution["id"])).to_contain_text(
        "succeeded")
    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_text("No executions.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    console.shot("workflow")
    page.get_by_role("link", name=execution["id"]).click()

    graph = page.get_by_role("group", name=f"Tasks of execution {execution['id']}")
    nodes = graph.locator("[data-status]")
    expect(nodes).to_have_count(3)
    for task_name in ("greet", "shape", "again"):
        node = graph.get_by_role("button", name=f"{task_name}: succeeded")
        expect(node).to_have_attribute("data-status", "succeeded")
        fill = node.locator("rect").evaluate("r => getComputedStyle(r).fill")
        assert fill == "rgb(211, 249, 216)", fill  # --ok-bg
    expect(page.locator(".legend")).to_contain_text("succeeded")
    # The keyboard reaches the nodes and shows each one's details.
    graph.get_by_role("button", name="greet: succeeded").focus()
    detail = page.locator(".node-detail")
    expect(detail.get_by_role("table", name="Runs of greet")).to_contain_text(fn)
    page.keyboard.press("ArrowDown")
    expect(detail.get_by_role("table", name="Runs of shape")).to_be_visible()
    expect(page.get_by_role("table", name="Steps").locator("tbody tr")).to_have_count(3)
    expect(page.locator(".card", has_text="Output")).to_contain_text('"echo"')
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    console.shot("execution")


def test_a_running_execution_updates_and_is_cancelled(console: Console) -> None:
    url, page = console.url, console.page
    flow = unique("pause")
    deployed = api.put(f"{url}/workflows/{flow}", json=document(flow, [
        {"start": {"set": {"began": True}}},
        {"hold": {"wait": "PT1H"}},
        {"never": {"set": {"done": True}}},
    ]), timeout=30)
    assert deployed.status_code == 201, deployed.text
    ran = api.post(f"{url}/workflows/{flow}/executions", json={"input": {}}, timeout=30)
    assert ran.status_code == 201, ran.text
    execution_id = ran.json()["id"]

    console.goto("/")
    console.login()
    console.goto(f"/executions/{execution_id}")
    graph = page.get_by_role("group", name=f"Tasks of execution {execution_id}")
    expect(graph.get_by_role("button", name="start: succeeded")).to_be_visible()
    expect(graph.get_by_role("button", name="never: not run")).to_be_visible()
    expect(graph.locator('[data-path="/do/1/hold"]')).to_have_attribute(
        "data-status", re.compile("running|waiting"))
    console.shot("execution-running")
    page.get_by_role("button", name="Cancel execution").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel execution").click()
    expect(page.locator(".facts .badge").first).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    assert api.get(f"{url}/executions/{execution_id}").json()["status"] == "cancelled"


def test_the_operations_pages_fit_a_phone(browser: Browser, console_server: str) -> None:
    url = console_server
    fn = unique("phone")
    deploy(url, fn, ECHO)
    task_id = invoke_async(url, fn, {"n": 1})
    assert task(url, task_id, wait_s=60)["status"] == "succeeded"
    flow = unique("phoneflow")
    deployed = api.put(f"{url}/workflows/{flow}", json=document(flow, [
        {"greet": {"call": fn}}, {"keep": {"set": {"done": True}}},
    ]), timeout=30)
    assert deployed.status_code == 201, deployed.text
    ran = api.post(f"{url}/workflows/{flow}/executions", params={"wait_s": 60}, timeout=90)
    assert ran.json()["status"] == "succeeded", ran.text
    context, tab = open_console(browser, url, PHONE)
    try:
        # Console.login waits for the sidebar, which a phone hides behind the menu button.
        tab.page.goto(f"{url}/console")
        tab.page.get_by_label("API key").fill(ADMIN_KEY)
        tab.page.get_by_role("button", name="Log in").click()
        tab.page.get_by_role("button", name="Menu").wait_for()
        for route, role, ready in [
            (f"/tasks?function={fn}&task={task_id}", "table", "Attempts"),
            ("/dead-letters", "heading", "Dead letters"),
            ("/triggers", "searchbox", "Search triggers"),
            (f"/workflows/{flow}", "table", "Executions"),
            (f"/executions/{ran.json()['id']}", "table", "Steps"),
        ]:
            tab.goto(route)
            expect(tab.page.get_by_role(role, name=ready).first).to_be_visible()  # type: ignore[arg-type]
            wide = tab.page.evaluate("document.documentElement.scrollWidth")
            assert wide <= PHONE["width"], f"{route} is {wide} px wide on a phone"
        tab.shot("execution-phone")
        tab.no_errors()
    finally:
        context.close()


def test_more_tasks_load_page_by_page(console: Console) -> None:
    url, page = console.url, console.page
    name = unique("many")
    deploy(url, name, ECHO)
    # Paused, the function's events stay queued: 55 tasks without running any.
    assert api.post(f"{url}/functions/{name}/pause").status_code == 200
    ids = [invoke_async(url, name, i) for i in range(55)]

    console.goto("/")
    console.login()
    console.goto(f"/tasks?function={name}&status=queued")
    rows = page.get_by_role("table", name="Tasks").locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text(ids[-1])  # newest first
    page.get_by_role("button", name="Load more tasks").click()
    expect(rows).to_have_count(55)
    expect(rows.last).to_contain_text(ids[0])
    expect(page.get_by_role("button", name="Load more tasks")).to_have_count(0)
    assert api.post(f"{url}/functions/{name}/resume").status_code == 200


def test_a_trigger_shows_its_counters_and_last_error(console: Console) -> None:
    url, page = console.url, console.page
    name = unique("hfail")
    deploy(url, name, FAIL)
    trigger = unique("http")
    made = api.post(f"{url}/triggers", json={
        "name": trigger, "function": name, "source": {"kind": "http", "path": f"/{trigger}"},
    }, timeout=30)
    assert made.status_code == 201, made.text
    answer = api.post(f"{url}/http/{trigger}", json={"n": 1}, timeout=30)
    assert answer.status_code >= 400, answer.text
    status = api.get(f"{url}/triggers/{trigger}").json()["status"]
    assert status["failures"] == 1 and status["last_error"], status

    console.goto("/")
    console.login()
    console.goto("/triggers")
    page.get_by_label("Search triggers").fill(trigger)
    row = page.get_by_role("table", name="Triggers").get_by_role("row").filter(has_text=trigger)
    expect(row).to_contain_text(f"POST /http/{trigger}")
    expect(row).to_contain_text("1 events")
    expect(row).to_contain_text("1 failed")
    expect(row).to_contain_text(status["last_error"][:40])
    console.shot("triggers-error")
