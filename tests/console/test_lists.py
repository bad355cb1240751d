"""The console's overview and functions list in Chromium, against functions made and
invoked through the API."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import ADMIN_KEY, AUTH, make_zip
from tests.console.conftest import PHONE, Console, open_console
from tests.servers import ember_server

# Fails when its event asks to, so one invocation can be an error.
CODE: dict[str, str | bytes] = {"main.py": (
    "def handler(event, context):\n"
    "    if event == 'fail':\n"
    "        raise ValueError('asked to fail')\n"
    "    return {'ok': event}\n"
)}


def create(client: httpx.Client, name: str, **config: Any) -> None:
    code = {"zip": base64.b64encode(make_zip(CODE)).decode()}
    answer = client.post("/functions", json={"name": name, "config": config, "code": code})
    assert answer.status_code == 201, answer.text


@pytest.fixture
def functions(console: Console) -> tuple[str, str, str]:
    """Two new functions, ``…-alpha`` invoked 4 times (one error) and ``…-beta`` tagged
    ``team=<tag>``: (alpha, beta, tag)."""
    unique = uuid.uuid4().hex[:8]
    alpha, beta, tag = f"lst-{unique}-alpha", f"lst-{unique}-beta", f"t{unique}"
    with httpx.Client(base_url=console.url, headers=AUTH, timeout=60) as client:
        create(client, alpha)
        create(client, beta, tags={"team": tag})
        for event in ("a", "b", "c"):
            answer = client.post(f"/functions/{alpha}/invoke", json=event)
            assert answer.status_code == 200, answer.text
        client.post(f"/functions/{alpha}/invoke", json="fail")
    return alpha, beta, tag


def test_overview_shows_the_last_hour(console: Console, functions: tuple[str, str, str]) -> None:
    console.login()
    page = console.page
    tiles = page.get_by_role("group", name="Last hour")
    expect(tiles).to_contain_text(re.compile(r"[1-9]\d* in the last hour"))
    expect(tiles).to_contain_text("Error rate")
    page.get_by_role("table", name="Top by invocations").wait_for()
    page.get_by_role("table", name="Top by errors").wait_for()
    assert page.locator(".chart canvas").count() >= 3
    console.shot("overview")


def test_functions_list_searches_filters_and_links(
    console: Console, functions: tuple[str, str, str],
) -> None:
    alpha, beta, tag = functions
    unique = alpha.split("-")[1]
    console.login()
    console.goto("/functions")
    page = console.page
    table = page.get_by_role("table", name="Functions", exact=True)
    rows = table.locator("tbody tr")
    expect(table.get_by_role("link", name=alpha, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=beta, exact=True)).to_be_visible()

    row = rows.filter(has=page.get_by_role("link", name=alpha, exact=True))
    expect(row.locator('td[data-label="Invocations (1 h)"]')).to_have_text("4")
    expect(row.locator('td[data-label="Errors (1 h)"]')).to_have_text("1")
    expect(row.locator('td[data-label="State"]')).to_have_text("enabled")
    expect(row.locator('td[data-label="Kind"]')).to_have_text("handler")
    beta_row = rows.filter(has=page.get_by_role("link", name=beta, exact=True))
    expect(beta_row.locator('td[data-label="Tags"]')).to_have_text(f"team={tag}")
    console.shot("functions")

    search = page.get_by_label("Search functions")
    search.fill(unique)
    expect(rows).to_have_count(2)
    search.fill(f"{unique}-alpha")
    expect(rows).to_have_count(1)
    expect(table.get_by_role("link", name=alpha, exact=True)).to_be_visible()
    # The filters live in the address: a reload keeps them.
    expect(page).to_have_url(re.compile(re.escape(f"q={unique}-alpha")))
    page.reload()
    expect(page.get_by_label("Search functions")).to_have_value(f"{unique}-alpha")
    expect(rows).to_have_count(1)

    page.get_by_label("Search functions").fill("")
    page.get_by_label("Tag").select_option(f"team={tag}")
    expect(rows).to_have_count(1)
    expect(table.get_by_role("link", name=beta, exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile("tag=team%3D"))
    page.get_by_label("Search functions").fill(f"{unique}-alpha")
    expect(page.get_by_text("No function matches")).to_be_visible()
    page.get_by_role("button", name="Clear the filters").click()
    expect(table.get_by_role("link", name=alpha, exact=True)).to_be_visible()

    page.get_by_label("Search functions").fill(unique)
    table.get_by_role("link", name=alpha, exact=True).click()
    page.wait_for_url(re.compile(rf"#/functions/{re.escape(alpha)}$"))


def test_functions_list_at_phone_width(
    browser: Browser, console: Console, functions: tuple[str, str, str],
) -> None:
    alpha, _, _ = functions
    context, phone = open_console(browser, console.url, PHONE)
    try:
        # Console.login waits for the sidebar, which a phone hides behind the menu button.
        phone.page.goto(f"{console.url}/console")
        phone.page.get_by_label("API key").fill(ADMIN_KEY)
        phone.page.get_by_role("button", name="Log in").click()
        phone.page.get_by_role("button", name="Menu").wait_for()
        phone.goto("/functions")
        phone.page.get_by_label("Search functions").fill(alpha)
        expect(phone.page.get_by_role("link", name=alpha, exact=True)).to_be_visible()
        phone.shot("functions-phone")
        phone.goto("/")
        phone.page.get_by_role("group", name="Last hour").wait_for()
        phone.shot("overview-phone")
        phone.no_errors()
    finally:
        context.close()


def test_a_new_server_says_how_to_deploy(browser: Browser, tmp_path: Path) -> None:
    with ember_server(tmp_path) as url:
        context, tab = open_console(browser, url)
        try:
            tab.login()
            expect(tab.page.get_by_role("heading", name="No functions yet")).to_be_visible()
            expect(tab.page.get_by_text("ember deploy examples/hello").first).to_be_visible()
            tab.shot("overview-empty")
            tab.goto("/functions")
            expect(tab.page.get_by_text("No functions yet.")).to_be_visible()
            tab.no_errors()
        finally:
            context.close()
