"""Liveness and readiness probes, and the middleware that answers probes before host checks."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

from movieapi.errors import PROBLEM_CONTENT_TYPE, ServiceUnavailable, problem
from movieapi.metrics import metrics
from movieapi.renderers import dumps
from movieapi.replicas import readiness

logger = logging.getLogger(__name__)
# Migrations only move forward while a release is deployed: once this process saw none pending it
# stops loading the migration graph on every probe.
_migrated = False


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers; touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


def _check_migrations() -> str | None:
    """None when every migration this code knows is applied, else which are pending."""
    global _migrated
    if _migrated:
        return None
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return f"unknown: {type(exc).__name__}"
    if plan:
        return "pending: " + ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
    _migrated = True
    return None


def _check_cache() -> str | None:
    """None when the cache (Redis, holding the shared rate limits) takes a write and reads it back."""
    key = f"readyz:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=5)
        ok = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None if ok else "did not return what was written"


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database answers, no migration is pending, and the cache works; else 503. Read replicas are
    reported (`replicas`), never failed on: their reads go to the primary when they are lagging or unreachable."""
    database = _check_database()
    checks = {
        "database": database or "ok",
        # Without a database the migration state is unknown; say so rather than a second error.
        "migrations": (_check_migrations() or "ok") if database is None else "unknown",
        "cache": _check_cache() or "ok",
    }
    replicas = readiness()
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if not failing:
        return JsonResponse({"status": "ok", "checks": checks, "replicas": replicas})
    logger.warning("not ready: %s", checks)
    body = problem(
        503,
        f"Not ready: {', '.join(failing)}. See `checks`.",
        problem_type=ServiceUnavailable.problem_type,
        title=ServiceUnavailable.title,
        checks=checks,
        replicas=replicas,
    )
    response = HttpResponse(dumps(body), status=503, content_type=PROBLEM_CONTENT_TYPE)
    response["Retry-After"] = "1"
    return response


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class ProbeMiddleware:
    """Answer GET /healthz, /readyz and /metrics before host validation and the HTTPS redirect.

    Probes and scrapes reach a container by its address (`127.0.0.1:8000`, `api:8000`), not
    by the public host name that ALLOWED_HOSTS lists, and over plain HTTP inside the network.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in {"GET", "HEAD"}:
            return probe(request)
        return self.get_response(request)
