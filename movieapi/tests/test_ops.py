"""Operations: deploy checks, probes, request ids, JSON logs, metrics, CORS, statement timeouts, admin access."""

from __future__ import annotations

import gc
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.test.client import ClientHandler
from knox.models import AuthToken
from rest_framework.test import APIClient

from conftest import ROOT, LiveServer
from movieapi import metrics
from movieapi.tests.test_faults import call
from movies.models import Movie
from movies.tests.factories import MovieFactory


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a subprocess with the test environment changed by env ("" removes a variable)."""
    full_env = {**os.environ, **env}
    for name in [name for name, value in env.items() if value == ""]:
        del full_env[name]
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_HTTPS": "",  # unset: the production default (on)
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "TRUSTED_PROXY_COUNT": "1",
    "CORS_ALLOWED_ORIGINS": "https://app.example.com",
}


def test_check_deploy_passes_in_production_settings() -> None:
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stderr


def test_check_deploy_fails_when_https_is_off() -> None:
    env = {**PRODUCTION_ENV, "DJANGO_HTTPS": "0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **env)
    assert result.returncode != 0
    assert "security.W008" in result.stderr  # SECURE_SSL_REDIRECT


@pytest.mark.parametrize("key", ["", "django-insecure-development-only-key-do-not-use-in-production"])
def test_server_refuses_to_start_without_a_real_secret_key(key: str, tmp_path: Path) -> None:
    # No .env and no .data/secret_key either (the checkout's own may exist): production without a key.
    no_files = {"MOVIEAPI_ENV_FILE": str(tmp_path / ".env"), "MOVIEAPI_DATA_DIR": str(tmp_path)}
    result = manage("check", DJANGO_SECRET_KEY=key or "", DJANGO_DEBUG="0", **no_files)
    assert result.returncode != 0
    assert ("is not set" if not key else "is too weak") in result.stderr


def test_readyz_ok_when_database_cache_and_migrations_are(db: None, client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "cache": "ok"},
        "replicas": {},  # none configured (docs/replicas.md)
    }


def test_probes_answer_for_any_host_and_without_https_redirect(db: None, client: Client, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["api.example.com"]
    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/api/v1/movies/", HTTP_HOST="10.0.0.7:8000").status_code == 400  # only probes skip the check
    assert client.get("/api/v1/movies/", HTTP_HOST="api.example.com").status_code == 301


@pytest.mark.parametrize("path", ["/api/v1/movies/", "/api/v1/movies/?page_size=5&page=2", "/api/v1/movies/{id}/"])
def test_a_request_leaves_no_reference_cycles(db: None, path: str) -> None:
    # ReleaseViewMiddleware: the request, the view, the response and its data are freed by reference counting.
    movie: Movie = MovieFactory.create()
    MovieFactory.create_batch(9)
    handler = ClientHandler()  # Django's handler as the test client drives it (connections stay the test's)
    environ = RequestFactory().get(path.format(id=movie.pk)).environ

    def serve() -> int:
        response = handler(dict(environ))
        b"".join(response)
        return int(response.status_code)

    assert serve() == 200  # the first request also fills per-process caches
    gc.collect()
    gc.disable()
    try:
        assert serve() == 200
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_request_id_is_kept_or_made_and_returned(db: None, anon: APIClient) -> None:
    assert anon.get("/api/v1/movies/", HTTP_X_REQUEST_ID="trace-42.a:b")["X-Request-ID"] == "trace-42.a:b"
    made = anon.get("/api/v1/movies/", HTTP_X_REQUEST_ID="<script> not an id")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    missing = anon.get("/api/v1/nothing-here/")
    assert missing.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", missing["X-Request-ID"])


def test_cors_allows_listed_origins_and_exposes_concurrency_and_limit_headers(
    db: None, client: Client, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = client.options(
        "/api/v1/movies/1/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, if-match, content-type",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "if-match" in preflight["Access-Control-Allow-Headers"]
    response = client.get("/api/v1/movies/", HTTP_ORIGIN="https://app.example.com")
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "ratelimit", "ratelimit-policy", "retry-after"} <= exposed
    assert "Access-Control-Allow-Origin" not in client.get("/api/v1/movies/", HTTP_ORIGIN="https://evil.example.com")
    assert "origin" in response["Vary"].lower()
    # With no origin allowed, CORS stays out of the answers altogether (movieapi.middleware.CorsMiddleware).
    settings.CORS_ALLOWED_ORIGINS = []
    closed = client.get("/api/v1/movies/", HTTP_ORIGIN="https://app.example.com")
    assert closed.status_code == 200
    assert "Access-Control-Allow-Origin" not in closed
    assert "origin" not in closed.get("Vary", "").lower()


def test_admin_is_for_staff_only(db: None, client: Client, user: User, staff: User) -> None:
    client.force_login(user)
    assert client.get("/admin/").status_code == 302  # to the login page
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200


# ---- against live gunicorns -------------------------------------------------------------------


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of name whose labels include labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def test_requests_are_counted_by_a_bounded_method_label(db: None, client: Client) -> None:
    """Any token a client sends as the method is counted as "other" (answered 405), never as a label of its own."""
    for method in ("GET", "BREW", "PROPFIND"):
        response = client.generic(method, "/api/v1/movies/")
        assert response.status_code == (200 if method == "GET" else 405)
    counted = {
        sample.labels["method"]
        for metric in metrics.REQUESTS.collect()
        for sample in metric.samples
        if sample.labels.get("route") == "/api/v1/movies/"
    }
    assert {"GET", "other"} <= counted
    assert counted <= metrics.KNOWN_METHODS | {metrics.OTHER_METHOD}


@pytest.mark.live
def test_metrics_add_up_across_workers(
    transactional_db: None, curator: User, live_server_factory: Callable[..., LiveServer]
) -> None:
    # Anonymous callers get a tiny limit, so that the throttles' refusal counter moves too.
    server = live_server_factory(workers=3, env={"THROTTLE_ANON_RATE": "2/min"})
    movie = MovieFactory.create(title="Counted", year=2000)
    token = AuthToken.objects.create(user=curator)[1]
    before = call(server.url, "GET", "/metrics").body.decode()

    def get_detail() -> None:
        call(server.url, "GET", f"/api/v1/movies/{movie.pk}/", token=token)

    threads = [threading.Thread(target=get_detail) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    anonymous = [call(server.url, "GET", "/api/v1/movies/").status for _ in range(4)]
    assert 429 in anonymous
    stale = call(server.url, "PATCH", f"/api/v1/movies/{movie.pk}/", {"version": 7, "title": "x"}, token=token)
    assert stale.status == 409
    answer = call(server.url, "GET", "/metrics")
    after = answer.body.decode()

    assert answer.status == 200
    assert answer.content_type.startswith("text/plain")
    detail = {"method": "GET", "route": "/api/v1/movies/{pk}/", "status": "200"}
    assert (
        metric_value(after, "movieapi_http_requests_total", **detail)
        - metric_value(before, "movieapi_http_requests_total", **detail)
        == 30
    )
    assert (
        metric_value(after, "movieapi_http_request_duration_seconds_count", **detail)
        - metric_value(before, "movieapi_http_request_duration_seconds_count", **detail)
        == 30
    )
    assert (
        metric_value(after, "movieapi_version_conflicts_total", status="409")
        - metric_value(before, "movieapi_version_conflicts_total", status="409")
        == 1
    )
    assert str(movie.pk) not in re.findall(r'route="([^"]*)"', after)  # routes, never raw paths
    assert metric_value(after, "movieapi_throttle_refusals_total") >= 1  # counted in another module, collected here


def test_api_requests_skip_the_admins_session_middleware(db: None, client: Client) -> None:
    api = client.get("/api/v1/genres/")
    assert api.status_code == 200
    assert not hasattr(api.wsgi_request, "session")
    assert not hasattr(api.wsgi_request, "_messages")
    assert "Cookie" not in api.get("Vary", "")
    admin = client.get("/admin/login/")
    assert admin.status_code == 200
    assert hasattr(admin.wsgi_request, "session")
    assert hasattr(admin.wsgi_request, "_messages")
    assert admin.wsgi_request.user.is_anonymous
