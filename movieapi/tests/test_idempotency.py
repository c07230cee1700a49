"""Idempotency-Key on the creating POSTs (movieapi/idempotency.py), in process on real PostgreSQL: replays, 422 for
another request, 409 while in flight, per-caller scope, the header's grammar, expiry and purge. The races and a
killed worker are in test_idempotency_live.py."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from typing import Any

import psycopg
import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from conftest import bearer_client, curators_group, live_database_url
from movieapi import idempotency, sql
from movieapi.idempotency import KEY_PATTERN, MAX_KEY_LENGTH, parse_key
from movies.models import Genre, IdempotencyKey, Movie, Person

MOVIE = {"title": "Kept Once", "year": 2020, "runtime": 99}
BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/movies/": MOVIE,
    "/api/v1/genres/": {"slug": "heist", "name": "Heist"},
    "/api/v1/people/": {"name": "Ana Lucía"},
    "/api/v1/users/": {"username": "newcomer", "email": "new@example.com", "password": "a-long-enough-password-7"},
}
MODELS = {"/api/v1/movies/": Movie, "/api/v1/genres/": Genre, "/api/v1/people/": Person, "/api/v1/users/": User}
KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'


@pytest.fixture(autouse=True)
def _no_random_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyed create purges expired keys now and then: never, unless a test asks."""
    monkeypatch.setattr(idempotency, "PURGE_CHANCE", 10**12)


def post(client: APIClient, path: str, body: Any, key: str | None = KEY, **extra: Any) -> Any:
    headers: dict[str, Any] = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, body, format="json", **headers, **extra)


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:movieapi:problem:{slug}"
    return body


# ---- the header's grammar -------------------------------------------------------------------------

VALID = {
    '"abc"': "abc",
    ' "abc" ': "abc",
    '\t"a b"': "a b",
    '"with \\"quotes\\" and \\\\"': 'with "quotes" and \\',
    '"x";a': "x",
    '"x";a=1;b-2.*=?0;c="s";d=tok/en:1;e=:aGk=:;f=-1.5': "x",
    '"x"; a=1': "x",
    '"' + "k" * MAX_KEY_LENGTH + '"': "k" * MAX_KEY_LENGTH,
}
MALFORMED = [
    "abc",  # a token, not a string
    '""',  # empty
    '"' + "k" * (MAX_KEY_LENGTH + 1) + '"',
    '"abc',
    'abc"',
    '"a", "b"',  # two header lines, as WSGI joins them: a list, not an Item
    '"a"b',
    '"a\\b"',  # only \" and \\ are escapes
    '"caf\xe9"',  # obs-text
    '"tab\there"',
    '"x" ;a',
    '"x";A=1',  # parameter names are lower case
    '"x";a=1.2345',
    ":YWJj:",
    "",
    " ",
]


@pytest.mark.parametrize(("value", "key"), VALID.items())
def test_valid_keys_parse(value: str, key: str) -> None:
    assert parse_key(value) == key


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_keys_are_refused(value: str) -> None:
    with pytest.raises(idempotency.MalformedIdempotencyKey):
        parse_key(value)


@pytest.mark.parametrize("value", [*VALID, *MALFORMED])
def test_the_schemas_pattern_accepts_what_the_parser_accepts(value: str) -> None:
    try:
        parse_key(value)
        accepted = True
    except idempotency.MalformedIdempotencyKey:
        accepted = False
    assert bool(re.search(KEY_PATTERN, value)) == accepted


# ---- replays --------------------------------------------------------------------------------------


@pytest.fixture
def clients(curator: User) -> dict[str, APIClient]:
    """The caller of each create: a curator for the catalogue, anyone for registration."""
    curator_client = bearer_client(curator)
    return {path: APIClient() if path == "/api/v1/users/" else curator_client for path in BODIES}


