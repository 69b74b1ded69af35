"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Skipped when Chromium or Playwright is missing, unless ``CI=true``: CI installs both
(``.ci/run``), so there a missing browser fails the run instead of hiding the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def chromium() -> Path:
    """Debian's Chromium, or the one ``SAFESETTING_CHROMIUM`` names."""
    return Path(os.environ.get("SAFESETTING_CHROMIUM", "/usr/bin/chromium"))


def unavailable(reason: str):
    """Skip with ``reason`` (one line naming the fix); with ``CI=true``, fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


def require_browser() -> Path:
    """The Chromium to drive, once Playwright and the browser are both there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    path = chromium()
    if not path.exists():
        unavailable(f"no Chromium at {path}: apt-get install chromium (or SAFESETTING_CHROMIUM)")
    return path


@pytest.fixture(scope="session")
def browser():
    path = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(path), args=["--no-sandbox"])
        yield browser
        browser.close()


class Visit:
    """One page opened from a file, with every request it tried to make recorded."""

    def __init__(self, browser, path: Path) -> None:
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.route("**/*", self._route)
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        self.uri = path.as_uri()

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()  # never let a report reach the network

    @property
    def text(self) -> str:
        return self.page.inner_text("body")

    @property
    def html(self) -> str:
        return self.page.content()


@pytest.fixture
def visit(browser):
    opened: list[Visit] = []

    def open_page(path: Path) -> Visit:
        v = Visit(browser, path)
        opened.append(v)
        return v

    yield open_page
    for v in opened:
        v.page.close()
