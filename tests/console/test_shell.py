"""The console's shell in Chromium: login, navigation, logout."""

from __future__ import annotations

from tests import apicalls as api
from tests.conftest import ADMIN_KEY
from tests.console.conftest import Console


def test_login_shows_the_overview_and_logout_ends_the_session(console: Console) -> None:
    console.goto("/")
    console.login()
    page = console.page
    assert "/console" in page.url and "ek_" not in page.url
    page.get_by_role("navigation", name="Sections").get_by_role(
        "link", name="Functions", exact=True).click()
    page.get_by_role("heading", name="Functions").wait_for()
    console.shot("shell-functions")
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for()
    page.reload()
    page.get_by_label("API key").wait_for()


def test_the_keyboard_alone_logs_in_and_moves_between_sections(console: Console) -> None:
    page = console.page
    console.goto("/")
    page.get_by_label("API key").wait_for()
    page.keyboard.type(ADMIN_KEY)  # the key field has the focus on arrival
    page.keyboard.press("Enter")
    nav = page.get_by_role("navigation", name="Sections")
    nav.wait_for()
    # The first Tab reaches "Skip to content"; the sections follow the top bar's controls.
    for _ in range(12):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused == "Triggers":
            break
    else:
        raise AssertionError("Tab never reached the Triggers section")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Triggers", level=1).wait_for()
    assert page.url.endswith("#/triggers")


def test_a_revoked_key_sends_the_page_back_to_the_login(console: Console) -> None:
    made = api.post(f"{console.url}/keys", json={"name": "console-short", "role": "viewer"})
    assert made.status_code == 201, made.text
    console.goto("/")
    console.login(made.json()["key"])
    assert api.delete(f"{console.url}/keys/console-short").status_code == 204
    console.page.get_by_role("navigation", name="Sections").get_by_role(
        "link", name="Functions", exact=True).click()
    console.page.get_by_text("Your session ended").wait_for()
    console.page.get_by_label("API key").wait_for()
