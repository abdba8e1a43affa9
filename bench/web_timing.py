"""Time to first content of the web UI at a 400 ms round trip, cold and on a repeat visit.

    uv run python bench/web_timing.py                      # this checkout
    uv run python bench/web_timing.py --source /tmp/base   # another checkout (its src/ first on the path)

Starts `keel serve` on SQLite in a temporary folder, makes a verified user with three todos and
a published post through the API, signs a browser in, and then, with Chromium's network
emulation (CDP Network.emulateNetworkConditions: 400 ms latency, 1.6 Mbit/s down, 750 kbit/s
up, about a slow 4G phone), opens /todos and / and records when the first todo / feed item is
on screen (milliseconds since navigation start, polled every animation frame):

- cold: a new browser context holding only the sign-in cookie and hint (nothing cached);
- repeat: the same page opened again in that context (whatever the browser kept).

Each figure is the median of --runs visits. A measurement script, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import email
import os
import re
import statistics
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.processes import free_port, keel_env, serve_command, serving

PASSWORD = "a sturdy keel holds 42 knots"
CHROMIUM = os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium")
NETWORK = {"offline": False, "latency": 400, "downloadThroughput": 1_600_000 / 8, "uploadThroughput": 750_000 / 8}
# What marks first content on each page: a todo's or a post's title, visible.
PAGES = {"/todos": "Bench todo 1", "/": "Bench post"}
FIRST_CONTENT = """(text) => {
  const found = [...document.querySelectorAll("#view li, #view article, #view tr, #view h2, #view a, #view span")]
    .find((el) => el.textContent.trim().startsWith(text) && el.getClientRects().length > 0);
  return found ? performance.now() : null;
}"""


def register_verified(base: str, mail_dir: Path) -> str:
    """The bench user, registered, verified through the mailed link and signed in: an access token."""
    with httpx.Client(base_url=base, timeout=10) as http:
        registered = http.post(
            "/api/v1/auth/register", json={"email": "bench@example.com", "username": "bench", "password": PASSWORD}
        )
        registered.raise_for_status()
        token = _verify_token(mail_dir)
        http.post("/api/v1/auth/verify-email/confirm", json={"token": token}).raise_for_status()
        login = http.post("/api/v1/auth/login", data={"username": "bench@example.com", "password": PASSWORD})
        login.raise_for_status()
        return str(login.json()["access_token"])


def prepare(base: str, mail_dir: Path) -> None:
    """A verified user with three todos and one published post."""
    auth = {"Authorization": f"Bearer {register_verified(base, mail_dir)}"}
    with httpx.Client(base_url=base, timeout=10) as http:
        for n in (1, 2, 3):
            http.post("/api/v1/todos", json={"title": f"Bench todo {n}"}, headers=auth).raise_for_status()
        post = {"title": "Bench post", "content": "First content.", "published": True}
        http.post("/api/v1/posts", json=post, headers=auth).raise_for_status()


def _verify_token(mail_dir: Path) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for path in mail_dir.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            body = message.get_body(("plain",)) if isinstance(message, EmailMessage) else None
            text = body.get_content() if body is not None else ""
            found = re.search(r"verify-email\?token=([^\s\"'<>]+)", text)
            if found:
                return found.group(1)
        time.sleep(0.1)
    raise SystemExit("no verification email arrived")


def sign_in(context: BrowserContext, base: str) -> None:
    """Sign the context in as the web app does: the refresh cookie and the signed-in hint."""
    page = context.new_page()
    page.goto(f"{base}/signin")
    page.evaluate(
        """async ([email, password]) => {
          const body = new URLSearchParams({ username: email, password });
          const headers = { "X-Keel-Client": "web" };
          const answer = await fetch("/api/v1/auth/login", { method: "POST", headers, body });
          if (!answer.ok) throw new Error(`sign-in failed: ${answer.status}`);
          localStorage.setItem("keel.signed-in", "1");
        }""",
        ["bench@example.com", PASSWORD],
    )
    page.close()


def first_content(page: Page, url: str, text: str) -> float:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", NETWORK)
    page.goto(url, wait_until="commit")
    handle = page.wait_for_function(FIRST_CONTENT, arg=text, polling="raf", timeout=60_000)
    value = handle.json_value()
    cdp.detach()
    return float(value)


def measure(base: str, runs: int, *, service_worker: bool = True) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {path: {"cold": [], "repeat": []} for path in PAGES}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        signed = browser.new_context()
        sign_in(signed, base)
        state: Any = signed.storage_state()
        signed.close()
        for _ in range(runs):
            for path, text in PAGES.items():
                # The emulated network is the page's: what the service worker fetches for it is not
                # slowed, so its API round trips are measured only with the worker blocked.
                context = browser.new_context(
                    storage_state=state, service_workers="allow" if service_worker else "block"
                )
                page = context.new_page()
                results[path]["cold"].append(first_content(page, base + path, text))
                results[path]["repeat"].append(first_content(page, base + path, text))
                # The refresh rotated the cookie: carry the newest one to the next visit.
                state = context.storage_state()
                context.close()
        browser.close()
    return {path: {kind: statistics.median(values) for kind, values in by.items()} for path, by in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="a Keel checkout to serve instead of this one")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-service-worker", action="store_true", help="block the service worker, so every API round trip is slowed"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        data = Path(folder) / "data"
        env = keel_env(data, KEEL_PUBLIC_URL=base, KEEL_EMAIL_DELIVERY="in-process", KEEL_LOG_LEVEL="WARNING")
        for rule in ("login", "login_ip", "register", "refresh", "writes", "sign_in_start"):
            env[f"KEEL_RATE_LIMIT_{rule.upper()}"] = "1000/minute"
        if args.source:
            env["PYTHONPATH"] = str(args.source.resolve() / "src")
        log = Path(folder) / "serve.log"
        with serving(serve_command(port), env=env, log_path=log, ready_url=f"{base}/ready"):
            prepare(base, data / "mail")
            timings = measure(base, args.runs, service_worker=not args.no_service_worker)
    worker = "blocked" if args.no_service_worker else "allowed"
    lines = [
        f"source: {args.source or 'this checkout'}; service worker {worker}; median of {args.runs}; "
        "first content in ms since navigation"
    ]
    lines += [f"{path:8} cold {kinds['cold']:7.0f}   repeat {kinds['repeat']:7.0f}" for path, kinds in timings.items()]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
