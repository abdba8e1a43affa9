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

_pid = os.getpid()


def _remember_pid() -> None:
    global _pid
    _pid = os.getpid()


# A system call per line saved: the pid changes only in a forked child (a worker, a migration).
os.register_at_fork(after_in_child=_remember_pid)


def _add_pid(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["pid"] = _pid
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
    finishing: list[Processor] = [
        structlog.processors.format_exc_info if use_json else escape_control_characters,
        renderer,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finishing],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    _direct.configure(handler, [*shared, *finishing])
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


class _DirectLine:
    """Keel's handler, and the processors that make the line it writes from a structlog event."""

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[Any] | None = None
        self.processors: list[Processor] = []

    def configure(self, handler: logging.StreamHandler[Any], processors: list[Processor]) -> None:
        self.handler = handler
        self.processors = processors

    def reaches_only_keel(self, logger: logging.Logger, level: int = logging.INFO) -> bool:
        """Whether a record of `logger` at `level` would be written by Keel's handler alone, unfiltered."""
        handler = self.handler
        if handler is None or handler.filters or logging.root.filters or logger.filters or logger.disabled:
            return False
        if not logger.isEnabledFor(level) or level < handler.level:
            return False
        current: logging.Logger | None = logger
        while current is not None and current is not logging.root:
            if current.handlers or not current.propagate:
                return False
            current = current.parent
        return len(logging.root.handlers) == 1 and logging.root.handlers[0] is handler


_direct = _DirectLine()


class DirectLog:
    """A hot logger's lines (the one a request writes, security events): the same line as through
    `logging`, at a fraction of the cost.

    Through the standard library a line costs a `LogRecord`, the walk to the root logger's handler and
    the formatter's copy of the event: about 80 µs of a request's 1 ms in place (bench/REPORT.md).
    When Keel's handler is the only one that would see it, unfiltered, the line is made here by the
    same processors, in the same order, from the same event dict as structlog makes it (its context,
    the fields, then `event`), and written as `logging.StreamHandler.emit` writes, under the handler's
    lock. Whenever anything else listens (a handler or a filter that an operator or a test added, a
    level that drops the line), it goes through `logging` like every other.
    """

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)
        self._standard = get_logger(name)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", logging.WARNING, event, fields)

    def _write(self, method: str, level: int, event: str, fields: dict[str, Any]) -> None:
        handler = _direct.handler
        if handler is None or not _direct.reaches_only_keel(self._logger, level):
            getattr(self._standard, method)(event, **fields)
            return
        event_dict: Any = fields
        event_dict["event"] = event
        for processor in _direct.processors:
            event_dict = processor(self._logger, method, event_dict)
        handler.acquire()
        try:
            handler.stream.write(event_dict + handler.terminator)
            handler.flush()
        except RecursionError:  # as StreamHandler.emit: everything else is the handler's to report
            raise
        except Exception:
            # A closed or full stream must not fail the request that logs (a security event is
            # written mid-request): reported on stderr as `logging` reports its own, then dropped.
            handler.handleError(self._logger.makeRecord(self._logger.name, level, "", 0, event_dict, (), None))
        finally:
            handler.release()
