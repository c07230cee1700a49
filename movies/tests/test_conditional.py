"""Conditional requests on a movie as RFC 9110 says: If-None-Match weak, If-Match strong, lists, `*`, 304/412/428."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from movies.models import Movie

pytestmark = pytest.mark.django_db

URL = "/api/v1/movies/"


def detail(movie: Movie) -> str:
    return f"{URL}{movie.pk}/"


def current(client: APIClient, movie: Movie) -> tuple[str, bytes]:
    response = client.get(detail(movie))
    return response["ETag"], response.content


def stored(movie: Movie) -> tuple[str, int]:
    movie.refresh_from_db()
    return movie.title, movie.version


def weak(etag: str) -> str:
    return f"W/{etag}"


# ---- reads: GET and HEAD -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize(
    "header",
    [
        "{etag}",
        "W/{etag}",  # the weak comparison: W/"x" matches "x"
        '"other", {etag}',
        '"other",W/{etag}',
        ' , "other" ,, {etag} , ',  # whitespace and empty list elements are allowed
        '"a,b", {etag}',  # a tag may hold a comma
        "*",
    ],
)
def test_if_none_match_that_matches_weakly_is_304(anon: APIClient, movie: Movie, method: str, header: str) -> None:
    etag, body = current(anon, movie)
    response = getattr(anon, method)(detail(movie), HTTP_IF_NONE_MATCH=header.format(etag=etag))
    assert response.status_code == 304
    assert response.content == b""
    # RFC 9110 15.4.5 and 8.6: the ETag the 200 would carry; a Content-Length only if it is the 200's; no content type.
    assert response["ETag"] == etag
    assert response.get("Content-Length", str(len(body))) == str(len(body))
    assert "Content-Type" not in response


def test_a_304_repeats_the_200s_vary_and_cors_headers(anon: APIClient, movie: Movie, settings: Any) -> None:
    """RFC 9110 15.4.5: a 304 has the Vary (and caching headers) the 200 would have; here, the CORS middleware's."""
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    origin: dict[str, Any] = {"HTTP_ORIGIN": "https://app.example"}
    full = anon.get(detail(movie), **origin)
    response = anon.get(detail(movie), HTTP_IF_NONE_MATCH=weak(full["ETag"]), **origin)
    assert response.status_code == 304
    repeated = ["ETag", "Vary", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Cache-Control"]
    assert {name: response.get(name) for name in repeated} == {name: full.get(name) for name in repeated}
    assert full["Vary"].lower() == "origin"
    assert response.get("Content-Length", full["Content-Length"]) == full["Content-Length"]


@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize("header", ['"other"', '"other", W/"another"', "", " , "])
def test_if_none_match_that_does_not_match_is_the_full_answer(
    anon: APIClient, movie: Movie, method: str, header: str
) -> None:
    etag, body = current(anon, movie)
    response = getattr(anon, method)(detail(movie), HTTP_IF_NONE_MATCH=header)
    assert response.status_code == 200
    assert (response["ETag"], response["Content-Length"]) == (etag, str(len(body)))


@pytest.mark.parametrize("method", ["get", "head"])
def test_a_stale_if_match_on_a_read_is_412_with_the_current_etag(anon: APIClient, movie: Movie, method: str) -> None:
    etag, _ = current(anon, movie)
    response = getattr(anon, method)(detail(movie), HTTP_IF_MATCH='"stale"')
    assert response.status_code == 412
    assert response["ETag"] == etag
    if method == "get":
        assert response.json()["current_version"] == 1
    assert getattr(anon, method)(detail(movie), HTTP_IF_MATCH=etag).status_code == 200


def test_if_match_is_evaluated_before_if_none_match(anon: APIClient, movie: Movie) -> None:
    etag, _ = current(anon, movie)
    assert anon.get(detail(movie), HTTP_IF_MATCH='"stale"', HTTP_IF_NONE_MATCH=etag).status_code == 412
    assert anon.get(detail(movie), HTTP_IF_MATCH=etag, HTTP_IF_NONE_MATCH=etag).status_code == 304


MALFORMED = [
    "abc",  # unquoted: the commonest mistake
    "3",  # a version number is not an ETag
    '"abc',
    'W/ "abc"',
    'w/"abc"',  # the weak prefix is case-sensitive
    '"a" "b"',  # a list needs commas
    '*, "a"',  # `*` stands alone
    '"a\x01b"',
    '"a"b"',
    " " * 4000 + "x",
]


@pytest.mark.parametrize("header", MALFORMED)
@pytest.mark.parametrize("name", ["HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH"])
def test_a_malformed_entity_tag_list_on_a_read_is_400_naming_the_header(
    anon: APIClient, movie: Movie, name: str, header: str
) -> None:
    headers: dict[str, Any] = {name: header}
    response = anon.get(detail(movie), **headers)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:movieapi:problem:malformed-precondition"
    assert problem["detail"].startswith("If-Match" if name == "HTTP_IF_MATCH" else "If-None-Match")


def test_preconditions_on_a_missing_movie_are_ignored_404(anon: APIClient, db: None) -> None:
    assert anon.get(f"{URL}999999/", HTTP_IF_MATCH="not a tag").status_code == 404
    assert anon.get(f"{URL}999999/", HTTP_IF_NONE_MATCH="*").status_code == 404


# ---- writes: PUT, PATCH, DELETE ----------------------------------------------------------------


def test_a_weak_if_match_never_matches_a_write_and_says_why(curator_client: APIClient, movie: Movie) -> None:
    etag, _ = current(curator_client, movie)
    response = curator_client.patch(detail(movie), {"title": "X"}, format="json", HTTP_IF_MATCH=weak(etag))
    assert response.status_code == 412
    assert "weak" in response.json()["detail"]
    assert stored(movie) == ("The Matrix", 1)


@pytest.mark.parametrize("header", ['"other", {etag}', ' "a,b" ,{etag}, W/"c"'])
def test_if_match_listing_the_current_etag_among_others_writes(
    curator_client: APIClient, movie: Movie, header: str
) -> None:
    etag, _ = current(curator_client, movie)
    response = curator_client.patch(
        detail(movie), {"title": "X"}, format="json", HTTP_IF_MATCH=header.format(etag=etag)
    )
    assert response.status_code == 200, response.json()
    assert stored(movie) == ("X", 2)


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_a_stale_if_match_is_412_carrying_the_current_etag_and_version(
    curator_client: APIClient, movie: Movie, method: str
) -> None:
    stale, _ = current(curator_client, movie)
    curator_client.patch(detail(movie), {"title": "first", "version": 1}, format="json")
    etag, _ = current(curator_client, movie)
    body = {"title": "second", "year": 1999} if method != "delete" else None
    response = getattr(curator_client, method)(detail(movie), body, format="json", HTTP_IF_MATCH=stale)
    assert response.status_code == 412
    assert response["ETag"] == etag
    assert response.json()["current_version"] == 2
    assert stored(movie) == ("first", 2)
    # The answer is enough to retry: no GET in between.
    retried = getattr(curator_client, method)(detail(movie), body, format="json", HTTP_IF_MATCH=response["ETag"])
    assert retried.status_code == (204 if method == "delete" else 200)


@pytest.mark.parametrize("via", ["body", "if-match-and-body"])
def test_a_409_carries_the_current_etag_and_version(curator_client: APIClient, movie: Movie, via: str) -> None:
    curator_client.patch(detail(movie), {"title": "first", "version": 1}, format="json")
    etag, _ = current(curator_client, movie)
    headers: dict[str, Any] = {"HTTP_IF_MATCH": etag} if via == "if-match-and-body" else {}
    response = curator_client.patch(detail(movie), {"title": "second", "version": 1}, format="json", **headers)
    assert response.status_code == 409
    assert response["ETag"] == etag
    assert response.json()["current_version"] == 2
    assert stored(movie) == ("first", 2)
    retried = curator_client.patch(detail(movie), {"title": "second"}, format="json", HTTP_IF_MATCH=response["ETag"])
    assert retried.status_code == 200


@pytest.mark.parametrize("method", ["patch", "put"])
@pytest.mark.parametrize("header", ["*", " * "])
def test_if_match_star_names_no_version_and_is_428(
    curator_client: APIClient, movie: Movie, method: str, header: str
) -> None:
    body = {"title": "X", "year": 1999}
    response = getattr(curator_client, method)(detail(movie), body, format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 428
    assert "If-Match: *" in response.json()["detail"]
    assert stored(movie) == ("The Matrix", 1)


def test_if_match_star_beside_a_body_version_defers_to_the_version(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.patch(detail(movie), {"title": "X", "version": 2}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 409
    response = curator_client.patch(detail(movie), {"title": "X", "version": 1}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 200
    assert stored(movie) == ("X", 2)


def test_delete_with_if_match_star_deletes_whatever_the_version(curator_client: APIClient, movie: Movie) -> None:
    Movie.objects.filter(pk=movie.pk).update(version=7)
    assert curator_client.delete(detail(movie), HTTP_IF_MATCH="*").status_code == 204
    assert not Movie.objects.filter(pk=movie.pk).exists()
    assert curator_client.delete(detail(movie), HTTP_IF_MATCH="*").status_code == 404


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
@pytest.mark.parametrize("header", ["*", "{etag}", 'W/{etag}, "other"'])
def test_if_none_match_that_matches_refuses_a_write_with_412(
    curator_client: APIClient, movie: Movie, method: str, header: str
) -> None:
    etag, _ = current(curator_client, movie)
    body = {"title": "X", "year": 1999, "version": 1} if method != "delete" else None
    response = getattr(curator_client, method)(
        detail(movie), body, format="json", HTTP_IF_NONE_MATCH=header.format(etag=etag)
    )
    assert response.status_code == 412
    assert response["ETag"] == etag
    assert stored(movie) == ("The Matrix", 1)


def test_if_none_match_that_does_not_match_lets_a_versioned_write_through(
    curator_client: APIClient, movie: Movie
) -> None:
    response = curator_client.patch(
        detail(movie), {"title": "X", "version": 1}, format="json", HTTP_IF_NONE_MATCH='"other"'
    )
    assert response.status_code == 200, response.json()
    assert stored(movie) == ("X", 2)


@pytest.mark.parametrize("header", MALFORMED)
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_malformed_if_match_on_a_write_is_400_and_changes_nothing(
    curator_client: APIClient, movie: Movie, method: str, header: str
) -> None:
    body: dict[str, Any] | None = {"title": "X"} if method == "patch" else None
    response = getattr(curator_client, method)(detail(movie), body, format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:movieapi:problem:malformed-precondition"
    assert stored(movie) == ("The Matrix", 1)


def test_a_write_with_preconditions_to_a_missing_movie_is_404(curator_client: APIClient, db: None) -> None:
    missing = f"{URL}999999/"
    assert curator_client.patch(missing, {"title": "X"}, format="json", HTTP_IF_MATCH="not a tag").status_code == 404
    assert curator_client.delete(missing, HTTP_IF_NONE_MATCH="*").status_code == 404


def test_the_conflicts_metric_counts_refused_writes_not_reads(curator_client: APIClient, movie: Movie) -> None:
    from movieapi.metrics import VERSION_CONFLICTS

    refused = VERSION_CONFLICTS.labels("412")
    before = refused._value.get()
    assert curator_client.get(detail(movie), HTTP_IF_MATCH='"stale"').status_code == 412
    assert refused._value.get() == before
    assert (
        curator_client.patch(detail(movie), {"title": "X"}, format="json", HTTP_IF_MATCH='"stale"').status_code == 412
    )
    assert refused._value.get() == before + 1


def test_the_schema_documents_the_conditional_answers(anon: APIClient) -> None:
    """What a schema-driven client may send (both headers on every detail operation) and what it gets back."""
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    movie = schema["paths"]["/api/v1/movies/{id}/"]
    for method in ("get", "put", "patch", "delete"):
        headers = {p["name"] for p in movie[method].get("parameters", []) if p["in"] == "header"}
        assert headers >= {"If-Match", "If-None-Match"}, method
    assert set(movie["get"]["responses"]) >= {"200", "304", "400", "404", "412"}
    assert set(movie["delete"]["responses"]) >= {"204", "400", "404", "412"}


@pytest.mark.parametrize(
    "value",
    [
        '"a"',
        'W/"a"',
        '"a", W/"b"',
        ' "a" ,, "b" ',
        "*",
        " * ",
        '"a,b"',
        "",
        ",",
        "a",
        '"a',
        'w/"a"',
        '"a" "b"',
        '"a"b',
        '*, "a"',
        '"\x7f"',
        '"é"',
        '"a\tb"',
        '\t"a"\t',
    ],
)
def test_the_schemas_entity_tag_pattern_accepts_what_the_parser_does(value: str) -> None:
    """The If-Match / If-None-Match pattern the schema publishes says 400 exactly where the server does."""
    import re

    from movieapi.errors import MalformedPrecondition
    from movieapi.preconditions import ENTITY_TAG_LIST_PATTERN, parse_entity_tags

    try:
        parse_entity_tags("If-Match", value)
        parsed = True
    except MalformedPrecondition:
        parsed = False
    assert (re.fullmatch(ENTITY_TAG_LIST_PATTERN, value) is not None) == parsed


def test_the_schema_publishes_the_entity_tag_pattern(anon: APIClient) -> None:
    from movieapi.preconditions import ENTITY_TAG_LIST_PATTERN

    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/movies/{id}/"]["patch"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert headers["If-Match"]["schema"]["pattern"] == ENTITY_TAG_LIST_PATTERN
    assert headers["If-None-Match"]["schema"]["pattern"] == ENTITY_TAG_LIST_PATTERN
