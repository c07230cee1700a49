"""gunicorn's sync worker, adapted at its two edges: raw UTF-8 request targets, and its own errors as problems.

Named in gunicorn.conf.py (`worker_class`); the arbiter imports this module before Django is set up, so it
imports nothing from Django or the project.

1. A request target with raw bytes over 0x7F (`GET /api/v1/movies/?search=léon`, as curl and many scripts send
   it) is refused by gunicorn 27 with an HTML 400: RFC 9112 section 3.2 wants a printable-ASCII target, and its
   Python parser checks that with no setting to relax it. Such bytes cannot change how the request is framed
   (they are neither space nor CR/LF), so the worker percent-encodes them before gunicorn validates the line, as
   a browser would have before sending: PATH_INFO and QUERY_STRING come out exactly as for `?search=l%C3%A9on`,
   and Django decodes them as UTF-8. Controls, spaces and DEL in the target are still refused.
2. Requests gunicorn refuses itself (a malformed request line or header, a line or head over the limits, a bad
   chunk) never reach Django: gunicorn answers them with a small HTML page. `handle_error` answers them with
   `application/problem+json` instead, with the status gunicorn chose.
"""

from __future__ import annotations

import json
import re
import socket
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.sync import SyncWorker

PROBLEM_BASE = "urn:movieapi:problem:"  # as movieapi.errors, which imports Django
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def percent_encode_non_ascii(target: bytes) -> bytes:
    """`/a?q=l\\xc3\\xa9on` -> `/a?q=l%C3%A9on`: only bytes over 0x7F change."""
    return _NON_ASCII.sub(lambda match: b"%%%02X" % match[0][0], target)


class Utf8TargetRequest(Request):
    """gunicorn's request, taking raw non-ASCII bytes in the target as their percent-encoding."""

    def parse_request_line(self, line_bytes: bytes) -> None:
        """Percent-encode the target's non-ASCII bytes, then validate the line as gunicorn does."""
        parts = line_bytes.split(b" ", 2)
        if len(parts) == 3 and _NON_ASCII.search(parts[1]):
            parts[1] = percent_encode_non_ascii(parts[1])
            line_bytes = b" ".join(parts)
        super().parse_request_line(line_bytes)


# What a client can do about each of gunicorn's refusals; {exc} is gunicorn's own message, {limit} the limit.
_ADVICE: list[tuple[type[BaseException], str]] = [
    (
        errors.InvalidRequestLine,
        "The request line is not `METHOD /target HTTP/1.1` with a printable-ASCII target (RFC 9112, section 3): "
        "percent-encode spaces and control characters in the URL.",
    ),
    (errors.InvalidRequestMethod, "The method is not a valid HTTP method token."),
    (errors.InvalidHTTPVersion, "Only HTTP/1.0 and HTTP/1.1 are served here."),
    (errors.LimitRequestLine, "The request line is longer than {limit} bytes: send fewer or shorter parameters."),
    (errors.LimitRequestHeaders, "The request's header section is too large or has too many fields."),
    (errors.UnsupportedTransferCoding, "Only the `chunked` transfer coding is supported for request bodies."),
    (errors.ExpectationFailed, "Only `Expect: 100-continue` is supported."),
    (errors.ObsoleteFolding, "Header fields folded over several lines (obs-fold) are not accepted."),
    (errors.InvalidChunkSize, "The chunked request body is malformed: {exc}."),
    (errors.ChunkMissingTerminator, "The chunked request body is malformed: {exc}."),
    (errors.InvalidChunkExtension, "The chunked request body is malformed: {exc}."),
    (errors.InvalidHeaderName, "A header field name is not valid: {exc}."),
    (errors.InvalidHeader, "A header field is not valid: {exc}."),
    (errors.InvalidSchemeHeaders, "The proxy headers that give the scheme contradict each other."),
]


class _StatusLine:
    """Stands in for the client socket while gunicorn's own handle_error writes its HTML page, to learn the
    status it chose (its mapping of ~20 exception classes, which grows with gunicorn) without copying it."""

    def __init__(self) -> None:
        self.written = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # already non-blocking: util.write_nonblock then just calls sendall

    def sendall(self, data: bytes) -> None:
        self.written += data

    def status(self) -> int:
        first_line = bytes(self.written).split(b"\r\n", 1)[0]  # b"HTTP/1.1 414 URI Too Long"
        try:
            return int(first_line.split(b" ")[1])
        except (IndexError, ValueError):
            return 500


# Titles in the API's style (movieapi.errors) for the statuses gunicorn answers itself.
_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    414: "URI too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    500: "Internal server error",
    501: "Not implemented",
}


def problem_response(status: int, detail: str, problem_type: str = "about:blank") -> bytes:
    """A complete HTTP/1.1 response carrying an RFC 9457 problem; the connection closes after it."""
    phrase = HTTPStatus(status).phrase
    title = _TITLES.get(status, phrase)
    body = json.dumps({"type": problem_type, "title": title, "status": status, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def problem_detail(exc: BaseException, status: int, limit_request_line: int) -> str:
    """What the client sent wrong and what to do about it."""
    if status >= 500 and not isinstance(exc, errors.UnsupportedTransferCoding):
        return "The server failed to answer this request. It has been logged."
    for exc_class, advice in _ADVICE:
        if isinstance(exc, exc_class):
            return advice.format(exc=str(exc)[:200], limit=limit_request_line)
    return f"{HTTPStatus(status).phrase}: {str(exc)[:200]}."


class ProblemSyncWorker(SyncWorker):
    """gunicorn's sync worker with UTF-8 request targets and problem+json answers for its own refusals."""

    def init_process(self) -> None:
        """Parse requests with Utf8TargetRequest in this worker (gunicorn's parser takes its class from here)."""
        RequestParser.mesg_class = Utf8TargetRequest
        super().init_process()

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """Log as gunicorn does, and answer with the status it chose, as a problem instead of an HTML page."""
        chosen = _StatusLine()
        super().handle_error(req, chosen, addr, exc)  # logs (warning or exception, access line); writes to `chosen`
        status = chosen.status()
        problem_type = PROBLEM_BASE + "malformed-request" if status == 400 else "about:blank"
        detail = problem_detail(exc, status, self.cfg.limit_request_line)
        try:
            util.write_nonblock(client, problem_response(status, detail, problem_type))
        except Exception:
            self.log.debug("Failed to send error message.")
