"""Prometheus metrics: requests by route and status, latency, version conflicts; served at /metrics.

Under gunicorn every worker is its own process, so the counters live in files under
PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets it before any worker imports this module) and
/metrics adds up the files of all workers, the live ones and the dead ones. Any Counter defined
elsewhere (the throttles' refusal and store-error counters) is collected the same way.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

REQUESTS = Counter(
    "movieapi_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "movieapi_http_request_duration_seconds",
    "Time from the first middleware to the response, by method, route and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
VERSION_CONFLICTS = Counter(
    "movieapi_version_conflicts_total",
    "Movie writes refused because they were based on an old version (409) or a stale ETag (412).",
    ["status"],
)
# Read replicas (movieapi.replicas, docs/replicas.md).
DB_READS = Counter(
    "movieapi_db_reads_total",
    "Safe API requests by where their catalogue reads were routed: the primary or a replica.",
    ["target"],
)
REPLICA_SKIPPED = Counter(
    "movieapi_replica_skipped_total",
    "Safe API requests that did not read from a replica, by replica and why: lag (behind more than "
    "REPLICA_MAX_LAG_MS, or unknown), unreachable, behind_caller (not yet replayed the caller's last write).",
    ["replica", "reason"],
)
UNMATCHED_ROUTE = "<unmatched>"
# The routers' regex routes read like the OpenAPI paths: (?P<pk>[0-9]+) becomes {pk}.
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def route_label(request: HttpRequest) -> str:
    """The URL pattern that served the request (never the raw path, whose ids would explode the label set)."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return UNMATCHED_ROUTE
    return _route_text(match.route)


@functools.lru_cache(maxsize=512)
def _route_text(route: str) -> str:
    """A route as a label, computed once per route (there are a few dozen)."""
    return "/" + _REGEX_GROUP.sub(r"{\1}", route.replace("^", "").replace("$", ""))


# A client may send any token as the method (answered 405): those share one label, so that nobody can grow
# the label set, i.e. every worker's metric files, without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(request: HttpRequest) -> str:
    """The request's method, or "other" for a method the API never serves."""
    method = request.method or ""
    return method if method in KNOWN_METHODS else OTHER_METHOD


@functools.lru_cache(maxsize=2048)
def _series(method: str, route: str, status: str) -> tuple[Any, Any]:
    """Fast path: metrics series cache.

    Replaces: prometheus_client's labels() (checks the values, takes a lock) twice a request.
    Why: 3.6 -> 0.2 us a request in process (timeit, measured for the ledger).
    Equal: movieapi/tests/test_ops.py::test_requests_are_counted_by_a_bounded_method_label
    Off: call REQUESTS.labels(...) and LATENCY.labels(...) in MetricsMiddleware.

    The request counter's and the latency histogram's series for these labels, looked up once per process:
    prometheus_client's labels() checks the values and takes a lock on every call."""
    return REQUESTS.labels(method, route, status), LATENCY.labels(method, route, status)


class MetricsMiddleware:
    """Count and time every request by route and status."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        requests, latency = _series(method_label(request), route_label(request), str(response.status_code))
        requests.inc()
        latency.observe(time.perf_counter() - started)
        return response


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of every worker's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
