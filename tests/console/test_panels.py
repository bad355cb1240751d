"""The Function page's Invoke, Logs and Stats tabs in Chromium, against a real server."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests import apicalls as api
from tests.conftest import ADMIN_KEY, make_zip
from tests.console.conftest import PHONE, Console, open_console

# The first call starts an instance: on a loaded machine that takes a while.
SLOW_MS = 30_000

HANDLER = """\
import logging


def handler(event, context):
    print(f"hello {event.get('who')}")
    if event.get("warn"):
        logging.warning("careful %s", event["warn"])
    if event.get("boom"):
        raise ValueError(event["boom"])
    return {"hello": event.get("who")}
"""


@pytest.fixture(scope="module")
def function(console_server: str) -> Iterator[str]:
    """A function that prints its event's ``who``, warns with ``warn``, raises ``boom``."""
    name = f"pnl-{uuid.uuid4().hex[:8]}"
    code = {"zip": base64.b64encode(make_zip({"main.py": HANDLER})).decode()}
    created = api.post(f"{console_server}/functions", json={"name": name, "code": code})
    assert created.status_code == 201, created.text
    yield name
    api.delete(f"{console_server}/functions/{name}")


def invoke(url: str, name: str, event: dict[str, Any]) -> httpx.Response:
    answer = api.post(f"{url}/functions/{name}/invoke", json=event, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def open_tab(console: Console, name: str, tab: str) -> Page:
    console.login()
    console.goto(f"/functions/{name}?tab={tab}")
    return console.page


def test_sync_invoke_shows_the_answer_its_headers_and_the_request_logs(
    console: Console, function: str,
) -> None:
    page = open_tab(console, function, "invoke")
    page.get_by_label("Payload").fill('{"who": "sync-caller"}')
    expect(page.get_by_label("Qualifier")).to_have_value("latest")
    page.get_by_role("button", name="Invoke", exact=True).click()
    response = page.get_by_role("region", name="Response")
    expect(response).to_contain_text("200", timeout=SLOW_MS)
    expect(response.get_by_label("Response body")).to_contain_text('"hello": "sync-caller"')
    headers = response.get_by_role("table", name="Response headers")
    expect(headers).to_contain_text("Cold start")
    expect(headers).to_contain_text("X-Ember-Duration-Ms")
    request_id = headers.get_by_role("row").filter(has_text="X-Ember-Request-Id")
    expect(request_id).to_contain_text(re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-"))
    logs = page.get_by_role("region", name="Request logs")
    expect(logs).to_contain_text("hello sync-caller", timeout=SLOW_MS)
    console.shot("function-invoke")
    # The request's lines open in the Logs tab, filtered by its id.
    rid = request_id.locator("td").nth(1).inner_text().strip()
    logs.get_by_role("link", name="Open in Logs").click()
    expect(page.get_by_label("Request id")).to_have_value(rid)
    lines = page.get_by_role("log", name="Log lines")
    expect(lines).to_contain_text("hello sync-caller")
    expect(lines.locator(".line")).to_have_count(1)


def test_bad_json_is_refused_before_anything_is_sent(console: Console, function: str) -> None:
    page = open_tab(console, function, "invoke")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.split("?")[0].endswith("/invoke")
            else None)
    payload = page.get_by_label("Payload")
    payload.fill('{"who": ')
    page.get_by_role("button", name="Invoke", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    expect(page.get_by_role("region", name="Response")).to_have_count(0)
    payload.fill('{"who":"formatted","n":[1,2]}')
    page.get_by_role("button", name="Format").click()
    expect(payload).to_have_value('{\n  "who": "formatted",\n  "n": [\n    1,\n    2\n  ]\n}')
    expect(page.get_by_role("alert")).to_have_count(0)
    assert sent == []


def test_async_invoke_shows_the_request_id_then_the_tasks_end(
    console: Console, function: str,
) -> None:
    page = open_tab(console, function, "invoke")
    page.get_by_label("Payload").fill('{"who": "async-caller"}')
    page.get_by_label("Mode").select_option("Async")
    page.get_by_role("button", name="Invoke", exact=True).click()
    response = page.get_by_role("region", name="Response")
    expect(response).to_contain_text("202", timeout=SLOW_MS)
    expect(response).to_contain_text(re.compile(r"Request id\s*[0-9a-f]{8}-"))
    link = response.get_by_role("link", name="Open the task")
    expect(link).to_have_attribute("href", re.compile(rf"^#/tasks\?function={function}&task="))
    expect(response).to_contain_text("succeeded", timeout=SLOW_MS)
    expect(response.get_by_label("Task result")).to_contain_text('"hello": "async-caller"')
    logs = page.get_by_role("region", name="Request logs")
    expect(logs).to_contain_text("hello async-caller", timeout=SLOW_MS)


def test_a_handler_that_raises_shows_its_error_readable(console: Console, function: str) -> None:
    page = open_tab(console, function, "invoke")
    page.get_by_label("Payload").fill('{"who": "crasher", "boom": "kaput-42"}')
    page.get_by_role("button", name="Invoke", exact=True).click()
    response = page.get_by_role("region", name="Response")
    expect(response).to_contain_text("502", timeout=SLOW_MS)
    alert = response.get_by_role("alert")
    expect(alert).to_contain_text("FunctionError")
    expect(alert).to_contain_text("ValueError: kaput-42")
    expect(response.get_by_text("Traceback", exact=True)).to_be_visible()
    expect(page.get_by_role("region", name="Request logs")).to_contain_text(
        "hello crasher", timeout=SLOW_MS)


def test_logs_filters_narrow_the_lines_and_live_tail_follows(
    console: Console, function: str,
) -> None:
    url = console.url
    token = uuid.uuid4().hex[:10]
    invoke(url, function, {"who": f"plain-{token}"})
    invoke(url, function, {"who": f"warner-{token}", "warn": f"hot-{token}"})
    page = open_tab(console, function, "logs")
    lines = page.get_by_role("log", name="Log lines")
    expect(lines).to_contain_text(f"hello plain-{token}", timeout=SLOW_MS)
    expect(lines).to_contain_text(f"careful hot-{token}")

    page.get_by_label("Level").select_option("WARNING")
    expect(lines).not_to_contain_text(f"hello plain-{token}")
    expect(lines).to_contain_text(f"careful hot-{token}")
    page.get_by_label("Level").select_option("")

    page.get_by_label("Search logs").fill(f"plain-{token}")
    expect(lines).not_to_contain_text(f"careful hot-{token}")
    expect(lines.locator(".line")).to_have_count(1)
    expect(lines).to_contain_text(f"hello plain-{token}")
    page.get_by_label("Search logs").fill("")
    expect(lines).to_contain_text(f"careful hot-{token}")

    page.get_by_label("Live tail").check()
    later = f"later-{uuid.uuid4().hex[:10]}"
    invoke(url, function, {"who": later})
    expect(lines).to_contain_text(f"hello {later}", timeout=SLOW_MS)
    # The newest line is scrolled into view.
    expect(lines.locator(".line").last).to_contain_text(f"hello {later}")
    expect(lines.locator(".line").last).to_be_in_viewport()
    console.shot("function-logs")
    page.get_by_label("Live tail").uncheck()


def test_stats_counts_the_invocations(console: Console, function: str) -> None:
    invoke(console.url, function, {"who": "counted"})
    page = open_tab(console, function, "stats")
    tile = page.locator(".stat").filter(
        has=page.locator(".stat-label", has_text=re.compile(r"^Invocations$")))
    expect(tile.locator(".stat-value")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=SLOW_MS)
    for label in ("Errors", "Cold starts", "p50", "p99", "Throttles", "Retries", "Queue depth"):
        expect(page.locator(".stat-label", has_text=re.compile(f"^{label}$"))).to_be_visible()
    expect(page.get_by_role("img", name="Invocations and errors per minute")).to_be_visible()
    page.get_by_label("Window").select_option("900")
    expect(tile.locator(".stat-value")).to_have_text(re.compile(r"^[1-9]\d*$"))
    console.shot("function-stats")


def test_the_panels_fit_a_phone(browser: Browser, console_server: str, function: str) -> None:
    context, console = open_console(browser, console_server, PHONE)
    try:
        page = console.page
        # Console.login waits for the sidebar, which a phone folds behind the menu button.
        page.goto(f"{console.url}/console")
        page.get_by_label("API key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Menu").wait_for()
        console.goto(f"/functions/{function}?tab=invoke")
        page.get_by_label("Payload").fill('{"who": "phone"}')
        page.get_by_role("button", name="Invoke", exact=True).click()
        expect(page.get_by_role("region", name="Request logs")).to_contain_text(
            "hello phone", timeout=SLOW_MS)
        assert_fits(page)
        console.shot("function-invoke-phone")
        for tab in ("logs", "stats"):
            console.goto(f"/functions/{function}?tab={tab}")
            expect(page.get_by_role("tab", name=tab.capitalize())).to_have_attribute(
                "aria-selected", "true")
            page.get_by_label("Level" if tab == "logs" else "Window").wait_for()
            assert_fits(page)
        console.shot("function-stats-phone")
        console.no_errors()
    finally:
        context.close()


def assert_fits(page: Page) -> None:
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a phone"
