"""Prometheus metrics, in a registry of the app's own (never the global one).

Requests are labelled by route template (`/api/v1/todos/{todo_id}`), never by raw path, and
unknown methods share one label, so no client can make the number of series grow. With
`PROMETHEUS_MULTIPROC_DIR` set (several `keel serve` workers), each process writes its values
to files in that folder and a scrape of any worker sums them all (prometheus-client's
multiprocess mode); without it a scrape sees only the worker that answers it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import Mount

from keel.core.audit import SecurityEvent

# What generate_latest writes: the classic text format.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED_ROUTE = "<unmatched>"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTBOX_STATUSES = ("pending", "sending", "failed")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def route_label(scope: Mapping[str, Any]) -> str:
    """The template of the FastAPI route that matched, else a fixed label. Read after the router ran."""
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


def method_label(method: object) -> str:
    return method if isinstance(method, str) and method in _METHODS else "other"


class Metrics:
    def __init__(self) -> None:
        # prometheus-client reads the same variable when it is imported, to store values in files.
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "keel_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "keel_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.auth_events = Counter(
            "keel_auth_events",
            "Security events (sign-ins, refreshes, revocations, password and role changes), by event.",
            ["event"],
            registry=self.registry,
        )
        # Live updates (keel.services.event_stream): a worker's own streams, and what passed through it.
        self.event_streams = Gauge(
            "keel_event_streams_open",
            "Live update streams open, per worker.",
            registry=self.registry,
            multiprocess_mode="all",
        )
        self.events_published = Counter(
            "keel_events_published", "Live update events published by this worker.", registry=self.registry
        )
        self.events_delivered = Counter(
            "keel_events_delivered", "Live update events written to streams.", registry=self.registry
        )
        self.event_streams_ended = Counter(
            "keel_event_streams_dropped",
            "Live update streams the server ended, by reason (revoked, overflow, shutdown).",
            ["reason"],
            registry=self.registry,
        )
        self.event_publish_failures = Counter(
            "keel_event_publish_failures",
            "Live update events or notices that could not be published (Redis unreachable, backlog full).",
            registry=self.registry,
        )
        self._endpoint_templates: dict[Any, str] = {}
        self._indexed_routes = -1
        for event in SecurityEvent:  # every series exists from the start, so rate() sees the first one
            self.auth_events.labels(event.value)

    def route_label(self, scope: Mapping[str, Any]) -> str:
        """Like `route_label`, and also for routes that are not FastAPI's own (the docs, mounted
        static files), which leave only their endpoint in the scope."""
        label = route_label(scope)
        endpoint = scope.get("endpoint")
        if label != UNMATCHED_ROUTE or endpoint is None:
            return label
        routes = list(getattr(getattr(scope.get("app"), "router", None), "routes", ()))
        if len(routes) != self._indexed_routes:  # built once, again only if routes were added
            self._endpoint_templates = _endpoint_templates(routes)
            self._indexed_routes = len(routes)
        try:
            return self._endpoint_templates.get(endpoint, UNMATCHED_ROUTE)
        except TypeError:  # an unhashable endpoint
            return UNMATCHED_ROUTE

    def observe_request(self, *, method: object, route: str, status: int, seconds: float) -> None:
        method = method_label(method)
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def count_auth_event(self, event: SecurityEvent) -> None:
        self.auth_events.labels(event.value).inc()

    # What a broker counts (keel.core.events.EventCounters).
    def published(self) -> None:
        self.events_published.inc()

    def publish_failed(self) -> None:
        self.event_publish_failures.inc()

    def delivered(self, count: int) -> None:
        self.events_delivered.inc(count)

    def stream_opened(self) -> None:
        self.event_streams.inc()

    def stream_closed(self) -> None:
        self.event_streams.dec()

    def stream_ended(self, reason: str) -> None:
        self.event_streams_ended.labels(reason).inc()

    def exposition(self, *, outbox_depth: Mapping[str, int] | None) -> bytes:
        """The text format; the outbox gauge is left out when its numbers could not be read."""
        source: Collector = self.registry
        if self.multiprocess_dir:
            source = CollectorRegistry()
            MultiProcessCollector(source, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        output = generate_latest(source)
        if outbox_depth is not None:
            # Read from the database for this scrape alone, so every worker reports the same
            # numbers and no per-process copy of them can go stale.
            output += generate_latest(_Snapshot([_outbox_family(outbox_depth)]))
        return output


def _endpoint_templates(routes: Iterable[Any]) -> dict[Any, str]:
    index: dict[Any, str] = {}
    for route in routes:
        endpoint = route.app if isinstance(route, Mount) else getattr(route, "endpoint", None)
        template = getattr(route, "path_format", None)
        if endpoint is not None and isinstance(template, str):
            index.setdefault(endpoint, template)
    return index


class _Snapshot(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def _outbox_family(depth: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "keel_outbox_depth", "Emails in the outbox, by status (sent ones excluded).", labels=["status"]
    )
    for status in OUTBOX_STATUSES:
        family.add_metric([status], depth.get(status, 0))
    return family


def reset_multiprocess_dir() -> None:
    """Multiprocess mode needs an empty folder at each start (prometheus-client's documentation)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
