"""Entity tags and the preconditions that use them (RFC 9110, section 8.8.3 and 13.1).

An entity tag is a digest of the representation itself (its JSON, keys sorted), so it changes
exactly when what a client would read changes, whatever changed it: a vote on a post, an author
renaming themselves, an update made by a statement outside the ORM. A counter alone could not
promise that. The counter is still needed, for the other half of `If-Match`: between the check
and the write another request may commit, and only a write conditioned on the row's `version`
(SQLAlchemy's `version_id_col`, on todos, posts and users) sees that atomically on every backend.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from keel.core.errors import PreconditionFailed


def etag_of(representation: BaseModel | Mapping[str, Any]) -> str:
    """The strong entity tag of a representation, quoted as the ETag header carries it."""
    data = representation.model_dump(mode="json") if isinstance(representation, BaseModel) else representation
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).digest()[:16]
    return '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'


def _tags(header: str) -> Iterator[str]:
    """The entity tags of an If-Match / If-None-Match list, as sent (`W/` prefix kept)."""
    for part in header.split(","):
        tag = part.strip()
        if tag:
            yield tag


def none_match(header: str | None, current: str) -> bool:
    """Whether `If-None-Match` lets a GET through (False: answer 304). Weak comparison, as RFC 9110 asks."""
    if header is None:
        return True
    return not any(tag == "*" or tag.removeprefix("W/") == current for tag in _tags(header))


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A client's `If-Match`: the write goes ahead only if the current representation is one it names."""

    header: str

    def matches(self, current: str) -> bool:
        # Strong comparison: a weak tag never matches. `*` matches any current representation.
        return any(tag == "*" or tag == current for tag in _tags(self.header))

    def check(self, current: BaseModel | Mapping[str, Any]) -> None:
        """Raise 412 unless `current` (the representation a GET would give now) is one the client named."""
        if not self.matches(etag_of(current)):
            raise PreconditionFailed

    @classmethod
    def of(cls, header: str | None) -> IfMatch | None:
        return cls(header) if header is not None else None
