"""The console end to end, as a user works with it: a function deployed through the API is
found in the list, invoked from the invoke panel (response and logs seen), its alias weight
moved, and its stats seen to change — in Chromium, on a real server."""

from __future__ import annotations

import base64
from typing import Any

from tests import apicalls as api
from tests.conftest import make_zip
from tests.console.conftest import Console

SOURCE = """
GREETING = {greeting!r}

def handler(event, context):
    print("greeting", event.get("name"), "from version", context.function_version)
    return {{"message": f"{{GREETING}}, {{event.get('name')}}!"}}
"""


def deploy(url: str, name: str) -> None:
    """The function with version 1 (Hello) and 2 (Bonjour), and alias live on version 1."""

    def code(greeting: str) -> dict[str, str]:
        files = {"main.py": SOURCE.format(greeting=greeting)}
        return {"zip": base64.b64encode(make_zip(files)).decode()}

    created = api.post(f"{url}/functions", json={
        "name": name, "config": {"handler": "main.handler", "tags": {"team": "web"}},
        "code": code("Hello")})
    assert created.status_code == 201, created.text
    assert api.post(f"{url}/functions/{name}/versions", json={}).status_code == 201
    assert api.put(f"{url}/functions/{name}/code", json=code("Bonjour")).status_code == 200
    assert api.post(f"{url}/functions/{name}/versions", json={}).status_code == 201
    alias = api.put(f"{url}/functions/{name}/aliases/live", json={"version": 1})
    assert alias.status_code in (200, 201), alias.text


def alias(url: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"{url}/functions/{name}/aliases/live").json()
    return found


def test_deploy_find_invoke_split_and_watch_stats(console: Console) -> None:
    from playwright.sync_api import expect

    url, name = console.url, "e2e-greeter"
    deploy(url, name)
    page = console.page
    console.goto("/")
    console.login()

    # Find it in the list.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Functions").click()
    page.get_by_label("Search functions").fill("e2e-gree")
    table = page.get_by_role("table", name="Functions")
    table.get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=name).wait_for()

    # Invoke live (version 1) from the invoke panel: the response and the request's logs.
    page.get_by_role("tab", name="Invoke").click()
    page.get_by_label("Qualifier").select_option("live")
    page.get_by_label("Payload").fill('{"name": "Ada"}')
    page.get_by_role("button", name="Invoke", exact=True).click()
    response = page.get_by_role("region", name="Response")
    response.get_by_text("Hello, Ada!").wait_for()
    assert "200" in response.inner_text()
    page.get_by_role("region", name="Request logs").get_by_text(
        "greeting Ada from version 1").wait_for()
    console.shot("e2e-invoke")

    # Stats before the split: at least the one invocation.
    page.get_by_role("tab", name="Stats").click()
    invocations = page.locator(".stat", has_text="Invocations").locator(".stat-value")
    expect(invocations).to_have_text("1")

    # Move the alias weight: 90 % to version 2, 10 % stays on version 1.
    page.get_by_role("tab", name="Aliases").click()
    aliases = page.get_by_role("table", name="Aliases")
    aliases.get_by_text("v1 100 %").wait_for()
    aliases.get_by_role("row").filter(has_text="live").get_by_role(
        "button", name="Edit split").click()
    page.get_by_label("Version", exact=True).select_option("2")
    page.get_by_label("Additional version", exact=True).select_option("1")
    page.get_by_role("slider", name="Weight of additional version").fill("10")
    page.get_by_role("button", name="Save split").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("v2 90 % · v1 10 %").wait_for()
    dialog.get_by_role("button", name="Apply").click()
    aliases.get_by_text("v2 90 % · v1 10 %").wait_for()
    moved = alias(url, name)
    assert moved["version"] == 2 and moved["additional_version"] == 1
    assert abs(moved["weight"] - 0.1) < 1e-9
    console.shot("function-page")

    # Traffic through the alias now lands mostly on version 2, and the stats show it.
    answers = [api.post(f"{url}/functions/{name}/invoke", params={"qualifier": "live"},
                        json={"name": "Bo"}) for _ in range(20)]
    assert all(a.status_code == 200 for a in answers)
    versions = {a.headers["x-ember-version"] for a in answers}
    assert "2" in versions
    page.get_by_role("tab", name="Stats").click()
    expect(invocations).to_have_text("21", timeout=30_000)
    console.shot("e2e-stats")

    # The aliases tab shows which versions served those calls: the split at work.
    page.get_by_role("tab", name="Aliases").click()
    observed = page.get_by_role("table", name="Observed traffic")
    served = sum(1 for a in answers if a.headers["x-ember-version"] == "2")
    expect(observed.get_by_role("row").filter(has_text="v2")).to_contain_text(str(served))
    console.shot("e2e-observed")
