"""Screenshots of the demo report and the transparency report for the README.

Usage: python docs/screenshots.py [DEMO_OUT]   (after `safesetting demo --out DEMO_OUT`)

Opens each page in headless Chromium (Debian's /usr/bin/chromium via Playwright) with every
network request refused, and writes docs/demo-report.png and docs/transparency.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").resolve()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.route("http*://**", lambda route: route.abort())
        for name, target in (("report.html", "demo-report.png"),
                             ("transparency.html", "transparency.png")):  # fmt: skip
            page.goto((out / name).as_uri())
            shot = DOCS / target
            if name == "report.html":
                page.locator("#figure-gap").scroll_into_view_if_needed()
                page.screenshot(path=shot, clip={"x": 0, "y": 0, "width": 1100, "height": 900},
                                full_page=False)  # fmt: skip
                page.locator("#figure-gap").screenshot(path=DOCS / "demo-gap.png")
            else:
                page.screenshot(path=shot)
            print(f"wrote {shot}")
        browser.close()


if __name__ == "__main__":
    main()
