"""Idempotency-Key on the POSTs that create (IETF httpapi draft "The Idempotency-Key HTTP Header Field").

A client that sends `Idempotency-Key: "<a fresh UUID>"` on a create may retry it, after a timeout or a lost
connection, without creating twice: the first request is processed; a repeat with the same key and the same request
(method, path and body bytes) within 24 hours gets the first answer again (status, body, Content-Type, Location,
ETag) with `Idempotent-Replayed: true`; the same key with another request is 422; a repeat while the first is still
being processed waits for it up to WAIT_MS, then gets 409 with Retry-After. Keys are the caller's own: a user's, or
for anonymous callers (registration) their client IP's (movieapi.client_ip). docs/idempotency.md has the rest.

Exactly once, by PostgreSQL: the key's row (movies.models.IdempotencyKey, unique per caller and key) is inserted
first in the create's own transaction, and the answer is written to it in the same transaction before it commits.
So a committed key always comes with what it created and the answer that said so, and a crash anywhere leaves both
or neither: a retry replays, or creates afresh. A concurrent duplicate's INSERT waits on the uncommitted unique key
(lock_timeout WAIT_MS), then finds the answer committed, or claims the key itself if the first rolled back.

A request without the header runs exactly as before: one dictionary lookup, no query.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from django.db import OperationalError, connection, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from movieapi.client_ip import client_ip
from movieapi.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, MalformedIdempotencyKey
from movieapi.sql import (
    IDEMPOTENCY_ANSWER_SQL,
    IDEMPOTENCY_CLAIM_SQL,
    IDEMPOTENCY_PURGE_SQL,
    IDEMPOTENCY_STORED_SQL,
    IDEMPOTENCY_WAIT_END_SQL,
    IDEMPOTENCY_WAIT_SQL,
)

KEY_META = "HTTP_IDEMPOTENCY_KEY"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
LIFETIME_HOURS = 24
# How long a duplicate waits for the first request with its key to commit or roll back before answering 409. A
# create commits in milliseconds, so a duplicate that arrives meanwhile usually gets the replay, not the 409; a
# registration hashes its password inside (PBKDF2, ~0.3 s). Bounded: each waiting request holds a sync worker.
WAIT_MS = 1000
# The headers of an answer that a replay repeats; the others (X-Request-ID, RateLimit, Vary) are the replay's own.
STORED_HEADERS = ("Content-Type", "Location", "ETag")
# 1 in PURGE_CHANCE keyed creates deletes up to PURGE_LIMIT expired keys after it commits; until then an expired key
# is ignored (its next use takes its row over).
PURGE_CHANCE = 100
PURGE_LIMIT = 1000
LOCK_NOT_AVAILABLE = "55P03"

# ---- the header: an RFC 8941 Item whose value is a String ------------------------------------------

# sf-string characters: printable ASCII but `"` and `\`, which are escaped as `\"` and `\\`.
_CHAR = r'(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])'
# Parameters (`;name=value`) are allowed by the Item grammar and ignored: the draft defines none.
_BARE_ITEM = (
    r"(?:-?[0-9]{1,12}\.[0-9]{1,3}|-?[0-9]{1,15}|" + rf'"{_CHAR}*"' + r"|[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*"
    r"|:[A-Za-z0-9+/=]*:|\?[01])"
)
_PARAMETERS = rf"(?:; *[a-z*][a-z0-9_.*-]*(?:={_BARE_ITEM})?)*"
_ITEM = re.compile(rf'[ \t]*"({_CHAR}*)"{_PARAMETERS}[ \t]*')
# The same grammar as one ECMA-262 pattern with the length bound, for the OpenAPI parameter (a client or fuzzer then
# knows which values are 400); test_idempotency checks that it accepts exactly what parse_key does.
KEY_PATTERN = rf'^[ \t]*"{_CHAR}{{1,{MAX_KEY_LENGTH}}}"{_PARAMETERS}[ \t]*$'
_ESCAPE = re.compile(r"\\(.)")

_MALFORMED = (
    f"Idempotency-Key must be a quoted string (a structured-field String): 1 to {MAX_KEY_LENGTH} printable ASCII "
    'characters between double quotes, `"` and `\\` escaped with `\\`. Send a new random UUID for each new request, '
    'e.g. Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324", and the same key when you retry it.'
)

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    pattern=KEY_PATTERN,
    description=(
        'A quoted string of 1-255 printable ASCII characters (IETF httpapi draft; e.g. "<a new UUID>") that makes '
        "this create safe to retry. The first request with a key is processed; a repeat with the same key and the "
        "same body (byte for byte) within 24 hours answers the first answer again (status, body, Location, ETag) "
        "with `Idempotent-Replayed: true` and creates nothing; the same key with another body is 422; a repeat "
        "while the first is still being processed is 409 with Retry-After. Keys are per caller (user, or client IP "
        "when anonymous). A malformed key is 400."
    ),
)


def parse_key(value: str) -> str:
    """The key an Idempotency-Key header names, unescaped; MalformedIdempotencyKey (400) if it names none."""
    item = _ITEM.fullmatch(value)
    if item is None:
        raise MalformedIdempotencyKey(_MALFORMED)
    key = _ESCAPE.sub(r"\1", item.group(1))
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise MalformedIdempotencyKey(f"The Idempotency-Key is {len(key)} characters long. {_MALFORMED}")
    return key


# ---- one create, at most once per key --------------------------------------------------------------


class Claim(NamedTuple):
    """Who asks, with which key, for what: the key's row is unique per (caller, key)."""

    caller: str
    key: str
    fingerprint: bytes


