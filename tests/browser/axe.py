"""axe-core, the accessibility engine, run in the page under test.

The engine is the axe.min.js that the axe-playwright-python package ships (a development
dependency, so nothing is fetched at test time); it is evaluated through the DevTools protocol,
which the page's Content-Security-Policy does not govern, so the page is scanned exactly as it is
served. WCAG 2.x A and AA rules and axe's best practices; every violation is a failure.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from playwright.sync_api import Page

RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}


@cache
def _engine() -> str:
    return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def violations(page: Page, include: str | None = None) -> list[str]:
    """What axe finds wrong in the page (or only inside the `include` selector), one line a problem."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_engine())
    found: list[dict[str, Any]] = page.evaluate(
        "([include, options]) => axe.run(include ? { include: [include] } : document, options)"
        ".then((results) => results.violations)",
        [include, {**RULES, "resultTypes": ["violations"]}],
    )
    return [
        f"{rule['id']} ({rule['impact']}): {rule['help']} at {[node['target'] for node in rule['nodes']]}"
        for rule in found
    ]
