from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from keel.core.metrics import CONTENT_TYPE
from keel.core.problems import problem_response
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


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format 0.0.4.", "content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests by route template and status, latencies, security events, outbox depth."""
    state = request.app.state
    body = await metrics_service.scrape(database=state.database, metrics=state.metrics)
    return Response(body, media_type=CONTENT_TYPE)
