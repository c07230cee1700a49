"""What a write body must say: a PATCH names something to change, and nested objects are whole, PATCH or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from movies.models import Genre, Movie, Person
from movies.serializers import CastWriteSerializer, MovieWriteSerializer

pytestmark = pytest.mark.django_db

URL = "/api/v1/movies/"
WRITABLE = "title, year, runtime, overview, imdb_id, genres, directors, cast"


def detail(movie: Movie) -> str:
    return f"{URL}{movie.pk}/"


def stored(movie: Movie) -> tuple[Any, ...]:
    movie.refresh_from_db()
    return (movie.title, movie.version, movie.updated_at, list(movie.cast.values_list("character", flat=True)))


# ---- a PATCH that names nothing to change ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"version": 1}, {}),
        ({}, {"if_match": True}),
        ({"id": 5, "rating": {"average": 9}, "created_at": "2020-01-01T00:00:00Z", "version": 1}, {}),
        ({"updated_at": "2020-01-01T00:00:00Z"}, {"if_match": True}),
    ],
    ids=["version-only", "empty-with-if-match", "read-only-fields", "read-only-with-if-match"],
)
def test_patch_naming_nothing_to_change_is_400_and_writes_nothing(
    curator_client: APIClient, movie: Movie, body: dict[str, Any], headers: dict[str, bool]
) -> None:
    before = stored(movie)
    extra: dict[str, Any] = {"HTTP_IF_MATCH": curator_client.get(detail(movie))["ETag"]} if headers else {}
    response = curator_client.patch(detail(movie), body, format="json", **extra)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] == f"Nothing to change: name at least one of {WRITABLE}."
    assert problem["errors"] == {"non_field_errors": [problem["detail"]]}
    assert stored(movie) == before  # version, updated_at: untouched


def test_patch_naming_nothing_on_a_missing_movie_is_404(curator_client: APIClient, db: None) -> None:
    assert curator_client.patch(f"{URL}999999/", {"version": 1}, format="json").status_code == 404


def test_an_unknown_field_is_named_before_nothing_to_change(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.patch(detail(movie), {"titel": "X", "version": 1}, format="json")
    assert response.json()["errors"] == {"titel": ["This field does not exist on this resource."]}


def test_put_with_only_the_required_fields_still_replaces_the_whole_movie(
    curator_client: APIClient, movie: Movie
) -> None:
    response = curator_client.put(detail(movie), {"title": "The Matrix", "year": 1999, "version": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["cast"], response.json()["version"]) == ([], 2)


def test_patch_repeating_the_current_value_is_a_write_and_bumps_the_version(
    curator_client: APIClient, movie: Movie
) -> None:
    """The decision in docs/concurrency.md: a PATCH that names a field is applied as a new version, even unchanged."""
    response = curator_client.patch(detail(movie), {"title": "The Matrix", "version": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2


@pytest.mark.parametrize(
    ("url", "fields"), [("/api/v1/genres/{}/", "slug, name"), ("/api/v1/people/{}/", "name, imdb_id")]
)
@pytest.mark.parametrize("body", [{}, {"id": 12345}])
def test_genre_and_person_patch_naming_nothing_is_400(
    curator_client: APIClient, genres: dict[str, Genre], people: list[Person], url: str, fields: str, body: dict
) -> None:
    pk = genres["drama"].pk if "genres" in url else people[0].pk
    response = curator_client.patch(url.format(pk), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == f"Nothing to change: name at least one of {fields}."


# ---- nested objects are whole under PATCH, PUT and POST ----------------------------------------

# Every nested writable shape of the API and its required keys. Genres and directors are lists of scalars; genres,
# people, ratings, users and tokens take flat objects (their PATCH is checked above); the cast is the only nested one.
NESTED_REQUIRED = {"cast": (CastWriteSerializer, ["person"])}


def test_the_nested_shapes_listed_are_all_there_are() -> None:
    """If a new nested writable shape appears, NESTED_REQUIRED (and so the test below) must name it."""
    nested = {
        name: type(getattr(field, "child", field))
        for name, field in MovieWriteSerializer().fields.items()
        if hasattr(getattr(field, "child", field), "fields")
    }
    assert nested == {name: shape for name, (shape, _) in NESTED_REQUIRED.items()}
    for shape, required in NESTED_REQUIRED.values():
        assert [name for name, field in shape().fields.items() if field.required] == required


def write(client: APIClient, method: str, movie: Movie, payload: dict[str, Any]) -> Any:
    if method == "post":
        body = {"title": "Speed", "year": 1994, **payload}
        return client.generic("POST", URL, json.dumps(body), content_type="application/json")
    base: dict[str, Any] = {"version": 1} if method == "patch" else {"title": "T", "year": 2000, "version": 1}
    return client.generic(
        method.upper(), detail(movie), json.dumps({**base, **payload}), content_type="application/json"
    )


@pytest.mark.parametrize("method", ["patch", "put", "post"])
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"cast": [{"character": ""}]}, "cast.0.person"),
        ({"cast": [{}]}, "cast.0.person"),
        ({"cast": "PERSON_THEN_MISSING"}, "cast.1.person"),
    ],
)
def test_a_nested_entry_missing_a_required_key_is_400_naming_it(
    curator_client: APIClient, movie: Movie, people: list[Person], method: str, payload: dict[str, Any], field: str
) -> None:
    if payload["cast"] == "PERSON_THEN_MISSING":
        payload = {"cast": [{"person": people[1].pk, "character": "Neo"}, {"character": "Trinity"}]}
    before = stored(movie)
    response = write(curator_client, method, movie, payload)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {field: ["This field is required."]}
    assert stored(movie) == before
    assert Movie.objects.count() == 1


@pytest.mark.parametrize("method", ["patch", "put", "post"])
def test_a_missing_required_key_is_named_beside_the_entrys_other_errors(
    curator_client: APIClient, movie: Movie, method: str
) -> None:
    response = write(curator_client, method, movie, {"cast": [{"character": 5}]})
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "cast.0.person": ["This field is required."],
        "cast.0.character": ["Must be a string, not int."],
    }


@pytest.mark.parametrize("method", ["patch", "put", "post"])
def test_a_nested_entry_without_its_optional_key_takes_the_default(
    curator_client: APIClient, movie: Movie, people: list[Person], method: str
) -> None:
    response = write(curator_client, method, movie, {"cast": [{"person": people[2].pk}]})
    assert response.status_code in {200, 201}, response.content
    assert [(c["person"]["id"], c["character"]) for c in response.json()["cast"]] == [(people[2].pk, "")]
