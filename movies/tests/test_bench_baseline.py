"""The bench's bare WSGI baseline (bench/baseline_app.py) answers a curator's PATCH as the API does, with its SQL.

`make bench` compares the API's PATCH throughput with the baseline's: that comparison means something only if the
baseline does the same work (the same two statements) and gives the same answers.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient

from movieapi.authentication import _token_query
from movies.models import Movie
from movies.rules import MAX_RUNTIME
from movies.services import _conditional_update_sql
from movies.sql import represented_update_sql
from movies.tests.feed_writers import commit_one, wait_until_ended


@pytest.fixture
def baseline(db: None) -> Iterator[ModuleType]:
    """The baseline app, sending its statements on the test's own connection (it sees the test's rows)."""
    # Imported by name at run time: mypy checks bench/ as top-level modules (it is not a package).
    baseline_app: Any = importlib.import_module("bench.baseline_app")
    connection.ensure_connection()
    saved = baseline_app._connection
    baseline_app._connection = connection.connection
    yield baseline_app
    baseline_app._connection = saved


def call(app: ModuleType, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, Any]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **headers,
    }
    answered: list[str] = []
    chunks = app.application(environ, lambda status, _headers: answered.append(status))
    return int(answered[0][:3]), json.loads(b"".join(chunks))


def token_of(user: User) -> str:
    _, token = AuthToken.objects.create(user=user)
    return f"Bearer {token}"


def test_baseline_sends_the_apis_patch_statements(baseline: ModuleType) -> None:
    sql, token_names, user_names = _token_query(True)
    assert sql == baseline.TOKEN_SQL
    names = [*token_names, *user_names, "permissions"]
    assert [names[i] for i in (baseline.TOKEN_DIGEST, baseline.TOKEN_EXPIRY)] == ["digest", "expiry"]
    assert [names[i] for i in (baseline.USER_IS_ACTIVE, baseline.USER_PERMISSIONS)] == ["is_active", "permissions"]
    assert baseline.TOKEN_KEY_LENGTH == CONSTANTS.TOKEN_KEY_LENGTH
    assert represented_update_sql(_conditional_update_sql(("runtime",), ("runtime",))) == baseline.RUNTIME_UPDATE_SQL
    assert baseline.MAX_RUNTIME == MAX_RUNTIME


def test_baseline_patch_answers_as_the_api_reads_it(
    baseline: ModuleType, movie: Movie, curator: User, anon: APIClient
) -> None:
    path = f"/api/v1/movies/{movie.pk}/"
    body = json.dumps({"runtime": 140, "version": 1}).encode()

    status, answer = call(baseline, "PATCH", path, body, HTTP_AUTHORIZATION=token_of(curator))

    assert status == 200
    assert answer["runtime"] == 140
    assert answer["version"] == 2
    assert answer == anon.get(path).json()


def test_baseline_patch_refuses_as_the_api_does(baseline: ModuleType, movie: Movie, curator: User, user: User) -> None:
    path = f"/api/v1/movies/{movie.pk}/"
    good = json.dumps({"runtime": 140, "version": 1}).encode()
    curator_token = token_of(curator)

    assert call(baseline, "PATCH", path, good)[0] == 401
    assert call(baseline, "PATCH", path, good, HTTP_AUTHORIZATION="Bearer not-a-token")[0] == 401
    assert call(baseline, "PATCH", path, good, HTTP_AUTHORIZATION=token_of(user))[0] == 403
    for bad in (b"{", b"[]", b'{"runtime": 0, "version": 1}', b'{"runtime": 90}', b'{"runtime": 90, "version": "1"}'):
        assert call(baseline, "PATCH", path, bad, HTTP_AUTHORIZATION=curator_token)[0] == 400
    assert call(baseline, "PATCH", "/api/v1/movies/999999/", good, HTTP_AUTHORIZATION=curator_token)[0] == 404

    assert call(baseline, "PATCH", path, good, HTTP_AUTHORIZATION=curator_token)[0] == 200
    assert call(baseline, "PATCH", path, good, HTTP_AUTHORIZATION=curator_token)[0] == 409  # version 1 is stale now
    movie.refresh_from_db()
    assert (movie.runtime, movie.version) == (140, 2)


def test_baseline_search_answers_as_the_api(baseline: ModuleType, movie: Movie, anon: APIClient) -> None:
    # Same SQL (movies/sql.py), same answers; with accents, typos and an explicit ordering.
    Movie.objects.create(title="Léon", year=1994, overview="A hitman and a girl; heat of the moment.")
    Movie.objects.create(title="Le Fabuleux Destin d'Amélie Poulain", year=2001, overview="Montmartre.")
    for text in ("leon", "amelie", "matrx", "the matrix", "heat -matrix", "amélie poulain", "amellie"):
        for ordering in (None, "-year"):
            params = {"search": text, **({"ordering": ordering} if ordering else {})}
            status, answer = call(baseline, "GET", "/api/v1/movies/", QUERY_STRING=urlencode(params))
            api = anon.get("/api/v1/movies/", params).json()
            assert status == 200
            assert [m["id"] for m in answer["results"]] == [m["id"] for m in api["results"]], params
            assert answer["count"] == api["count"], params
            assert api["results"], f"{params}: an accented title, a typo or an overview word"


def test_baseline_feed_answers_as_the_api(baseline: ModuleType, transactional_db: None, anon: APIClient) -> None:
    last = (0, 0)
    for version in (1, 2, 3):
        last = commit_one(11, version, "created" if version == 1 else "updated")
    wait_until_ended(last[0])
    cursor: str | None = None
    for _ in range(3):  # two pages of two, then the empty page
        params = {"limit": "2", **({"after": cursor} if cursor else {})}
        status, answer = call(baseline, "GET", "/api/v1/changes/", QUERY_STRING=urlencode(params))
        api = anon.get("/api/v1/changes/", params).json()
        assert (status, answer) == (200, api)
        cursor = api["next"]
    assert answer["results"] == []
