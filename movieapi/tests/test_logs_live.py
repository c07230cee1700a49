"""What a client can make the server log or believe, against a real gunicorn: no forged log lines, a bad Host as
one warning line, and the scheme and script name only from the proxy the settings trust (docs/operations.md)."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from conftest import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("transactional_db")]


@pytest.fixture(scope="module")
def plain_gunicorn(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A gunicorn with the plain log format and no trusted proxy."""
    return live_server_factory(workers=1, env={"LOG_FORMAT": "plain", "TRUSTED_PROXY_COUNT": "0"})


@pytest.fixture(scope="module")
def proxied_gunicorn(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A gunicorn told that one proxy sits in front (as compose runs it)."""
    return live_server_factory(workers=1, env={"TRUSTED_PROXY_COUNT": "1"})


def get(server: LiveServer, target: str, *headers: tuple[str, str]) -> tuple[int, bytes]:
    """Send `GET target` as is (no client-side quoting), with the headers named exactly as given (underscores
    included; Host: localhost unless given), and return the status and body."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers if any(name == "Host" for name, _ in headers) else (("Host", "localhost"), *headers):
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def log_lines_with(server: LiveServer, marker: str, count: int = 1) -> list[str]:
    """The server's log lines that contain `marker`, once at least `count` of them were written."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.output().splitlines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines


def test_a_request_path_cannot_forge_a_log_line(plain_gunicorn: LiveServer) -> None:
    marker = uuid.uuid4().hex
    forged = f"2026-01-01 00:00:00,000 CRITICAL django [-] forged-{marker}"
    status, _ = get(plain_gunicorn, "/x%0a" + forged.replace(" ", "%20") + "%0d%1b[2J")
    assert status == 404
    lines = log_lines_with(plain_gunicorn, f"forged-{marker}", count=2)  # the access line and Django's 404
    assert len(lines) == 2, plain_gunicorn.output()[-3000:]
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert all(f"/x\\n{forged}\\r\\x1b[2J" in line for line in lines), lines


def test_a_bad_host_is_one_warning_line(plain_gunicorn: LiveServer) -> None:
    host = f"bad-{uuid.uuid4().hex}.example"
    status, body = get(plain_gunicorn, "/api/v1/", ("Host", host))
    assert status == 400
    assert json.loads(body)["status"] == 400
    lines = log_lines_with(plain_gunicorn, f"Invalid HTTP_HOST header: '{host}'")
    assert len(lines) == 1, lines
    assert " WARNING django.security.DisallowedHost " in lines[0]
    assert "Traceback" not in plain_gunicorn.output()


def test_a_bad_host_is_one_warning_record_in_json(proxied_gunicorn: LiveServer) -> None:
    host = f"bad-{uuid.uuid4().hex}.example"
    status, _ = get(proxied_gunicorn, "/api/v1/", ("Host", host))
    assert status == 400
    lines = log_lines_with(proxied_gunicorn, host)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    security = [record for record in records if record["logger"] == "django.security.DisallowedHost"]
    assert len(security) == 1, lines
    assert security[0]["level"] == "WARNING"
    assert "exc_info" not in security[0]


def _links(body: bytes) -> str:
    return str(json.loads(body)["resources"]["movies"])


def test_without_a_trusted_proxy_no_peer_sets_the_scheme(plain_gunicorn: LiveServer) -> None:
    """gunicorn's default trusts X-Forwarded-Proto from 127.0.0.1 whatever TRUSTED_PROXY_COUNT says."""
    status, body = get(plain_gunicorn, "/api/v1/", ("X-Forwarded-Proto", "https"))
    assert status == 200
    assert _links(body).startswith("http://localhost/"), body


def test_with_a_trusted_proxy_its_scheme_is_believed(proxied_gunicorn: LiveServer) -> None:
    status, body = get(proxied_gunicorn, "/api/v1/", ("X-Forwarded-Proto", "https"))
    assert status == 200
    assert _links(body).startswith("https://localhost/"), body


@pytest.mark.parametrize("server_name", ["plain_gunicorn", "proxied_gunicorn"])
def test_no_peer_moves_the_path_under_a_script_name(server_name: str, request: pytest.FixtureRequest) -> None:
    """gunicorn maps a `SCRIPT_NAME` header from a trusted peer into the environ, stripping it from the path."""
    server: LiveServer = request.getfixturevalue(server_name)
    status, _ = get(server, "/prefix/api/v1/", ("SCRIPT_NAME", "/prefix"))
    assert status == 404
    status, body = get(server, "/api/v1/", ("SCRIPT_NAME", "/prefix"))
    assert status == 200
    assert "/prefix" not in _links(body)
