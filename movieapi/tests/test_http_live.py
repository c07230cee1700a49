"""HTTP framing against a real gunicorn: chunked request bodies, raw UTF-8 request targets, gunicorn's own
refusals as problems, and the docs address in the server's log (docs/http.md)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from knox.models import AuthToken

from conftest import LiveServer, curators_group
from movies.models import Movie
from movies.tests.factories import MovieFactory

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("transactional_db")]

LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.fixture
def token(transactional_db: None) -> str:
    user = User.objects.create_user("http-curator", password="a-long-enough-password-8")
    user.groups.add(curators_group())
    return AuthToken.objects.create(user=user)[1]


def connect(server: LiveServer) -> http.client.HTTPConnection:
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)


def pieces(data: bytes, size: int = 7) -> Iterator[bytes]:
    """The body in small chunks, so that http.client sends several (encode_chunked=True)."""
    return (data[start : start + size] for start in range(0, len(data), size))


def send_chunked(
    server: LiveServer, method: str, path: str, body: bytes, token: str, **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = connect(server)
    try:
        conn.request(
            method,
            path,
            body=pieces(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def raw_exchange(server: LiveServer, request: bytes) -> bytes:
    """Send bytes as they are on a fresh connection; read until the server closes it."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2 :]


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body (de-chunked) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split(" ")[1]), headers, body


# ---- chunked request bodies --------------------------------------------------------------------


def test_a_chunked_post_creates_the_movie_it_describes(live_gunicorn: LiveServer, token: str) -> None:
    body = json.dumps({"title": "Chunked Arrival", "year": 2001, "runtime": 93}).encode()
    response, raw = send_chunked(live_gunicorn, "POST", "/api/v1/movies/", body, token)
    assert response.status == 201, raw
    created = Movie.objects.get(pk=json.loads(raw)["id"])
    assert (created.title, created.year, created.runtime, created.version) == ("Chunked Arrival", 2001, 93, 1)


def test_a_chunked_patch_with_if_match_applies_its_change(live_gunicorn: LiveServer, token: str) -> None:
    movie = MovieFactory.create(title="Before", runtime=100)
    conn = connect(live_gunicorn)
    conn.request("GET", f"/api/v1/movies/{movie.pk}/")
    etag = conn.getresponse().getheader("ETag")
    conn.close()
    assert etag

    patch = b'{"title": "After", "runtime": 101}'
    response, raw = send_chunked(
        live_gunicorn, "PATCH", f"/api/v1/movies/{movie.pk}/", patch, token, **{"If-Match": etag}
    )
    assert response.status == 200, raw
    movie.refresh_from_db()
    assert (movie.title, movie.runtime, movie.version) == ("After", 101, 2)
    assert json.loads(raw)["title"] == "After"


def test_a_chunked_body_over_the_limit_is_413_and_the_connection_closes_cleanly(
    live_gunicorn: LiveServer, token: str
) -> None:
    before = Movie.objects.count()
    title = "x" * (LIMIT + 10_000)
    body = json.dumps({"title": title, "year": 2001}).encode()
    request = (
        b"POST /api/v1/movies/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in pieces(body, 65536))
        + b"0\r\n\r\n"
    )
    # raw_exchange reads until the server closes: a reset instead of a close would raise here.
    status, headers, answer = split_response(raw_exchange(live_gunicorn, request))
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(answer)
    assert problem["status"] == 413
    assert str(LIMIT) in problem["detail"]
    assert Movie.objects.count() == before
    # The server goes on serving.
    response, raw = send_chunked(live_gunicorn, "POST", "/api/v1/movies/", b'{"title": "Next", "year": 2002}', token)
    assert response.status == 201, raw


def test_a_chunked_body_at_the_limit_is_read_whole(live_gunicorn: LiveServer, token: str) -> None:
    """The limit counts the body's bytes, not its chunk framing: exactly LIMIT bytes get through."""
    start, end = b'{"title": "Edge", "year": 2001', b"}"
    body = start + b" " * (LIMIT - len(start) - len(end)) + end  # JSON whitespace up to the limit
    response, raw = send_chunked(live_gunicorn, "POST", "/api/v1/movies/", body, token)
    assert response.status == 201, raw[:300]
    assert Movie.objects.filter(title="Edge").exists()


def test_a_malformed_chunk_is_a_400_problem_not_a_500(live_gunicorn: LiveServer, token: str) -> None:
    request = (
        b"POST /api/v1/movies/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )
    status, headers, answer = split_response(raw_exchange(live_gunicorn, request))
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert "chunked" in json.loads(answer)["detail"]


def test_content_length_bodies_are_unchanged(live_gunicorn: LiveServer, token: str) -> None:
    conn = connect(live_gunicorn)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", "/api/v1/movies/", body=b'{"title": "Declared", "year": 1999}', headers=headers)
    response = conn.getresponse()
    assert response.status == 201, response.read()
    conn.close()
    request = (
        b"POST /api/v1/movies/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {LIMIT + 1}\r\n\r\n".encode()
    )
    status, _, answer = split_response(raw_exchange(live_gunicorn, request))
    assert status == 413
    assert json.loads(answer)["detail"] == f"The request body is {LIMIT + 1} bytes; the limit is {LIMIT}."


# ---- raw UTF-8 in the request target -----------------------------------------------------------


def test_raw_utf8_in_the_query_reaches_the_search(live_gunicorn: LiveServer) -> None:
    leon = MovieFactory.create(title="Léon", year=1994)
    MovieFactory.create(title="Heat", year=1995)
    raw = raw_exchange(live_gunicorn, "GET /api/v1/movies/?search=léon HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status, _, body = split_response(raw)
    assert status == 200, raw[:500]
    assert [movie["id"] for movie in json.loads(body)["results"]] == [leon.pk]


def test_raw_utf8_in_the_path_is_the_api_s_own_404(live_gunicorn: LiveServer) -> None:
    raw = raw_exchange(live_gunicorn, "GET /api/v1/péople/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status, headers, body = split_response(raw)
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["instance"] == "/api/v1/péople/"


# ---- gunicorn's own refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "advice"),
    [
        (b"GET /api/v1/movies/?search=a\x01b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "percent-encode"),
        (b"GET /api/v1/movies/?search=two words HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "HTTP/1.1"),
        (b"G(T /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "method"),
        (b"GET /api/v1/ HTTP/3.0\r\nHost: 127.0.0.1\r\n\r\n", 400, "HTTP/1.1"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "8190"),
        (b"GET /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n", 400, "header"),
        (
            b"GET /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(120))
            + b"\r\n",
            431,
            "header",
        ),
        (b"POST /api/v1/movies/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "header"),
    ],
    ids=["control-char", "space", "method", "version", "long-line", "header-name", "too-many-headers", "coding"],
)
def test_requests_gunicorn_refuses_are_answered_as_problems(
    live_gunicorn: LiveServer, request_bytes: bytes, status: int, advice: str
) -> None:
    answered, headers, body = split_response(raw_exchange(live_gunicorn, request_bytes))
    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["title"] == {400: "Bad request", 414: "URI too long", 431: "Request header fields too large"}[status]
    assert advice.lower() in problem["detail"].lower()


# ---- first contact -----------------------------------------------------------------------------


def test_the_server_log_names_the_docs_address(live_gunicorn: LiveServer) -> None:
    assert f"{live_gunicorn.url}/api/docs/" in live_gunicorn.output()
