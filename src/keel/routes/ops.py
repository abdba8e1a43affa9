from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from ipaddress import ip_address

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from keel.core.client_ip import IPAddress, IPNetwork, resolve_client_ip
from keel.core.errors import Forbidden, InvalidToken, Unauthorized
from keel.deps import SettingsDep
from keel.http.metrics import CONTENT_TYPE
from keel.http.problems import problem_response
from keel.schemas.common import problem_responses
from keel.services import health as health_service
from keel.services import metrics as metrics_service

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: 200 while the process can answer."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses=problem_responses(503))
async def ready(request: Request) -> Readiness | JSONResponse:
    """Readiness: 200 when the database (and Redis and the mail broker, when configured) answer, else 503."""
    state = request.app.state
    broker = getattr(state.dispatcher, "check_broker", None)
    checks = await health_service.check(database=state.database, redis=state.redis, broker=broker)
    if all(result == "ok" for result in checks.values()):
        return Readiness(status="ok", checks=checks)
    failed = ", ".join(name for name, result in checks.items() if result != "ok")
    return problem_response(
        status=503,
        code="not_ready",
        title="Not ready",
        detail=f"Unavailable: {failed}.",
        instance="/ready",
        headers={"Retry-After": "5"},
        extensions={"checks": checks},
    )


# Headers a reverse proxy uses to name the client it relays for.
RELAY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _parse_ip(value: str | None) -> IPAddress | None:
    try:
        return ip_address(value) if value else None
    except ValueError:
        return None


def _client_address(request: Request, trusted: Sequence[IPNetwork]) -> IPAddress | None:
    """The client's address if it is known: None when a proxy KEEL_TRUSTED_PROXIES does not name relayed it.

    Behind such a proxy every request would seem to come from the proxy's own (often private)
    address, so a network allow-list would let the whole internet through.
    """
    peer = request.client.host if request.client else None
    # With nothing trusted, this only normalizes the peer (an IPv4-mapped IPv6 address to IPv4).
    peer_address = _parse_ip(resolve_client_ip(peer, (), ()))
    if peer_address is None:
        return None
    forwarded_for = request.headers.getlist("x-forwarded-for")
    if not any(peer_address in network for network in trusted):
        return None if any(name in request.headers for name in RELAY_HEADERS) else peer_address
    return _parse_ip(resolve_client_ip(peer, forwarded_for, trusted))


def _same_token(presented: str, expected: str) -> bool:
    # Digests of equal length: the comparison time reveals neither the token nor its length.
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest())


async def _metrics_access(request: Request, settings: SettingsDep) -> None:
    """Serve /metrics to clients in KEEL_METRICS_ALLOW, and to requests bearing KEEL_METRICS_TOKEN."""
    networks = settings.metrics_networks
    if networks is None:
        return
    address = _client_address(request, settings.trusted_proxies)
    if address is not None and any(address in network for network in networks):
        return
    if settings.metrics_token is None:
        raise Forbidden("Metrics are not served to this client.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("Metrics need the metrics bearer token from this client.")
    if not _same_token(presented.strip(), settings.metrics_token.get_secret_value()):
        raise InvalidToken("The metrics token is not the right one.")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(_metrics_access)],
    responses={
        200: {"description": "Prometheus text exposition format 0.0.4.", "content": {"text/plain": {}}},
        **problem_responses(401, 403),
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests by route template and status, latencies, security events, outbox depth.

    Served to clients in the networks of KEEL_METRICS_ALLOW (by default, in production: loopback and
    private networks), and to any client with `Authorization: Bearer <KEEL_METRICS_TOKEN>`. Another
    client gets 401 when a token is configured (so it could present one), else 403.
    """
    state = request.app.state
    body = await metrics_service.scrape(database=state.database, metrics=state.metrics)
    return Response(body, media_type=CONTENT_TYPE)
