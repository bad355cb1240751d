"""The function page in Chromium: its tabs (kept in the URL), the traffic split of an alias,
publishing a version, the live instances, the actions of its header, and a function that
does not exist."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping

import pytest

from tests import apicalls as api
from tests.conftest import HELLO, make_zip
from tests.console.conftest import PHONE, Console, open_console

pytest.importorskip("playwright")
from playwright.sync_api import Browser, expect

SECOND = {"main.py": "def handler(event, context):\n    return {'second': event}\n"}
THIRD = {"main.py": "def handler(event, context):\n    return {'third': event}\n"}


def _zip(files: Mapping[str, str | bytes]) -> str:
    return base64.b64encode(make_zip(dict(files))).decode()


def _name() -> str:
    return f"fnp-{uuid.uuid4().hex[:8]}"


def _deploy(url: str, name: str) -> None:
    """``name`` with versions 1 and 2 (different code) and alias ``live`` on version 1."""
    created = api.post(f"{url}/functions", json={
        "name": name, "config": {"description": "the function page's test function"},
        "code": {"zip": _zip(HELLO)},
    })
    assert created.status_code == 201, created.text
    first = api.post(f"{url}/functions/{name}/versions", json={"description": "first"})
    assert first.status_code == 201, first.text
    code = api.put(f"{url}/functions/{name}/code", json={"zip": _zip(SECOND)})
    assert code.status_code == 200, code.text
    second = api.post(f"{url}/functions/{name}/versions", json={"description": "second"})
    assert second.status_code == 201 and second.json()["version"] == 2, second.text
    alias = api.put(f"{url}/functions/{name}/aliases/live", json={"version": 1})
    assert alias.status_code == 201, alias.text


def test_an_alias_moves_to_a_traffic_split_after_confirmation(console: Console) -> None:
    name = _name()
    _deploy(console.url, name)
    console.login()
    console.goto(f"/functions/{name}?tab=aliases")
    page = console.page
    expect(page.get_by_role("tab", name="Aliases")).to_have_attribute("aria-selected", "true")
    table = page.get_by_role("table", name="Aliases")
    live = table.get_by_role("row").filter(has_text="live")
    expect(live).to_contain_text("v1 100 %")
    console.shot("function-aliases")

    live.get_by_role("button", name="Edit split").click()
    page.get_by_label("Version", exact=True).select_option("2")
    page.get_by_label("Additional version", exact=True).select_option("1")
    weight = page.get_by_label("Weight of additional version (%)")
    weight.focus()
    weight.press("Home")
    for _ in range(10):
        weight.press("ArrowRight")
    expect(page.locator("output.weight-out")).to_have_text("10 %")
    expect(page.locator("p.split-preview")).to_contain_text("live: v2 90 % · v1 10 %")
    console.shot("function-aliases-edit")
    page.get_by_role("button", name="Save split").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("live: v2 90 % · v1 10 %")
    console.shot("function-aliases-confirm")
    dialog.get_by_role("button", name="Apply").click()

    expect(live).to_contain_text("v2 90 % · v1 10 %")
    expect(dialog).to_be_hidden()
    alias = api.get(f"{console.url}/functions/{name}/aliases/live").json()
    assert (alias["version"], alias["additional_version"]) == (2, 1)
    assert alias["weight"] == pytest.approx(0.1)
    console.shot("function-aliases-split")

    # A new alias, from the same tab.
    page.get_by_label("New alias name").fill("beta")
    page.get_by_label("New alias version").select_option("2")
    page.get_by_role("button", name="Create alias").click()
    expect(table.get_by_role("row").filter(has_text="beta")).to_contain_text("v2 100 %")
    assert api.get(f"{console.url}/functions/{name}/aliases/beta").json()["version"] == 2


def test_tabs_config_versions_instances_and_the_header(console: Console) -> None:
    name = _name()
    url = console.url
    _deploy(url, name)
    trigger = api.post(f"{url}/triggers", json={
        "name": f"{name}-yearly", "function": name, "qualifier": "live",
        "source": {"kind": "timer", "schedule": "cron(0 0 1 1 *)"},
    })
    assert trigger.status_code == 201, trigger.text
    console.login()
    console.goto(f"/functions/{name}")
    page = console.page

    # Config is the default tab.
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_role("tab", name="Config")).to_have_attribute("aria-selected", "true")
    panel = page.get_by_role("tabpanel")
    expect(panel.locator("dd").filter(has_text="main.handler")).to_be_visible()
    expect(page.get_by_text("the function page's test function", exact=True)).to_be_visible()
    console.shot("function-config")

    # Versions: the table, and publishing a change of latest.
    page.get_by_role("tab", name="Versions").click()
    expect(page).to_have_url(re.compile(r"tab=versions"))
    versions = page.get_by_role("table", name="Versions")
    expect(versions.get_by_role("row").filter(has_text="v1")).to_contain_text("live")
    assert api.put(f"{url}/functions/{name}/code", json={"zip": _zip(THIRD)}).status_code == 200
    page.get_by_label("Description").fill("third, from the console")
    page.get_by_role("button", name="Publish version").click()
    expect(versions.get_by_role("row").filter(has_text="v3")).to_contain_text(
        "third, from the console")
    listed = api.get(f"{url}/functions/{name}/versions").json()["versions"]
    assert [v["description"] for v in listed if v["version"] == 3] == ["third, from the console"]
    console.shot("function-versions")
    page.reload()
    expect(page.get_by_role("tab", name="Versions")).to_have_attribute("aria-selected", "true")

    # Instances: the one an invocation started.
    invoked = api.post(f"{url}/functions/{name}/invoke", json={"n": 1}, timeout=60)
    assert invoked.status_code == 200, invoked.text
    page.get_by_role("tab", name="Instances").click()
    expect(page).to_have_url(re.compile(r"tab=instances"))
    instances = page.get_by_role("table", name="Instances")
    expect(instances.get_by_role("row").nth(1)).to_contain_text("latest")
    expect(page.get_by_role("table", name="Pools")).to_contain_text("latest")
    console.shot("function-instances")

    for tab in ("Invoke", "Logs", "Stats"):
        page.get_by_role("tab", name=tab).click()
        expect(page).to_have_url(re.compile(f"tab={tab.lower()}"))
        expect(page.get_by_role("tabpanel")).to_be_visible()
        page.wait_for_load_state("networkidle")
        console.shot(f"function-{tab.lower()}")

    page.get_by_role("tab", name="Triggers").click()
    row = page.get_by_role("table", name="Triggers").get_by_role("row").filter(
        has_text=f"{name}-yearly")
    expect(row).to_contain_text("timer")
    expect(row).to_contain_text("cron(0 0 1 1 *)")
    expect(row).to_contain_text("live")
    console.shot("function-triggers")

    # The header's actions.
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("async paused", exact=True)).to_be_visible()
    assert api.get(f"{url}/functions/{name}").json()["async_state"] == "paused"
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("async paused", exact=True)).to_be_hidden()
    page.get_by_role("button", name="Disable").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(page.get_by_role("button", name="Enable")).to_be_visible()
    assert api.get(f"{url}/functions/{name}").json()["state"] == "disabled"
    console.shot("function-disabled")
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("button", name="Disable")).to_be_visible()
    assert api.get(f"{url}/functions/{name}").json()["state"] == "enabled"
    assert api.delete(f"{url}/triggers/{name}-yearly").status_code == 200


def test_a_missing_function_says_so_with_a_way_back(console: Console) -> None:
    console.login()
    console.goto("/functions/fnp-missing-function")
    page = console.page
    expect(page.get_by_role("alert")).to_contain_text("FunctionNotFound")
    console.shot("function-missing")
    page.get_by_role("link", name="Back to functions").click()
    expect(page).to_have_url(re.compile(r"#/functions$"))


def test_the_aliases_tab_at_phone_width(browser: Browser, console_server: str) -> None:
    name = _name()
    _deploy(console_server, name)
    context, tab = open_console(browser, console_server, PHONE)
    try:
        tab.login()
        tab.goto(f"/functions/{name}?tab=aliases")
        expect(tab.page.get_by_role("table", name="Aliases")).to_contain_text("v1 100 %")
        tab.shot("function-aliases-phone")
        tab.no_errors()
    finally:
        context.close()
