"""Live updates: a Server-Sent Events stream per client, and tickets for browsers to open one.

The wire format is the contract in keel.schemas.events (and in the schema's description of
`GET /api/v1/events`); keel.services.event_stream decides what each stream sees and when it ends.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from keel.deps import EVENTS_SCOPES, CacheDep, DatabaseDep, LiveUpdatesDep, StreamCaller, TicketHolder
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import problem_responses
from keel.schemas.events import STREAM_DESCRIPTION, EventTicket
from keel.services.event_tickets import TICKET_TTL_SECONDS

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/events", tags=["events"], responses=problem_responses(401), dependencies=[EVENTS_SCOPES]
)

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM = "text/event-stream"

ResumeHeader = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=200,
        description="The last event id this client saw: what came after it is replayed first.",
    ),
]
ResumeQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="The same as `Last-Event-ID`, for an `EventSource` that cannot send it (the header wins).",
    ),
]


@router.get(
    "",
    response_class=StreamingResponse,
    description=STREAM_DESCRIPTION,
    summary="Live updates (Server-Sent Events)",
    responses={
        200: {"description": "The event stream.", "content": {EVENT_STREAM: {"schema": {"type": "string"}}}},
        **problem_responses(403, 422, 429, 503),
    },
)
async def stream_events(
    request: Request,
    caller: StreamCaller,
    live: LiveUpdatesDep,
    database: DatabaseDep,
    cache: CacheDep,
    last_event_id_header: ResumeHeader = None,
    last_event_id: ResumeQuery = None,
) -> Response:
    """Live updates (Server-Sent Events) of everything the caller may see."""
    if request.scope.get("keel.head"):  # a HEAD asks about the stream; opening one would never end
        return Response(media_type=EVENT_STREAM, headers=STREAM_HEADERS)
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    frames = await live.open(database=database, cache=cache, credential=caller, last_event_id=resume)
    return StreamingResponse(frames, media_type=EVENT_STREAM, headers=STREAM_HEADERS)


@router.post(
    "/ticket",
    status_code=status.HTTP_201_CREATED,
    response_model=EventTicket,
    responses=problem_responses(403, 429, 503),
)
async def create_event_ticket(caller: TicketHolder, live: LiveUpdatesDep, response: Response) -> EventTicket:
    """A single-use ticket, valid 30 seconds, that opens one event stream as the caller (for `EventSource`)."""
    response.headers["Cache-Control"] = "no-store"
    return EventTicket(ticket=await live.tickets.issue(caller), expires_in=TICKET_TTL_SECONDS)
