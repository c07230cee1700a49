"""Liveness and readiness probes."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers; touches nothing else."""
    return JsonResponse({"status": "ok"})