@pytest.mark.parametrize("path", BODIES)
def test_a_repeat_gets_the_first_answer_and_creates_nothing(path: str, clients: dict[str, APIClient]) -> None:
    model = MODELS[path]
    before = model._default_manager.count()
    first = post(clients[path], path, BODIES[path])
    again = post(clients[path], path, BODIES[path])
    assert first.status_code == 201, first.content
    assert again.status_code == 201
    assert again.content == first.content
    for header in ("Content-Type", "Location", "ETag"):
        assert again.get(header) == first.get(header), header
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert model._default_manager.count() == before + 1
    if path == "/api/v1/movies/":
        assert first["ETag"]
        assert first["Location"].endswith(f"/api/v1/movies/{first.json()['id']}/")


def test_another_body_with_the_same_key_is_422(curator_client: APIClient) -> None:
    post(curator_client, "/api/v1/movies/", MOVIE)
    body = assert_problem(
        post(curator_client, "/api/v1/movies/", {**MOVIE, "runtime": 100}), 422, "idempotency-key-reused"
    )
    assert "another request" in body["detail"]
    assert Movie.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_422(curator_client: APIClient) -> None:
    post(curator_client, "/api/v1/genres/", {"slug": "heist", "name": "Heist"})
    assert_problem(post(curator_client, "/api/v1/people/", {"name": "Heist"}), 422, "idempotency-key-reused")
    assert not Person.objects.exists()


