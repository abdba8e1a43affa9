"""What a stream sends for an event: Server-Sent Events lines, written once for every stream."""

from __future__ import annotations

import json

from keel.core.events import Event


def test_an_event_is_framed_once_whatever_the_number_of_streams() -> None:
    # A shared list's event goes to every member's stream: the bytes are written once and shared.
    event = Event.of("todo.updated", actor_id=1, list_id=7, todo={"id": 3, "title": "Caulk"})
    event.id = "1700000000000-0"
    framed = event.frame()
    assert framed.startswith(b"id: 1700000000000-0\nevent: todo.updated\ndata: {")
    assert framed.endswith(b"}\n\n")
    assert json.loads(framed.split(b"data: ", 1)[1]) == event.data
    assert all(event.frame() is framed for _ in range(3))
