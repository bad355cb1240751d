"""The console's shell in Chromium: login, navigation, logout."""

from __future__ import annotations

from tests.console.conftest import Console


def test_login_shows_the_overview_and_logout_ends_the_session(console: Console) -> None:
    console.goto("/")
    console.login()
    page = console.page
    assert "/console" in page.url and "ek_" not in page.url
    page.get_by_role("link", name="Functions").click()
    page.get_by_role("heading", name="Functions").wait_for()
    console.shot("shell-functions")
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for()
    page.reload()
    page.get_by_label("API key").wait_for()
