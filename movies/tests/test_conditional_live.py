"""Conditional requests through a real gunicorn: what reaches the wire for 304, 412, 409 and HEAD."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from knox.models import AuthToken

from conftest import LiveServer, curators_group
from movies.models import Movie
from movies.tests.factories import MovieFactory

pytestmark = [pytest.mark.live]


def send(
    server: LiveServer, method: str, path: str, headers: dict[str, str], body: dict[str, object] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on its own connection; the status, the headers and the bytes that followed them."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        raw = response.read()
        return response.status, response.headers, raw
    finally:
        conn.close()


@pytest.fixture
def live_movie(transactional_db: None) -> Movie:
    movie: Movie = MovieFactory.create(title="Live", runtime=100)
    return movie


@pytest.fixture
def token(transactional_db: None) -> str:
    user = User.objects.create_user("live-conditional", password="a-long-enough-password-9")
    user.groups.add(curators_group())
    return AuthToken.objects.create(user=user)[1]


def test_conditional_reads_and_writes_on_the_wire(live_gunicorn: LiveServer, live_movie: Movie, token: str) -> None:
    path = f"/api/v1/movies/{live_movie.pk}/"
    status, headers, body = send(live_gunicorn, "GET", path, {})
    assert status == 200
    etag, length = headers["ETag"], headers["Content-Length"]
    assert length == str(len(body))

    # HEAD: the GET's headers, no body.
    status, head, raw = send(live_gunicorn, "HEAD", path, {})
    assert (status, head["ETag"], head["Content-Length"], raw) == (200, etag, length, b"")

    # 304 for a weak match, on GET and HEAD: the ETag, no body, no Content-Type, a Content-Length only if the 200's.
    for method in ("GET", "HEAD"):
        status, not_modified, raw = send(live_gunicorn, method, path, {"If-None-Match": f'"x", W/{etag}'})
        assert (status, not_modified["ETag"], raw) == (304, etag, b"")
        assert not_modified.get("Content-Length", length) == length
        assert "Content-Type" not in not_modified

    auth = {"Authorization": f"Bearer {token}"}
    # A stale If-Match: 412 with the current ETag and version; retrying with that ETag succeeds, no GET between.
    status, refused, raw = send(live_gunicorn, "PATCH", path, {**auth, "If-Match": '"stale"'}, {"title": "A"})
    assert (status, refused["ETag"], refused["Content-Type"]) == (412, etag, "application/problem+json")
    assert json.loads(raw)["current_version"] == 1
    status, written, raw = send(live_gunicorn, "PATCH", path, {**auth, "If-Match": refused["ETag"]}, {"title": "A"})
    assert status == 200
    assert json.loads(raw)["version"] == 2

    # A stale body version: 409 with the ETag a GET now answers.
    status, conflict, raw = send(live_gunicorn, "PATCH", path, auth, {"title": "B", "version": 1})
    assert (status, conflict["ETag"], json.loads(raw)["current_version"]) == (409, written["ETag"], 2)
    assert send(live_gunicorn, "GET", path, {})[1]["ETag"] == written["ETag"]

    # If-Match: * names no version: 428, nothing written.
    status, _, raw = send(live_gunicorn, "PATCH", path, {**auth, "If-Match": "*"}, {"title": "C"})
    assert status == 428
    # A malformed list: 400 naming the header.
    status, _, raw = send(live_gunicorn, "GET", path, {"If-None-Match": etag.strip('"')})
    assert (status, json.loads(raw)["type"]) == (400, "urn:movieapi:problem:malformed-precondition")
    live_movie.refresh_from_db()
    assert (live_movie.title, live_movie.version) == ("A", 2)
