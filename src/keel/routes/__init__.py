"""The API's routers. Each is a `PrefixedRouter`, so a request skips every router whose prefix it is not under."""

from __future__ import annotations

from fastapi import APIRouter
from starlette._utils import get_route_path  # the path routes match against, as Starlette's own routes read it
from starlette.routing import Match
from starlette.types import Scope

API_PREFIX = "/api/v1"


class PrefixedRouter(APIRouter):
    """An `APIRouter` that answers "no match" at once for a path outside its prefix.

    FastAPI (0.137 on) keeps each included router as one entry of the app's routes and, for each
    request, asks every entry ahead of the one that matches to try all of its routes: about 1 µs a
    route, with no look at the prefix, so a route's cost depended on how many routes were declared
    before it (bench/REPORT.md, "Route matching"). Every route of a router is under the router's
    prefix, so a path that is not under it cannot match any of them. Only the part of the prefix
    before a path parameter is literal; a router without a prefix is tried as before.

    Upstream's fix (fastapi/fastapi#16159, open) checks the prefix given to `include_router`, which
    Keel's routers do not use: they carry their prefix themselves.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        literal = self.prefix.split("{", 1)[0]
        if literal and not get_route_path(scope).startswith(literal):
            return Match.NONE, {}
        return super().matches(scope)
