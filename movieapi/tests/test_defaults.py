"""Safe defaults (issue #19, item 7): no gunicorn control socket, private caching of credentialed answers, a
Content-Security-Policy on the admin's pages."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from conftest import LiveServer
from movieapi.docs import DOCS_CONTENT_SECURITY_POLICY
from movieapi.middleware import ADMIN_CONTENT_SECURITY_POLICY
from movies.models import Movie
from movies.tests.factories import MovieFactory


@pytest.fixture
def movie(db: None) -> Movie:
    return MovieFactory.create()


def vary(response: object) -> set[str]:
    return {name.strip().lower() for name in response.headers.get("Vary", "").split(",") if name.strip()}  # type: ignore[attr-defined]


def test_anonymous_answers_carry_no_cache_control(anon: APIClient, movie: Movie) -> None:
    response = anon.get(f"/api/v1/movies/{movie.pk}/")
    assert response.status_code == 200
    assert "Cache-Control" not in response.headers
    assert "authorization" not in vary(response)


@pytest.mark.parametrize("path", ["/api/v1/movies/", "/api/v1/movies/{pk}/", "/api/v1/"])
def test_answers_to_a_token_are_private_and_vary_on_authorization(
    user_client: APIClient, movie: Movie, path: str
) -> None:
    response = user_client.get(path.format(pk=movie.pk))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private"
    assert "authorization" in vary(response)


def test_a_304_to_a_token_is_private_too(user_client: APIClient, movie: Movie) -> None:
    full = user_client.get(f"/api/v1/movies/{movie.pk}/")
    response = user_client.get(f"/api/v1/movies/{movie.pk}/", HTTP_IF_NONE_MATCH=full["ETag"])
    assert response.status_code == 304
    assert response["ETag"] == full["ETag"]
    assert response.headers["Cache-Control"] == "private"
    assert vary(response) == vary(full)


def test_a_refused_token_is_answered_privately(db: None, movie: Movie) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + "0" * 64)
    response = client.get(f"/api/v1/movies/{movie.pk}/")
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "private"


def test_admin_pages_for_a_session_are_private_and_vary_on_cookie(client: Client, staff: User) -> None:
    client.force_login(staff)
    for path in ("/admin/", "/admin/jsi18n/"):
        response = client.get(path)
        assert response.status_code == 200
        assert "private" in response.headers["Cache-Control"]
        assert "cookie" in vary(response)


def test_the_api_answers_a_session_cookie_as_no_cookie(client: Client, staff: User, movie: Movie) -> None:
    """The API is stateless: a session cookie is no credential there (test_fast_path_equality.py)."""
    client.force_login(staff)
    response = client.get(f"/api/v1/movies/{movie.pk}/")
    assert response.status_code == 200
    assert "Cache-Control" not in response.headers


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/admin/password_change/"])
def test_admin_pages_carry_a_content_security_policy(client: Client, staff: User, path: str) -> None:
    if path != "/admin/login/":
        client.force_login(staff)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == ADMIN_CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in ADMIN_CONTENT_SECURITY_POLICY


def test_the_docs_pages_keep_their_own_policy(db: None, anon: APIClient) -> None:
    for path in ("/api/docs/", "/api/redoc/"):
        assert anon.get(path).headers["Content-Security-Policy"] == DOCS_CONTENT_SECURITY_POLICY


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gunicorn's HOME, with an empty XDG_RUNTIME_DIR in it: where a control socket would go."""
    home = tmp_path_factory.mktemp("home")
    (home / "run").mkdir()
    return home


@pytest.fixture(scope="module")
def server(live_server_factory: Callable[..., LiveServer], home: Path) -> LiveServer:
    return live_server_factory(workers=1, env={"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")})


def test_gunicorn_opens_no_control_socket(server: LiveServer, home: Path) -> None:
    """gunicorn 25+ listens on $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/) unless told not to."""
    assert "Serving the API" in server.output()
    assert "Control socket" not in server.output()
    assert list((home / "run").iterdir()) == []
    assert not (home / ".gunicorn").exists()


@pytest.mark.django_db(transaction=True)
def test_live_headers_for_a_token_and_for_the_admin(server: LiveServer, user: User) -> None:
    _, token = AuthToken.objects.create(user=user)
    request = urllib.request.Request(server.url + "/api/v1/movies/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Cache-Control"] == "private"
        assert "Authorization" in response.headers["Vary"]
    with urllib.request.urlopen(server.url + "/api/v1/movies/", timeout=10) as response:
        assert response.headers["Cache-Control"] is None
    with urllib.request.urlopen(server.url + "/admin/login/", timeout=10) as response:
        assert response.headers["Content-Security-Policy"] == ADMIN_CONTENT_SECURITY_POLICY
