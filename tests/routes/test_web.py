"""The web UI's shell, its headers and the rules its files keep (no inline code, nothing external)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from keel.http.web_assets import HASHED_NAME, Assets
from keel.main import CONTENT_SECURITY_POLICY, WEB_DIR, WEB_PAGES
from tests.factories import assert_problem

# What Chromium and Firefox send when a person opens an address.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
SCRIPTS = sorted((WEB_DIR / "static").rglob("*.js"))
HTML = sorted(WEB_DIR.rglob("*.html"))
ENTRY_SCRIPT = re.compile(r'<script type="module" src="/static/js/app\.[0-9a-f]{12}\.js"></script>')


def concrete(path: str) -> str:
    return path.replace("{post_id}", "42").replace("{tag}", "sailing")


class TestShell:
    @pytest.mark.parametrize("path", WEB_PAGES)
    async def test_every_page_of_the_app_serves_the_shell(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(concrete(path))

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert ENTRY_SCRIPT.search(response.text)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"

    async def test_the_shell_describes_the_app_for_search_results(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/")

        description = re.search(r'<meta name="description" content="([^"]+)">', response.text)
        assert description is not None
        assert "todo" in description.group(1)

    async def test_an_email_link_with_its_token_opens_the_shell(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/verify-email", params={"token": "abc.def"})

        assert response.status_code == 200
        assert "abc.def" not in response.text

    async def test_a_path_the_app_does_not_know_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/todos/extra/parts"), 404, "not_found")

    def test_the_policy_allows_only_this_origin_and_no_inline_code(self) -> None:
        directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))

        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["default-src"] == "'self'"
        assert "unsafe" not in CONTENT_SECURITY_POLICY

    def test_the_router_and_the_server_know_the_same_pages(self) -> None:
        app_js = (WEB_DIR / "static" / "js" / "app.js").read_text()
        client_routes = set(re.findall(r'^route\("([^"]+)"', app_js, flags=re.MULTILINE))

        assert client_routes == {path.replace("{post_id}", ":id").replace("{tag}", ":tag") for path in WEB_PAGES}


class TestUnknownPaths:
    """A person who opens an unknown address sees the app's "Page not found"; a program gets a problem."""

    @pytest.mark.parametrize("path", ["/nope", "/settings", "/todos/extra/parts", "/admin"])
    @pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html"], ids=["browser", "html"])
    async def test_a_browser_navigation_gets_the_shell_with_a_404(
        self, client: httpx.AsyncClient, path: str, accept: str
    ) -> None:
        response = await client.get(path, headers={"Accept": accept})

        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert ENTRY_SCRIPT.search(response.text)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-cache"

    async def test_a_head_request_from_a_browser_gets_the_404_shell_headers(self, client: httpx.AsyncClient) -> None:
        response = await client.head("/nope", headers={"Accept": BROWSER_ACCEPT})

        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert response.content == b""

    @pytest.mark.parametrize(
        "accept",
        [
            "application/json",
            "application/problem+json",
            "*/*",
            "",
            "application/json, text/html;q=0.5",
            "text/html;q=0",
        ],
        ids=["json", "problem", "any", "none", "json-preferred", "html-refused"],
    )
    async def test_an_api_client_keeps_the_problem(self, client: httpx.AsyncClient, accept: str) -> None:
        headers = {"Accept": accept} if accept else {}
        response = await client.get("/nope", headers=headers)

        assert_problem(response, 404, "not_found")

    @pytest.mark.parametrize(
        "path",
        [
            "/api",
            "/api/v1/nope",
            "/api/v2/todos",
            "/health/live",
            "/ready/now",
            "/metrics/x",
            "/docs/nope",
            "/redoc/nope",
            "/openapi.json/x",
            "/static/nope.js",
        ],
    )
    async def test_the_api_and_operational_paths_keep_the_problem_even_for_a_browser(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        assert_problem(await client.get(path, headers={"Accept": BROWSER_ACCEPT}), 404, "not_found")

    async def test_a_form_post_to_an_unknown_path_keeps_the_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/nope", data={"a": "b"}, headers={"Accept": BROWSER_ACCEPT})

        assert_problem(response, 404, "not_found")


class TestStaticFiles:
    @pytest.mark.parametrize("path", [f"/static/{p.relative_to(WEB_DIR / 'static')}" for p in SCRIPTS])
    async def test_scripts_are_served_as_javascript(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}

    async def test_the_stylesheet_and_icon_are_served(self, client: httpx.AsyncClient) -> None:
        css = await client.get("/static/keel.css")
        icon = await client.get("/static/favicon.svg")

        assert css.status_code == icon.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert icon.headers["content-type"].startswith("image/svg+xml")

    async def test_static_files_are_revalidated_and_never_sniffed(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/static/js/app.js")
        again = await client.get("/static/js/app.js", headers={"If-None-Match": first.headers["etag"]})

        assert first.headers["cache-control"] == "no-cache"
        assert first.headers["x-content-type-options"] == "nosniff"
        assert again.status_code == 304
        assert again.content == b""

    async def test_missing_static_file_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/static/nope.js"), 404, "not_found")


class TestSourceRules:
    """What the CSP enforces at run time, checked in the files too, so a slip fails here first."""

    @pytest.mark.parametrize("path", HTML, ids=lambda p: p.name)
    def test_html_has_no_inline_script_style_or_handler(self, path: Path) -> None:
        html = path.read_text()

        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, tag
        assert not re.search(r"<script\b[^>]*>(?!\s*</script>)", html), "inline script"
        assert "<style" not in html
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
        assert not re.search(r"\sstyle\s*=", html), "inline style"

    @pytest.mark.parametrize("path", [*HTML, *SCRIPTS], ids=lambda p: p.name)
    def test_nothing_is_loaded_from_another_origin(self, path: Path) -> None:
        source = path.read_text()

        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)
        assert not re.search(r"""(fetch|import)\s*\(\s*["'`](https?:)?//""", source)
        assert not re.search(r"""from\s+["'](https?:)?//""", source)

    @pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
    def test_scripts_never_use_web_storage_for_tokens_or_html_sinks(self, path: Path) -> None:
        source = path.read_text()

        # Only the live client keeps something for the tab: where its stream was (an event id,
        # no secret), so a reload resumes there.
        tab_keys = set(re.findall(r"sessionStorage\.(?:get|set|remove)Item\(([^,)]+)", source))
        assert tab_keys <= ({"LAST_ID_KEY"} if path.name == "live.js" else set()), tab_keys
        # Web storage is written in one helper, and only with the two flags (no token).
        for call in re.findall(r"localStorage\.setItem\(([^,]+),", source):
            assert call.strip() == "key", call
        for call in re.findall(r"storage\.set\(([^,]+),", source):
            assert call.strip() in {"SIGNED_IN_HINT", "SIGNED_OUT_REASON"}, call
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, sink


class TestHashedAssets:
    """The shell names every file by its content, so browsers keep them for good and never mix versions."""

    async def test_the_shell_refers_only_to_hashed_urls_and_they_are_immutable(self, client: httpx.AsyncClient) -> None:
        shell = await client.get("/")
        urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', shell.text)

        assert len(urls) > 10
        for url in urls:
            assert HASHED_NAME.search(url), url
            response = await client.get(url)
            assert response.status_code == 200, url
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["x-content-type-options"] == "nosniff"

    async def test_the_shell_is_revalidated_by_its_etag(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/todos")
        again = await client.get("/todos", headers={"If-None-Match": first.headers["etag"]})

        assert first.headers["cache-control"] == "no-cache"
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

    async def test_a_hashed_module_imports_hashed_modules(self, client: httpx.AsyncClient) -> None:
        shell = await client.get("/")
        entry = re.search(r'src="(/static/js/app\.[0-9a-f]{12}\.js)"', shell.text)
        assert entry is not None
        source = (await client.get(entry.group(1))).text

        specifiers = re.findall(r'from "([^"]+)"', source)
        assert specifiers
        assert all(HASHED_NAME.search(s) and s.startswith("/static/js/") for s in specifiers), specifiers

    async def test_an_unknown_hash_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/static/js/app.0123456789ab.js"), 404, "not_found")

    def test_a_changed_file_changes_its_url_and_its_importers_urls(self, tmp_path: Path) -> None:
        root = tmp_path / "static"
        shutil.copytree(WEB_DIR / "static", root)
        before = Assets(root, WEB_DIR / "index.html")
        dom = root / "js" / "dom.js"
        dom.write_text(dom.read_text() + "\n// changed\n")
        after = Assets(root, WEB_DIR / "index.html")

        assert before.url("js/dom.js") != after.url("js/dom.js")
        assert before.url("js/app.js") != after.url("js/app.js")  # app.js imports dom.js
        assert before.url("keel.css") == after.url("keel.css")
        assert before.url("js/router.js") == after.url("js/router.js")  # imports nothing that changed

    async def test_every_module_of_the_graph_is_preloaded(self, client: httpx.AsyncClient) -> None:
        shell = (await client.get("/")).text
        preloaded = {_unhashed(url) for url in re.findall(r'<link rel="modulepreload" href="([^"]+)">', shell)}

        # Walk the imports of the files on disk, independently of the server's own walk.
        reached: set[Path] = set()
        pending = [WEB_DIR / "static" / "js" / "app.js"]
        while pending:
            module = pending.pop().resolve()
            if module in reached:
                continue
            reached.add(module)
            source = module.read_text()
            assert "import(" not in source, f"{module.name}: a dynamic import the graph cannot see"
            pending.extend(module.parent / spec for spec in re.findall(r'(?:from|import)\s*"(\.\.?/[^"]+)"', source))
        expected = {f"/static/{p.relative_to((WEB_DIR / 'static').resolve()).as_posix()}" for p in reached}

        assert preloaded == expected - {"/static/js/app.js"}

    @pytest.mark.parametrize("suffix", ["js/app.js", "keel.css"])
    async def test_scripts_and_styles_are_compressed(self, client: httpx.AsyncClient, suffix: str) -> None:
        shell = (await client.get("/")).text
        url = next(u for u in re.findall(r'(?:src|href)="(/static/[^"]+)"', shell) if _unhashed(u).endswith(suffix))

        response = await client.get(url, headers={"Accept-Encoding": "gzip"})

        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def _unhashed(url: str) -> str:
    return re.sub(r"\.[0-9a-f]{12}(\.\w+)$", r"\1", url)


class TestServiceWorker:
    async def test_it_is_served_from_the_root_with_the_hashed_shell(self, client: httpx.AsyncClient) -> None:
        worker = await client.get("/sw.js")
        again = await client.get("/sw.js", headers={"If-None-Match": worker.headers["etag"]})
        shell = (await client.get("/")).text

        assert worker.status_code == 200
        assert worker.headers["content-type"].startswith("text/javascript")
        assert worker.headers["cache-control"] == "no-cache"
        assert again.status_code == 304
        assert 'const VERSION = "dev"' not in worker.text
        listed = set(re.findall(r'"(/static/[^"]+)"', worker.text))
        for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', shell):
            assert url in listed, url
        assert "/api/v1/auth" not in worker.text
