"""The web console in a real browser: Playwright driving Debian's Chromium against a real
``ember server``. Without Chromium (or Playwright) these tests skip, with one line that says
what to install."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import ADMIN_KEY
from tests.servers import ember_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
# Screenshots of every page land here (CI keeps the folder as the tests' artifacts).
ARTIFACTS = Path(os.environ.get("EMBER_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
# Chromium as root in a closed network: no sandbox (root), nothing fetched in the background.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that open the browser are marked ``browser`` (the PostgreSQL pass of
    scripts/test.sh leaves them out: they drive the same API the other tests check there)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("EMBER_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


# Per module, not per session: Playwright's sync API keeps an event loop running on this
# thread while it is open, and the other tests' asyncio.run() refuses to start inside one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("console tests need Playwright: pip install -e '.[dev]'")
    if executable is None:
        pytest.skip("console tests need Chromium: apt-get install chromium (or set "
                    "EMBER_CHROMIUM to a Chromium binary)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server for the console tests; each test names its own functions."""
    with ember_server(tmp_path_factory.mktemp("console-home"), async_retry_delay_s="0.05",
                      async_system_delay_s="0.05") as url:
        yield url


# Chromium reports every 4xx/5xx answer as a console error "Failed to load resource";
# those are the API's answers (shown in the page), not JavaScript errors.
_NETWORK = re.compile(r"^Failed to load resource: the server responded with a status of")


@dataclass
class Console:
    """A browser tab on the console, recording JavaScript errors."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)

    def goto(self, route: str = "/") -> None:
        """Open ``#route`` (e.g. ``/functions/hello``) and wait for the page to settle."""
        self.page.goto(f"{self.url}/console#{route}")
        self.page.wait_for_load_state("networkidle")

    def login(self, key: str = ADMIN_KEY) -> None:
        self.page.goto(f"{self.url}/console")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Log in").click()
        # Attached, not visible: at phone width the sections hide behind the menu button.
        self.page.locator("nav.sidebar").wait_for(state="attached")

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def no_errors(self) -> None:
        assert self.errors == [], "the page logged JavaScript errors:\n" + "\n".join(self.errors)


def open_console(browser: Browser, url: str, viewport: ViewportSize | None = None,
                 ) -> tuple[Any, Console]:
    context = browser.new_context(viewport=viewport or DESKTOP, base_url=url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    # Assertions wait as long as actions: the suite shares the machine with other jobs.
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    tab = Console(page, url)
    page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: tab.errors.append(f"console.error: {msg.text}")
            if msg.type == "error" and not _NETWORK.match(msg.text) else None)
    return context, tab


@pytest.fixture
def console(browser: Browser, console_server: str) -> Iterator[Console]:
    """A fresh tab (no session yet) at 1280x800; fails the test if the page logged a
    JavaScript error."""
    context, tab = open_console(browser, console_server)
    try:
        yield tab
        tab.no_errors()
    finally:
        context.close()
