"""Lighthouse scores of the web UI, mobile profile.

    python3 -m uv run python bench/lighthouse.py                      # summary on stdout
    python3 -m uv run python bench/lighthouse.py --out /tmp/lh        # also keep the full JSON reports
    python3 -m uv run python bench/lighthouse.py --source /tmp/base   # another checkout (its src/ first on the path)

Installs Lighthouse (pinned, LIGHTHOUSE below) with npm into a cache folder outside the
repository if it is not there yet (`$XDG_CACHE_HOME/keel/lighthouse-<version>`, else
`~/.cache/...`), starts `keel serve` on SQLite in a temporary folder, seeds a verified user with
three todos and a published post written in Markdown through the API, and audits with Debian's
Chromium (headless, no sandbox), Lighthouse's default config: a mobile phone, simulated slow 4G:

- `/`, the public feed, signed out;
- `/todos`, signed in (the driver logs in as the web UI does before Lighthouse loads the page);
- `/posts/<id>`, the post, signed out.

Each page is audited --runs times (3), each time in a new browser profile. Performance moves
from run to run (Lighthouse simulates a slow phone from what it observed on this shared machine:
its main-thread times, times four), so each page's median run by performance is reported, with
every run's performance score. It prints the performance, accessibility, best-practices and SEO
scores, the audits of that run that cost points (scored under 0.9), and whether Chromium finds
the app installable (Lighthouse 12 has no PWA category any more; see bench/lighthouse.mjs).
Lighthouse 12.8 is the newest that runs on Node 20; 13 needs Node 22. A measurement script, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.processes import free_port, keel_env, serve_command, serving
from web_timing import CHROMIUM, PASSWORD, register_verified  # bench/, this script's folder, leads sys.path

LIGHTHOUSE = "12.8.2"
DRIVER = Path(__file__).with_name("lighthouse.mjs")
EMAIL = "bench@example.com"
POST = """A post to audit, written in **Markdown**.

## What it shows

- a list with `code`,
- a [link to the feed](/),
- and a quote:

> Keel keeps its course.

```python
print("hello")
```
"""
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")


def install(cache: Path) -> Path:
    """The folder whose node_modules holds the pinned Lighthouse, installed there if missing."""
    folder = cache / f"lighthouse-{LIGHTHOUSE}"
    if not (folder / "node_modules" / "lighthouse" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is needed to install Lighthouse")
        folder.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--ignore-scripts"]
        subprocess.run([*command, f"lighthouse@{LIGHTHOUSE}"], check=True)
    return folder


def seed(base: str, mail_dir: Path) -> int:
    """The bench user (verified, three todos) and a published Markdown post; the post's id."""
    token = register_verified(base, mail_dir)
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        for n in (1, 2, 3):
            http.post("/api/v1/todos", json={"title": f"Bench todo {n}"}).raise_for_status()
        created = http.post("/api/v1/posts", json={"title": "Bench post", "content": POST, "published": True})
        created.raise_for_status()
        return int(created.json()["id"])


def run_driver(folder: Path, base: str, post_id: int, out: Path, runs: int) -> list[dict[str, Any]]:
    # Node resolves the driver's imports from the folder the script is in: put it beside node_modules.
    driver = folder / DRIVER.name
    shutil.copyfile(DRIVER, driver)
    pages = [("feed", "/", False), ("todos", "/todos", True), ("post", f"/posts/{post_id}", False)]
    visits = [
        {"name": f"{name}-{run}", "path": path, "signedIn": signed_in}
        for run in range(1, runs + 1)
        for name, path, signed_in in pages
    ]
    options = {"base": base, "chromium": CHROMIUM, "out": str(out), "email": EMAIL, "password": PASSWORD}
    argument = json.dumps({**options, "pages": visits})
    done = subprocess.run(["node", str(driver), argument], check=True, stdout=subprocess.PIPE, text=True)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def score(visit: dict[str, Any], category: str) -> int:
    return round(100 * float(visit["lhr"]["categories"][category]["score"]))


def summary(results: list[dict[str, Any]]) -> str:
    """Each page's median run by performance score (the only one that moves from run to run)."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for visit in results:
        by_path.setdefault(visit["path"], []).append(visit)
    first = results[0]["lhr"]
    lines = [
        f"Lighthouse {first['lighthouseVersion']}, {first['formFactor']}, {first['throttling']} throttling; "
        f"median of {len(results) // len(by_path)} runs by performance",
        f"browser: {first['userAgent']}",
        "",
        f"{'page':9}" + "".join(f"{name:>16}" for name in CATEGORIES) + "   installable   performance by run",
    ]
    medians = {}
    for path, visits in by_path.items():
        median = sorted(visits, key=lambda visit: score(visit, "performance"))[len(visits) // 2]
        medians[path] = median
        cells = "".join(f"{score(median, name):>16}" for name in CATEGORIES)
        install = median["install"]
        problems = [*install["errors"], *install.get("manifestErrors", [])]
        installable = f"{install['installable']} {' '.join(problems)}"
        runs = " ".join(str(score(visit, "performance")) for visit in visits)
        lines.append(f"{path:9}{cells}   {installable:13} {runs}")
    for path, median in medians.items():
        metrics = ", ".join(f"{k} {v['display']}" for k, v in median["lhr"]["metrics"].items())
        lines += ["", f"{path} ({median['name']}, benchmarkIndex {median['lhr']['benchmarkIndex']}): {metrics}"]
        for name in CATEGORIES:
            for audit in median["lhr"]["categories"][name]["losing"]:
                display = f" ({audit['display']})" if audit["display"] else ""
                cost = f"score {audit['score']} weight {audit['weight']}{display}"
                lines.append(f"  {name}: {audit['id']} {cost}: {audit['title']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="a folder for the full Lighthouse JSON reports")
    parser.add_argument("--source", type=Path, help="a Keel checkout to serve instead of this one")
    parser.add_argument("--runs", type=int, default=3, help="audits of each page; the median is reported")
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keel"
    folder = install(cache)
    with tempfile.TemporaryDirectory() as temporary:
        out = args.out or Path(temporary) / "reports"
        out.mkdir(parents=True, exist_ok=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        data = Path(temporary) / "data"
        env = keel_env(data, KEEL_PUBLIC_URL=base, KEEL_EMAIL_DELIVERY="in-process", KEEL_LOG_LEVEL="WARNING")
        for rule in ("login", "login_ip"):  # a sign-in per audit of /todos
            env[f"KEEL_RATE_LIMIT_{rule.upper()}"] = "1000/minute"
        if args.source:
            env["PYTHONPATH"] = str(args.source.resolve() / "src")
        log = Path(temporary) / "serve.log"
        with serving(serve_command(port), env=env, log_path=log, ready_url=f"{base}/ready"):
            post_id = seed(base, data / "mail")
            results = run_driver(folder, base, post_id, out, args.runs)
    sys.stdout.write(summary(results))


if __name__ == "__main__":
    main()
