"""Conditional requests at the HTTP edge: ETag on what a GET, PATCH or create returns, 304 for a GET."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Response
from pydantic import BaseModel

from keel.core.conditional import etag_of, none_match

ETAG = "ETag"

_M = TypeVar("_M", bound=BaseModel)


def tagged(representation: _M, response: Response) -> _M:
    """Send `representation` with its ETag."""
    response.headers[ETAG] = etag_of(representation)
    return representation


def representation_or_not_modified(representation: BaseModel, response: Response, if_none_match: str | None) -> Any:
    """A GET's answer: 304 Not Modified when the client's `If-None-Match` names the current ETag.

    The 304 carries the same ETag and the headers the route set, and no body (RFC 9110, 15.4.5).
    """
    etag = etag_of(representation)
    if none_match(if_none_match, etag):
        response.headers[ETAG] = etag
        return representation
    not_modified = Response(status_code=304)
    not_modified.headers.raw.extend(response.headers.raw)
    not_modified.headers[ETAG] = etag
    return not_modified
