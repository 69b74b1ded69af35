"""Screenshots of the demo report and the transparency report for the README.

Usage: python docs/screenshots.py [DEMO_OUT]   (after `safesetting demo --out DEMO_OUT`)

Opens each page in headless Chromium (Debian's /usr/bin/chromium via Playwright) with every
network request refused, and writes docs/demo-report.png (the top of the report),
docs/demo-gap.png (the attainment-gap chart) and docs/transparency.png.
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
        page.goto((out / "report.html").as_uri())
        page.screenshot(path=DOCS / "demo-report.png")
        page.locator("#figure-gap").screenshot(path=DOCS / "demo-gap.png")
        page.goto((out / "transparency.html").as_uri())
        page.screenshot(path=DOCS / "transparency.png")
        for name in ("demo-report.png", "demo-gap.png", "transparency.png"):
            print(f"wrote {DOCS / name}")
        browser.close()


if __name__ == "__main__":
    main()
