"""structlog configuration: JSON lines in production, readable console output in development."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

import orjson
import structlog
from structlog.types import EventDict, Processor

from keel.core.config import Settings


def _add_pid(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["pid"] = os.getpid()
    return event_dict


def _json_line(event_dict: EventDict, **_kw: Any) -> str:
    """One JSON line: orjson (several times faster than json.dumps), never a lost line.

    A value orjson cannot encode is written as its str(); a dict with non-string keys gets them
    as strings. What orjson refuses outright (an integer wider than 64 bits) goes through json.
    """
    try:
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(event_dict, default=str)


# C0 and C1 control characters, DEL included: a terminal acts on them (ANSI escape sequences that
# recolour, move the cursor, rewrite the title), and a newline would forge a log line of its own.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Written by the renderer itself, and meant to span lines.
_MULTILINE_KEYS = frozenset({"exception", "stack", "exc_info"})


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escape_control_characters(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Every text field as escapes where it holds control characters (a request path, a user agent).

    JSON lines are safe already (the encoder escapes them); the console renderer writes text as it is.
    """
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in _MULTILINE_KEYS and _CONTROL.search(value):
            event_dict[key] = _CONTROL.sub(_escape, value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and settings.is_production)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if use_json
        # Tracebacks as Python prints them. structlog's default with rich installed (typer brings
        # it) shows every frame's local variables: a password or token in a frame would be written
        # to the log, and rendering them took 16 s of CPU for one 500, holding the event loop.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else escape_control_characters,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    # No record is rendered with the caller's file and line, so don't look them up for each one
    # (the "Optimization" section of the logging HOWTO).
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn's own access log would duplicate the one line per request that Keel writes.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
