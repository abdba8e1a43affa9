"""The web UI's files under content-hashed URLs, worked out when the server starts.

The UI has no build step, so the server does the one thing a bundler would: it names every file
by its content (`/static/js/app.3f09c2d1e4ab.js`) and rewrites the references to them (the
shell's `src`/`href`, each module's relative `import ... from "./x.js"`, the manifest's icons).
A hashed URL never changes content, so browsers may keep it for a year without asking
(`immutable`); a changed file gets a new URL because its hash changes, and so does every module
that imports it, because a module's hash covers all it imports. Only the shell is revalidated.

The shell also lists every module of the graph as `<link rel="modulepreload">`, read from the
imports here so it cannot drift: the browser fetches all of them at once instead of finding
them one import at a time, a round trip per level.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_PREFIX = "/static"
ENTRY = "js/app.js"
HASH_LENGTH = 12
# A name that carries a hash: `name.<12 hex>.ext`. One the server does not know is a 404, never
# the current file under an old name (a stale page must not mix versions unnoticed).
HASHED_NAME = re.compile(rf"\.[0-9a-f]{{{HASH_LENGTH}}}\.[A-Za-z0-9]+$")
# The module specifier of a static `import`/`export ... from` statement, relative to the file.
# The UI has no dynamic imports; a test walks the files and fails if one appears.
IMPORT = re.compile(r"""(\b(?:import|export)\b[\w\s{},*$]*?\bfrom\s*|\bimport\s*)(["'])(\.\.?/[^"']+)\2""")
# A reference to a static file from HTML or the manifest.
STATIC_REFERENCE = re.compile(rf"""(["'])({STATIC_PREFIX}/[\w./-]+)\1""")
TEXT_SUFFIXES = {".js", ".css", ".html", ".svg", ".webmanifest", ".json"}
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")


@dataclass(frozen=True)
class Asset:
    """One file as served under its hashed URL."""

    url: str
    body: bytes
    media_type: str
    etag: str


class Assets:
    """Every file under `root`, by hashed URL, plus the shell rendered to use them."""

    def __init__(self, root: Path, shell: Path, service_worker: Path | None = None) -> None:
        self.root = root
        self._raw = {
            path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
        }
        self._imports = {name: self._imports_of(name) for name in self._raw if name.endswith(".js")}
        self.urls = {name: self._hashed_url(name) for name in self._raw}
        self.by_url: dict[str, Asset] = {}
        for name, url in self.urls.items():
            body = self._rewrite(name)
            media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.by_url[url.removeprefix(f"{STATIC_PREFIX}/")] = Asset(url, body, media_type, _etag(body))
        self.modules = self.graph(ENTRY)
        self.shell = self._render_shell(shell.read_text())
        self.shell_etag = _etag(self.shell)
        self.service_worker = self._render_worker(service_worker.read_text()) if service_worker else b""
        self.service_worker_etag = _etag(self.service_worker)

    def graph(self, entry: str) -> list[str]:
        """Every module `entry` reaches through its imports, itself first, each once."""
        seen: list[str] = []
        pending = [entry]
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.append(name)
            pending.extend(self._imports[name])
        return seen

    def url(self, name: str) -> str:
        return self.urls[name]

    def _imports_of(self, name: str) -> list[str]:
        text = self._raw[name].decode()
        found = []
        for match in IMPORT.finditer(text):
            target = _resolve(name, match.group(3))
            if target not in self._raw:
                raise RuntimeError(f"{name} imports {match.group(3)}, which is not a static file")
            found.append(target)
        return found

    def _closure(self, name: str) -> list[str]:
        """The file and, for a module, all it imports however indirectly (cycles allowed)."""
        if name not in self._imports:
            return [name]
        return sorted(self.graph(name))

    def _hashed_url(self, name: str) -> str:
        digest = hashlib.sha256()
        for part in self._closure(name):
            digest.update(part.encode() + b"\0" + self._raw[part] + b"\0")
        stem, dot, suffix = name.rpartition(".")
        return f"{STATIC_PREFIX}/{stem}.{digest.hexdigest()[:HASH_LENGTH]}{dot}{suffix}"

    def _rewrite(self, name: str) -> bytes:
        raw = self._raw[name]
        if name.endswith(".js"):
            text = IMPORT.sub(
                lambda m: f"{m.group(1)}{m.group(2)}{self.urls[_resolve(name, m.group(3))]}{m.group(2)}", raw.decode()
            )
            return text.encode()
        if name.endswith((".webmanifest", ".css")):
            return self.rewrite_references(raw.decode()).encode()
        return raw

    def rewrite_references(self, text: str) -> str:
        """`text` with each "/static/<file>" it quotes replaced by that file's hashed URL."""

        def hashed(match: re.Match[str]) -> str:
            name = match.group(2).removeprefix(f"{STATIC_PREFIX}/")
            return f"{match.group(1)}{self.urls.get(name, match.group(2))}{match.group(1)}"

        return STATIC_REFERENCE.sub(hashed, text)

    def _render_shell(self, html: str) -> bytes:
        preloads = "".join(
            f'\n  <link rel="modulepreload" href="{self.urls[name]}">' for name in self.modules if name != ENTRY
        )
        entry = f'<script type="module" src="{STATIC_PREFIX}/{ENTRY}"></script>'
        if entry not in html:
            raise RuntimeError(f"the shell must load {ENTRY} as `{entry}`")
        return self.rewrite_references(html.replace(entry, entry + preloads)).encode()

    def _render_worker(self, source: str) -> bytes:
        """The service worker with the shell's hashed URLs and a version that changes with them."""
        shell = sorted(self.urls.values())
        version = hashlib.sha256((self.shell.decode() + "".join(shell)).encode()).hexdigest()[:HASH_LENGTH]
        for placeholder, value in (
            ('const VERSION = "dev";', f"const VERSION = {json.dumps(version)};"),
            ("const SHELL = [];", f"const SHELL = {json.dumps(shell)};"),
        ):
            if placeholder not in source:
                raise RuntimeError(f"the service worker must declare `{placeholder}`")
            source = source.replace(placeholder, value)
        return source.encode()


def _resolve(importer: str, specifier: str) -> str:
    """The static file a relative specifier names, as a path under the static root."""
    parts = importer.split("/")[:-1]
    for piece in specifier.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def _etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


IMMUTABLE = "public, max-age=31536000, immutable"


class HashedStatic(StaticFiles):
    """/static: a hashed URL from memory, cached for good; a plain name from disk, revalidated.

    The plain names stay for scripts, tests and old links; the shell never uses them.
    """

    def __init__(self, *, assets: Assets) -> None:
        super().__init__(directory=assets.root)
        self.assets = assets

    async def get_response(self, path: str, scope: Scope) -> Response:
        asset = self.assets.by_url.get(path)
        if asset is not None:
            headers = {"Cache-Control": IMMUTABLE, "ETag": asset.etag, "X-Content-Type-Options": "nosniff"}
            if _matches(Headers(scope=scope).get("if-none-match"), asset.etag):
                return Response(status_code=304, headers=headers)
            return Response(asset.body, media_type=asset.media_type, headers=headers)
        if HASHED_NAME.search(path):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def conditional(request_etag: str | None, body: bytes, etag: str, headers: dict[str, str], **kwargs: Any) -> Response:
    """`body` with its ETag, or a bodiless 304 when the client already holds that version."""
    if _matches(request_etag, etag):
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return Response(body, headers={**headers, "ETag": etag}, **kwargs)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in candidates or "*" in candidates