class StoredAnswer(NamedTuple):
    """A held key's row as IDEMPOTENCY_STORED_SQL reads it (status is None only while it is being answered)."""

    fingerprint: bytes
    status: int | None
    headers: dict[str, str]
    body: bytes | None


def claim_of(request: Request, key: str) -> Claim:
    """The request's claim: its caller (user, or client IP when anonymous) and its fingerprint."""
    user = request.user
    caller = f"user:{user.pk}" if user.is_authenticated else f"ip:{client_ip(request._request)}"
    # The body's bytes, read before the parser reads the stream (Django keeps them for it).
    head = f"{request.method} {request.path}\n".encode()
    return Claim(caller, key, hashlib.sha256(head + request._request.body).digest())


def respond_once(view: APIView, request: Request, handler: Callable[[], Response]) -> Response:
    """The create `handler`'s answer, or with an Idempotency-Key the answer that key already has (replayed; 422 for
    another request, 409 while in flight). The key, the create and its finished answer are one transaction."""
    header = request.META.get(KEY_META)
    if header is None:
        return handler()
    claim = claim_of(request, parse_key(header))
    with transaction.atomic():
        held = key_claim(claim)
        if isinstance(held, StoredAnswer):
            return replay(held, claim)
        # Finalized and rendered here, so that the bytes stored are the bytes sent (DRF's dispatch finalizes it
        # again, which changes nothing, and Django does not render a rendered response twice).
        response = view.finalize_response(request, handler(), *view.args, **view.kwargs)
        response.render()
        key_answer(held, response)
    if random.randrange(PURGE_CHANCE) == 0:  # noqa: S311 - only spreads the clean-up of expired keys
        keys_purge()
    return response


def key_claim(claim: Claim) -> int | StoredAnswer:
    """Claim the key for this transaction (the row's id), or the answer it holds; 409 if the request holding it is
    still in flight after WAIT_MS."""
    with connection.cursor() as cursor:
        cursor.execute(IDEMPOTENCY_WAIT_SQL, [f"{WAIT_MS}ms"])
        try:
            cursor.execute(IDEMPOTENCY_CLAIM_SQL, {**claim._asdict(), "lifetime_hours": LIFETIME_HOURS})
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise IdempotencyKeyInFlight(headers={"Retry-After": "1"}) from exc
            raise
        claimed = cursor.fetchone()
        cursor.execute(IDEMPOTENCY_WAIT_END_SQL)
        if claimed is not None:
            return int(claimed[0])
        # Held by a committed answer, which the claim has locked (a DO UPDATE locks the row it skips): it is there.
        cursor.execute(IDEMPOTENCY_STORED_SQL, [claim.caller, claim.key])
        row = cursor.fetchone()
    if row is None:
        raise IdempotencyKeyInFlight(headers={"Retry-After": "1"})
    fingerprint, status, headers, body = row
    return StoredAnswer(bytes(fingerprint), status, json.loads(headers), None if body is None else bytes(body))


def key_answer(key_id: int, response: Response) -> None:
    """Write the answer to the claimed key, in the transaction that claimed it."""
    headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
    with connection.cursor() as cursor:
        cursor.execute(IDEMPOTENCY_ANSWER_SQL, [response.status_code, json.dumps(headers), response.content, key_id])


def replay(stored: StoredAnswer, claim: Claim) -> Response:
    """The stored answer again, marked as a replay; 422 if the key was used for another request."""
    if stored.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused()
    if stored.status is None:  # only a row written outside the API can be committed without its answer
        raise IdempotencyKeyInFlight(headers={"Retry-After": "1"})
    response = Response(status=stored.status, headers={**stored.headers, REPLAYED_HEADER: "true"})
    response.content = stored.body or b""  # rendered already: the renderer leaves it (and its Content-Type) alone
    return response


def keys_purge(limit: int = PURGE_LIMIT) -> int:
    """Delete up to `limit` expired keys, oldest first; the number deleted."""
    with connection.cursor() as cursor:
        cursor.execute(IDEMPOTENCY_PURGE_SQL, {"lifetime_hours": LIFETIME_HOURS, "limit": limit})
        return cursor.rowcount


class IdempotentCreateMixin:
    """A ViewSet's `create` honours Idempotency-Key (`respond_once`)."""

    @extend_schema(parameters=[IDEMPOTENCY_KEY])
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """CreateModelMixin.create, at most once per Idempotency-Key."""
        create = super().create  # type: ignore[misc]
        view: APIView = self  # type: ignore[assignment]
        return respond_once(view, request, functools.partial(create, request, *args, **kwargs))
