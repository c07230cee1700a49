"""A movie's history through the API (docs/history.md): the list and one version, `changes_since` on 409 and 412,
and the revert. Versions are recorded by `history_recording.record` after each write, as the triggers will."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from movies.history import snapshot_diff
from movies.models import Genre, Movie, MovieVersion, Person
from movies.tests.factories import PersonFactory
from movies.tests.history_recording import history_is_recorded, record, record_deletion, snapshot_now

pytestmark = pytest.mark.django_db

URL = "/api/v1/movies/"


def detail(movie: Movie) -> str:
    return f"{URL}{movie.pk}/"


def patch(client: APIClient, movie: Movie, **body: Any) -> Any:
    """A versioned PATCH, then the version it made recorded."""
    response = client.patch(detail(movie), body, format="json")
    assert response.status_code == 200, response.content
    record(movie.pk)
    return response


@pytest.fixture
def versions(movie: Movie, curator_client: APIClient, genres: dict[str, Genre], people: list[Person]) -> Movie:
    """The Matrix at version 4: created, runtime 137, genres changed, cast reordered."""
    record(movie.pk)
    patch(curator_client, movie, runtime=137, version=1)
    patch(curator_client, movie, genres=["drama", "action"], version=2)
    patch(curator_client, movie, cast=[{"person": people[2].pk, "character": "Trinity"},
                                       {"person": people[1].pk, "character": "Neo"}], version=3)  # fmt: skip
    return movie


# ---- the list ------------------------------------------------------------------------------------


def test_history_is_newest_first_with_who_and_what_changed(curator_client: APIClient, versions: Movie) -> None:
    body = curator_client.get(f"{detail(versions)}history/").json()
    assert body["count"] == 4
    assert [entry["version"] for entry in body["results"]] == [4, 3, 2, 1]
    assert [entry["kind"] for entry in body["results"]] == ["updated", "updated", "updated", "created"]
    newest, third, second, first = body["results"]
    assert set(newest["changes"]) == {"cast"}
    assert "reordered" in newest["changes"]["cast"]
    assert third["changes"] == {"genres": {"added": ["drama"], "removed": ["science-fiction"]}}
    assert second["changes"] == {"runtime": {"from": 136, "to": 137}}
    assert first["changes"]["title"] == {"from": None, "to": "The Matrix"}
    assert second["by"]["kind"] in {"user", "admin", "import", "database"}
    assert second["at"].endswith("Z")


def test_history_pages_and_each_page_has_its_changes(curator_client: APIClient, versions: Movie) -> None:
    page = curator_client.get(f"{detail(versions)}history/", {"page_size": 1, "page": 3}).json()
    assert [entry["version"] for entry in page["results"]] == [2]
    assert page["results"][0]["changes"] == {"runtime": {"from": 136, "to": 137}}  # read with the page's next row
    assert page["next"]
    assert page["previous"]
    last = curator_client.get(f"{detail(versions)}history/", {"page_size": 2, "page": 2}).json()
    assert [entry["version"] for entry in last["results"]] == [2, 1]
    assert last["next"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [({"page": 0}, 400), ({"page_size": 101}, 400), ({"ordering": "version"}, 400), ({"page": 9}, 404)],
)
def test_history_paging_is_strict(
    curator_client: APIClient, versions: Movie, query: dict[str, Any], status: int
) -> None:
    response = curator_client.get(f"{detail(versions)}history/", query)
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("size", [1, 3])
def test_history_queries_are_constant_per_page(
    curator_client: APIClient, versions: Movie, size: int, django_assert_num_queries: Any
) -> None:
    # The token with its user, the user's permissions (one statement); the page with the row before its last; the count.
    with django_assert_num_queries(4):
        response = curator_client.get(f"{detail(versions)}history/", {"page_size": size})
    assert len(response.json()["results"]) == size


def test_history_is_for_curators(anon: APIClient, user_client: APIClient, versions: Movie) -> None:
    assert anon.get(f"{detail(versions)}history/").status_code == 401
    assert user_client.get(f"{detail(versions)}history/").status_code == 403
    assert anon.get(f"{detail(versions)}history/1/").status_code == 401
    assert user_client.get(f"{detail(versions)}history/1/").status_code == 403
    revert = user_client.post(f"{detail(versions)}revert/", {"to_version": 1, "version": 4}, format="json")
    assert revert.status_code == 403


def test_a_movie_without_history_is_404(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.get(f"{detail(movie)}history/")
    assert response.status_code == 404
    assert curator_client.get(f"{URL}999999/history/").status_code == 404


def test_a_deleted_movies_history_stays(curator_client: APIClient, versions: Movie) -> None:
    assert curator_client.delete(detail(versions)).status_code == 204
    record_deletion(versions.pk)
    body = curator_client.get(f"{detail(versions)}history/").json()
    assert [entry["kind"] for entry in body["results"]][:2] == ["deleted", "updated"]
    assert body["results"][0]["changes"] == {}
    assert curator_client.get(f"{detail(versions)}history/2/").json()["runtime"] == 137


# ---- one version ---------------------------------------------------------------------------------


def test_a_version_is_the_movie_as_it_was(curator_client: APIClient, movie: Movie) -> None:
    record(movie.pk)
    before = curator_client.get(detail(movie)).json()
    patch(curator_client, movie, title="Matrix", version=1)
    response = curator_client.get(f"{detail(movie)}history/1/")
    assert response.status_code == 200
    del before["rating"]
    assert list(response.json().items()) == list(before.items())  # the Movie shape and its key order
    assert curator_client.get(f"{detail(movie)}history/2/").json()["title"] == "Matrix"


@pytest.mark.parametrize("version", ["5", "0", "99999999999999", "999999999999999999999"])
def test_an_unknown_version_is_404(curator_client: APIClient, versions: Movie, version: str) -> None:
    response = curator_client.get(f"{detail(versions)}history/{version}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


# ---- changes_since -------------------------------------------------------------------------------


def test_a_409_says_what_changed_since_with_who_and_when(curator_client: APIClient, versions: Movie) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = curator_client.patch(detail(versions), {"title": "Stale", "version": 2}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["current_version"] == 4
    since = body["changes_since"]
    assert [entry["version"] for entry in since] == [3, 4]
    history = {entry.version: entry for entry in MovieVersion.objects.filter(movie_id=versions.pk)}
    for entry in since:
        before, after = history[entry["version"] - 1], history[entry["version"]]
        assert entry["changes"] == snapshot_diff(before.snapshot, after.snapshot)
        assert entry["by"] == history[entry["version"]].actor
    assert sum("movies_movieversion" in query["sql"] for query in queries.captured_queries) == 1


def test_a_412_says_what_changed_since_the_version_its_etag_named(curator_client: APIClient, movie: Movie) -> None:
    record(movie.pk)
    old_etag = curator_client.get(detail(movie))["ETag"]
    patch(curator_client, movie, runtime=140, version=1)
    response = curator_client.patch(detail(movie), {"title": "Stale"}, format="json", HTTP_IF_MATCH=old_etag)
    assert response.status_code == 412
    assert response.json()["changes_since"] == [
        {**response.json()["changes_since"][0], "version": 2, "changes": {"runtime": {"from": 136, "to": 140}}}
    ]
    # An ETag the history does not know (or taken before a rating changed the representation): left out.
    unknown = curator_client.patch(detail(movie), {"title": "Stale"}, format="json", HTTP_IF_MATCH='"nope"')
    assert unknown.status_code == 412
    assert "changes_since" not in unknown.json()


def test_changes_since_is_left_out_when_the_history_does_not_reach_back(
    curator_client: APIClient, movie: Movie
) -> None:
    curator_client.patch(detail(movie), {"runtime": 1, "version": 1}, format="json")
    MovieVersion.objects.filter(movie_id=movie.pk).delete()  # as if purged past the retention horizon
    response = curator_client.patch(detail(movie), {"runtime": 2, "version": 1}, format="json")
    assert response.status_code == 409
    assert "changes_since" not in response.json()


# ---- revert --------------------------------------------------------------------------------------


def test_revert_writes_a_new_version_equal_to_the_old_one(curator_client: APIClient, versions: Movie) -> None:
    response = curator_client.post(f"{detail(versions)}revert/", {"to_version": 1, "version": 4}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 5
    assert response["ETag"] == curator_client.get(detail(versions))["ETag"]
    record(versions.pk)
    first = MovieVersion.objects.get(movie_id=versions.pk, version=1)
    assert snapshot_diff(first.snapshot, snapshot_now(versions.pk)) == {}
    entry = curator_client.get(f"{detail(versions)}history/", {"page_size": 1}).json()["results"][0]
    assert entry["changes"]["runtime"] == {"from": 137, "to": 136}


def test_revert_is_a_versioned_write(curator_client: APIClient, versions: Movie) -> None:
    stale = curator_client.post(f"{detail(versions)}revert/", {"to_version": 1, "version": 3}, format="json")
    assert stale.status_code == 409
    assert [entry["version"] for entry in stale.json()["changes_since"]] == [4]
    assert stale["ETag"] == curator_client.get(detail(versions))["ETag"]
    assert curator_client.post(f"{detail(versions)}revert/", {"to_version": 1}, format="json").status_code == 428
    etag = curator_client.get(detail(versions))["ETag"]
    by_etag = curator_client.post(f"{detail(versions)}revert/", {"to_version": 2}, format="json", HTTP_IF_MATCH=etag)
    assert by_etag.status_code == 200, by_etag.content
    assert by_etag.json()["runtime"] == 137
    again = curator_client.post(f"{detail(versions)}revert/", {"to_version": 2}, format="json", HTTP_IF_MATCH=etag)
    assert again.status_code == 412
    assert Movie.objects.get(pk=versions.pk).version == 5


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"to_version": 1, "version": 4, "extra": 1}, 400, "extra"),
        ({"to_version": "1", "version": 4}, 400, "to_version"),
        ({"to_version": 0, "version": 4}, 400, "to_version"),
        ({"to_version": 2**31, "version": 4}, 400, "to_version"),
        ({"version": 4}, 400, "to_version"),
        ({"to_version": 9, "version": 4}, 422, "to_version"),
    ],
)
def test_revert_bodies_are_strict(
    curator_client: APIClient, versions: Movie, body: dict[str, Any], status: int, field: str
) -> None:
    response = curator_client.post(f"{detail(versions)}revert/", body, format="json")
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert Movie.objects.get(pk=versions.pk).version == 4


def test_revert_names_the_people_and_genres_gone_since(curator_client: APIClient, movie: Movie) -> None:
    extra = PersonFactory.create(name="Gone Person")
    patch(curator_client, movie, directors=[extra.pk], version=1)
    record(movie.pk)
    patch(curator_client, movie, directors=[], version=2)
    extra.delete()
    response = curator_client.post(f"{detail(movie)}revert/", {"to_version": 2, "version": 3}, format="json")
    assert response.status_code == 422
    assert response.json()["type"] == "urn:movieapi:problem:revert-impossible"
    assert "Gone Person" in response.json()["errors"]["directors"][0]


def test_revert_of_a_missing_movie_is_404(curator_client: APIClient) -> None:
    response = curator_client.post(f"{URL}999999/revert/", {"to_version": 1, "version": 1}, format="json")
    assert response.status_code == 404


# ---- with the database recording versions itself -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_real_writes_are_recorded_and_served(curator_client: APIClient, movie: Movie) -> None:
    """Against versions the triggers record by themselves at each commit (no `record` call here). The fixture's
    relations were each written in a transaction of their own here, so the movie starts past version 1."""
    base = Movie.objects.get(pk=movie.pk).version
    before = curator_client.get(detail(movie)).json()
    response = curator_client.patch(detail(movie), {"runtime": 140, "version": base}, format="json")
    assert response.status_code == 200
    assert history_is_recorded(movie.pk)
    body = curator_client.get(f"{detail(movie)}history/").json()
    assert [entry["version"] for entry in body["results"]] == list(range(base + 1, 0, -1))
    assert body["results"][0]["changes"] == {"runtime": {"from": before["runtime"], "to": 140}}
    after = response.json()
    del after["rating"]
    assert curator_client.get(f"{detail(movie)}history/{base + 1}/").json() == after
    stale = curator_client.patch(detail(movie), {"runtime": 1, "version": base}, format="json")
    assert [entry["version"] for entry in stale.json()["changes_since"]] == [base + 1]


def test_a_conditional_delete_refused_says_what_changed_since(curator_client: APIClient, movie: Movie) -> None:
    record(movie.pk)
    old_etag = curator_client.get(detail(movie))["ETag"]
    patch(curator_client, movie, year=2000, version=1)
    response = curator_client.delete(detail(movie), HTTP_IF_MATCH=old_etag)
    assert response.status_code == 412
    assert [entry["changes"] for entry in response.json()["changes_since"]] == [{"year": {"from": 1999, "to": 2000}}]
    assert Movie.objects.filter(pk=movie.pk).exists()


def test_an_etag_taken_before_a_rating_changed_names_no_version(
    curator_client: APIClient, user_client: APIClient, movie: Movie
) -> None:
    """The ETag digests the rating too: once it changed, no recorded version had that representation."""
    record(movie.pk)
    old_etag = curator_client.get(detail(movie))["ETag"]
    patch(curator_client, movie, year=2000, version=1)
    assert user_client.put(f"{detail(movie)}rating/", {"score": 7}, format="json").status_code == 201
    response = curator_client.patch(detail(movie), {"title": "Stale"}, format="json", HTTP_IF_MATCH=old_etag)
    assert response.status_code == 412
    assert "changes_since" not in response.json()