def test_the_body_is_compared_byte_for_byte(curator_client: APIClient) -> None:
    first = curator_client.post(
        "/api/v1/genres/",
        b'{"slug": "heist", "name": "Heist"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )
    reordered = curator_client.post(
        "/api/v1/genres/",
        b'{"name": "Heist", "slug": "heist"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )
    assert first.status_code == 201
    assert_problem(reordered, 422, "idempotency-key-reused")


def test_a_refused_create_leaves_the_key_free(curator_client: APIClient) -> None:
    refused = post(curator_client, "/api/v1/movies/", {**MOVIE, "year": 1000})
    assert_problem(refused, 400, "validation-error")
    assert not IdempotencyKey.objects.exists()
    fixed = post(curator_client, "/api/v1/movies/", MOVIE)
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed


def test_a_caller_who_may_not_create_gets_no_replay(curator_client: APIClient, user_client: APIClient) -> None:
    """A replay is an answer to the caller: permissions and scope come first."""
    post(curator_client, "/api/v1/movies/", MOVIE)
    assert_problem(post(user_client, "/api/v1/movies/", MOVIE), 403, "permission-denied")


# ---- scope ------------------------------------------------------------------------------------------


def test_keys_are_per_user(curator_client: APIClient) -> None:
    other = User.objects.create_user("other-curator", password="a-long-enough-password-5")
    other.groups.add(curators_group())
    first = post(curator_client, "/api/v1/movies/", MOVIE)
    theirs = post(bearer_client(other), "/api/v1/movies/", {**MOVIE, "title": "Theirs"})
    assert (first.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs
    assert first.json()["id"] != theirs.json()["id"]
    assert sorted(Movie.objects.values_list("title", flat=True)) == ["Kept Once", "Theirs"]


def registration(n: int) -> dict[str, str]:
    return {"username": f"user{n}", "email": f"user{n}@example.com", "password": "a-long-enough-password-8"}


def test_anonymous_keys_are_per_client_ip(db: None, anon: APIClient) -> None:
    first = post(anon, "/api/v1/users/", registration(1), REMOTE_ADDR="192.0.2.1")
    elsewhere = post(anon, "/api/v1/users/", registration(2), REMOTE_ADDR="192.0.2.2")
    again = post(anon, "/api/v1/users/", registration(1), REMOTE_ADDR="192.0.2.1")
    other_body = post(anon, "/api/v1/users/", registration(3), REMOTE_ADDR="192.0.2.1")
    assert (first.status_code, elsewhere.status_code, again.status_code) == (201, 201, 201)
    assert "Idempotent-Replayed" not in elsewhere
    assert again["Idempotent-Replayed"] == "true"
    assert_problem(other_body, 422, "idempotency-key-reused")
    assert sorted(User.objects.values_list("username", flat=True)) == ["user1", "user2"]


def test_behind_a_proxy_the_forwarded_address_is_the_scope(db: None, anon: APIClient, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    first = post(anon, "/api/v1/users/", registration(1), HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)
    other = post(anon, "/api/v1/users/", registration(2), HTTP_X_FORWARDED_FOR="198.51.100.8", **proxy)
    assert (first.status_code, other.status_code) == (201, 201)
    assert set(IdempotencyKey.objects.values_list("caller", flat=True)) == {"ip:198.51.100.7", "ip:198.51.100.8"}


# ---- malformed keys, and no key ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", '""', '"' + "k" * (MAX_KEY_LENGTH + 1) + '"', '"a", "b"', '"caf\xe9"'])
def test_a_malformed_key_is_400_and_creates_nothing(curator_client: APIClient, value: str) -> None:
    body = assert_problem(post(curator_client, "/api/v1/movies/", MOVIE, key=value), 400, "malformed-idempotency-key")
    assert "quoted string" in body["detail"]
    assert not Movie.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_without_the_header_a_create_sends_no_statement_about_keys(curator_client: APIClient) -> None:
    with CaptureQueriesContext(connection) as keyless:
        assert post(curator_client, "/api/v1/movies/", MOVIE, key=None).status_code == 201
    with CaptureQueriesContext(connection) as keyed:
        assert post(curator_client, "/api/v1/movies/", MOVIE).status_code == 201
    assert not [q for q in keyless.captured_queries if "idempotency_key" in q["sql"] or "lock_timeout" in q["sql"]]
    # The keyed create: the same statements, plus the wait, the claim, the wait's end and the answer (savepoints
    # aside: the test's own transaction turns every transaction into one).
    keyless_statements, keyed_statements = (
        [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]] for captured in (keyless, keyed)
    )
    assert len(keyed_statements) == len(keyless_statements) + 4


# ---- expiry -------------------------------------------------------------------------------------------


def age_keys(hours: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE idempotency_key SET created_at = now() - make_interval(secs => %s)", [hours * 3600])


def test_an_expired_key_is_a_new_key(curator_client: APIClient) -> None:
    first = post(curator_client, "/api/v1/movies/", MOVIE)
    age_keys(23.9)
    assert post(curator_client, "/api/v1/movies/", MOVIE)["Idempotent-Replayed"] == "true"
    age_keys(24.1)
    after = post(curator_client, "/api/v1/movies/", {**MOVIE, "runtime": 100})
    assert after.status_code == 201
    assert "Idempotent-Replayed" not in after
    assert after.json()["id"] != first.json()["id"]
    assert Movie.objects.count() == 2
    # The key now answers the second request.
    assert post(curator_client, "/api/v1/movies/", {**MOVIE, "runtime": 100}).content == after.content


def test_the_purge_deletes_expired_keys_only(curator_client: APIClient) -> None:
    for n in range(3):
        post(curator_client, "/api/v1/genres/", {"slug": f"g{n}", "name": f"G{n}"}, key=f'"old-{n}"')
    age_keys(25)
    post(curator_client, "/api/v1/genres/", {"slug": "new", "name": "New"}, key='"new"')
    assert idempotency.keys_purge(limit=2) == 2
    assert idempotency.keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_now_and_then_a_keyed_create_purges(curator_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    post(curator_client, "/api/v1/genres/", {"slug": "old", "name": "Old"}, key='"old"')
    age_keys(25)
    monkeypatch.setattr(idempotency, "PURGE_CHANCE", 1)
    post(curator_client, "/api/v1/genres/", {"slug": "new", "name": "New"}, key='"new"')
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_the_sql_names_the_models_table_and_columns() -> None:
    columns = {field.column for field in IdempotencyKey._meta.concrete_fields}
    statements = " ".join(value for name, value in vars(sql).items() if name.startswith("IDEMPOTENCY_"))
    assert IdempotencyKey._meta.db_table == "idempotency_key"
    named = set(re.findall(r"\b(caller|key|fingerprint|created_at|status|headers|body|id)\b", statements))
    assert named == columns


# ---- in flight: another transaction holds the key ------------------------------------------------


def hold_key(dsn: str, caller: str, key: str) -> psycopg.Connection[Any]:
    """A connection whose open transaction has inserted the key, as a request still being processed has."""
    holder = psycopg.connect(dsn)
    holder.execute(
        "INSERT INTO idempotency_key (caller, key, fingerprint, created_at) VALUES (%s, %s, %s, now())",
        [caller, key, b"\0" * 32],
    )
    return holder


@pytest.mark.django_db(transaction=True)
def test_a_repeat_while_the_first_is_in_flight_waits_then_409s(curator: User) -> None:
    client = bearer_client(curator)
    holder = hold_key(live_database_url(), f"user:{curator.pk}", parse_key(KEY))
    try:
        started = time.monotonic()
        answer = post(client, "/api/v1/movies/", MOVIE)
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    body = assert_problem(answer, 409, "idempotency-key-in-flight")
    assert answer["Retry-After"] == "1"
    assert "still being processed" in body["detail"]
    assert idempotency.WAIT_MS / 1000 - 0.05 <= waited < 5
    assert not Movie.objects.exists()
    # The first rolled back: the key is free again.
    assert post(client, "/api/v1/movies/", MOVIE).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_a_repeat_waits_for_the_first_to_commit_and_replays_it(curator: User) -> None:
    client = bearer_client(curator)
    first = post(client, "/api/v1/movies/", MOVIE)
    # The same key and answer, now held by a transaction that commits 0.3 s after the repeat has started waiting.
    row = IdempotencyKey.objects.get()
    IdempotencyKey.objects.all().delete()
    holder = psycopg.connect(live_database_url())
    holder.execute(
        "INSERT INTO idempotency_key (caller, key, fingerprint, created_at, status, headers, body) "
        "VALUES (%s, %s, %s, now(), %s, %s::jsonb, %s)",
        [row.caller, row.key, bytes(row.fingerprint), row.status, json.dumps(row.headers), bytes(row.body or b"")],
    )
    committer = threading.Timer(0.3, holder.commit)
    committer.start()
    try:
        again = post(client, "/api/v1/movies/", MOVIE)
    finally:
        committer.join(10)
        holder.close()
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Movie.objects.count() == 1


# ---- the schema and CORS ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schema_documents_the_header_on_the_creates_only() -> None:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    paths = yaml.safe_load(out.getvalue())["paths"]
    for path in BODIES:
        post_operation = paths[path]["post"]
        (parameter,) = [p for p in post_operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        assert parameter["in"] == "header"
        assert parameter["schema"]["pattern"] == KEY_PATTERN
        assert not parameter.get("required", False)
        assert {"400", "409", "422"} <= set(post_operation["responses"]), path
    for path, method in [
        ("/api/v1/tokens/", "post"),
        ("/api/v1/movies/{id}/", "patch"),
        ("/api/v1/genres/{id}/", "patch"),
    ]:
        names = [p["name"] for p in paths[path][method].get("parameters", [])]
        assert "Idempotency-Key" not in names, (path, method)


@pytest.mark.django_db
def test_browsers_may_send_the_key_and_read_the_replay_mark(client: Client, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = client.options(
        "/api/v1/movies/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )
    assert "idempotency-key" in preflight["Access-Control-Allow-Headers"]
    response = client.get("/api/v1/movies/", HTTP_ORIGIN="https://app.example.com")
    assert "idempotent-replayed" in response["Access-Control-Expose-Headers"].lower()
