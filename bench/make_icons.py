"""The web app's PNG icons (192, 512 and a maskable 512), drawn from the favicon by Chromium.

    uv run python bench/make_icons.py

Run once when the favicon changes; the PNGs are committed (the server needs no image library).
A maskable icon keeps its mark inside the central 80 % circle that launchers may crop to.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parents[1] / "src" / "keel" / "web" / "static" / "icons"
MARK = "M8 9h3v6.2L17.4 9h3.9l-6.8 6.6L21.6 23h-4l-5-5.4-1.6 1.5V23H8z"
BLUE = "#2f5bd3"


def svg(size: int, *, maskable: bool) -> str:
    # The plain icon is the favicon's rounded square; the maskable one fills the square and
    # shrinks the mark to the safe zone.
    if maskable:
        body = f'<rect width="32" height="32" fill="{BLUE}"/><g transform="translate(6.4 6.4) scale(0.6)">'
        body += f'<path d="{MARK}" fill="#fff"/></g>'
    else:
        body = f'<rect width="32" height="32" rx="7" fill="{BLUE}"/><path d="{MARK}" fill="#fff"/>'
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32" width="{size}" height="{size}">{body}</svg>'


def main() -> None:
    ICONS.mkdir(exist_ok=True)
    chromium = os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for name, size, maskable in (("icon-192", 192, False), ("icon-512", 512, False), ("maskable-512", 512, True)):
            page = browser.new_page(viewport={"width": size, "height": size})
            page.set_content(f"<body style='margin:0'>{svg(size, maskable=maskable)}</body>")
            page.locator("svg").screenshot(path=str(ICONS / f"{name}.png"), omit_background=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
