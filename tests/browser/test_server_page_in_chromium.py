"""The server's public page (``GET /``) as a person sees it in Chromium, over real HTTP.

The page must render its chart, carry the transparency text, load nothing from anywhere but
the server itself (no CDN), run no script, and show nothing about any pupil.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from safesetting.server import create_app
from tests.browser.test_reports_in_chromium import UPN, assert_nothing_leaks


@pytest.fixture(scope="module")
def server_url(demo_run):
    run = demo_run[0]
    app = create_app(run.control.home)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


class _Page:
    def __init__(self, browser, url: str) -> None:
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        origin = url.rstrip("/")

        def route(r) -> None:  # noqa: ANN001
            self.requests.append(r.request.url)
            if r.request.url.startswith(origin):
                r.continue_()
            else:
                r.abort()

        self.page.route("**/*", route)
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.response = self.page.goto(url + "/")
        self.page.wait_for_load_state("load")
        self.origin = origin

    @property
    def text(self) -> str:
        return self.page.inner_text("body")

    @property
    def html(self) -> str:
        return self.page.content()


def test_public_page_renders_and_leaks_nothing(browser, server_url, demo_run):
    v = _Page(browser, server_url)
    try:
        assert v.response is not None
        assert v.response.status == 200
        svg = v.page.locator("#figure-privacy svg")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None
        assert box["width"] > 200
        assert box["height"] > 100
        for expected in ("fsm-gap", "immigration_enforcement", "purpose_refused"):
            assert expected in v.text
        assert all(u.startswith(v.origin) for u in v.requests), v.requests
        assert v.page.locator("script").count() == 0
        assert v.console_errors == []
        assert not UPN.search(v.html)
        assert_nothing_leaks(v, _full_names(demo_run))
    finally:
        v.page.close()


def _full_names(demo_run) -> set[str]:
    import duckdb

    con = duckdb.connect(str(demo_run[0].control.home.database), read_only=True)
    try:
        return {
            f"{f} {s}" for f, s in con.execute("SELECT forename, surname FROM pupils").fetchall()
        }
    finally:
        con.close()
