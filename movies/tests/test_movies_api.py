"""The movie endpoints: reads, writes, optimistic concurrency and conditional requests."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, models, transaction
from rest_framework.test import APIClient

from movies.models import Genre, Movie, Person

pytestmark = pytest.mark.django_db

URL = "/api/v1/movies/"


def detail(movie: Movie) -> str:
    return f"{URL}{movie.pk}/"


def test_detail_shape(anon: APIClient, movie: Movie) -> None:
    response = anon.get(detail(movie))
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "The Matrix"
    assert body["genres"] == ["action", "science-fiction"]
    assert body["directors"] == [{"id": movie.directors.get().pk, "name": "Lana Wachowski"}]
    assert [(c["person"]["name"], c["character"], c["order"]) for c in body["cast"]] == [
        ("Keanu Reeves", "Neo", 0),
        ("Carrie-Anne Moss", "Trinity", 1),
    ]
    assert body["rating"] == {"average": None, "count": 0}
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    assert response["ETag"].startswith('"')


def test_list_shape(anon: APIClient, movie: Movie) -> None:
    body = anon.get(URL).json()
    assert body["count"] == 1
    assert body["next"] is None
    assert body["results"][0]["id"] == movie.pk


def test_if_none_match_gives_304_until_the_representation_changes(anon: APIClient, movie: Movie) -> None:
    etag = anon.get(detail(movie))["ETag"]
    assert anon.get(detail(movie), HTTP_IF_NONE_MATCH=etag).status_code == 304
    Movie.objects.filter(pk=movie.pk).update(rating_count=1, rating_sum=7)  # a rating changes the body
    response = anon.get(detail(movie), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag


def test_create_returns_201_location_and_etag(
    curator_client: APIClient, genres: dict[str, Genre], people: list[Person]
) -> None:
    payload = {
        "title": "Speed",
        "year": 1994,
        "runtime": 116,
        "genres": ["action"],
        "directors": [people[0].pk],
        "cast": [{"person": people[1].pk, "character": "Jack"}],
    }
    response = curator_client.post(URL, payload, format="json")
    assert response.status_code == 201, response.json()
    assert response["Content-Type"] == "application/json"
    movie = Movie.objects.get(title="Speed")
    assert response["Location"].endswith(f"/api/v1/movies/{movie.pk}/")
    assert response["ETag"]
    assert response.json()["version"] == 1
    assert movie.cast.get().character == "Jack"


def test_patch_with_body_version_bumps_version_by_one(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.patch(detail(movie), {"title": "The Matrix (1999)", "version": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2
    movie.refresh_from_db()
    assert (movie.title, movie.version, movie.runtime) == ("The Matrix (1999)", 2, 136)


def test_patch_relations_replace_whole_lists_and_bump_version(
    curator_client: APIClient, movie: Movie, people: list[Person]
) -> None:
    response = curator_client.patch(
        detail(movie),
        {"version": 1, "genres": ["drama"], "cast": [{"person": people[2].pk, "character": "T"}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["genres"] == ["drama"]
    assert [c["character"] for c in body["cast"]] == ["T"]
    assert body["version"] == 2


def test_put_replaces_the_whole_movie(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.put(detail(movie), {"title": "Matrix", "year": 1999, "version": 1}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["runtime"], body["genres"], body["cast"], body["imdb_id"]) == (None, [], [], None)
    assert body["version"] == 2


def test_put_requires_title_and_year(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.put(detail(movie), {"version": 1}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"title", "year"}
    movie.refresh_from_db()
    assert movie.version == 1


def test_write_without_precondition_is_428(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.patch(detail(movie), {"title": "X"}, format="json")
    assert response.status_code == 428
    assert response["Content-Type"] == "application/problem+json"
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("The Matrix", 1)


def test_stale_body_version_is_409_with_current_version(curator_client: APIClient, movie: Movie) -> None:
    Movie.objects.filter(pk=movie.pk).update(version=3)
    response = curator_client.patch(detail(movie), {"title": "X", "version": 2}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["current_version"] == 3
    assert body["status"] == 409
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("The Matrix", 3)


def test_if_match_current_etag_succeeds_and_returns_new_etag(curator_client: APIClient, movie: Movie) -> None:
    etag = curator_client.get(detail(movie))["ETag"]
    response = curator_client.patch(detail(movie), {"title": "Y"}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.json()
    assert response["ETag"] != etag
    assert response["ETag"] == curator_client.get(detail(movie))["ETag"]
    assert response.json()["version"] == 2


def test_if_match_stale_etag_is_412(curator_client: APIClient, movie: Movie) -> None:
    etag = curator_client.get(detail(movie))["ETag"]
    curator_client.patch(detail(movie), {"title": "first", "version": 1}, format="json")
    response = curator_client.patch(detail(movie), {"title": "second"}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 412
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("first", 2)


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        ("patch", {"title": "X", "version": 1}, {}),
        ("patch", {"title": "", "year": "soon", "version": 1}, {}),  # refused body: still 404, the movie is missing
        ("put", {"title": "X", "year": 2000, "version": 1}, {}),
        ("patch", {"title": "X"}, {"HTTP_IF_MATCH": '"any"'}),
    ],
)
def test_write_to_missing_movie_is_404(
    curator_client: APIClient, db: None, method: str, body: dict[str, object], headers: dict[str, str]
) -> None:
    response = getattr(curator_client, method)(f"{URL}999999/", body, format="json", **headers)
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_delete_with_stale_if_match_is_412_and_keeps_the_movie(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.delete(detail(movie), HTTP_IF_MATCH='"stale"')
    assert response.status_code == 412
    assert Movie.objects.filter(pk=movie.pk).exists()
    etag = curator_client.get(detail(movie))["ETag"]
    assert curator_client.delete(detail(movie), HTTP_IF_MATCH=etag).status_code == 204
    assert not Movie.objects.filter(pk=movie.pk).exists()
    assert curator_client.delete(detail(movie)).status_code == 404


def test_imdb_id_must_be_unique(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.post(URL, {"title": "Copy", "year": 2000, "imdb_id": movie.imdb_id}, format="json")
    assert response.status_code == 400
    assert "imdb_id" in response.json()["errors"]


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "imdb_id"), [(Movie, "tt0133093"), (Person, "nm0000206")])
def test_the_database_keeps_imdb_ids_unique_with_one_index(model: type[models.Model], imdb_id: str) -> None:
    """A unique constraint without Django's extra LIKE index (migration 0007), enforced when Python is bypassed."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s", [table, "%imdb_id%"]
        )
        assert [row[0] for row in cursor.fetchall()] == [
            f"CREATE UNIQUE INDEX {table.split('_')[1]}_imdb_id_unique ON public.{table} USING btree (imdb_id)"
        ]
    fields = {"title": "One", "year": 2000} if model is Movie else {"name": "One"}
    model._default_manager.create(imdb_id=imdb_id, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        model._default_manager.bulk_create([model(imdb_id=imdb_id, **fields)])
    model._default_manager.bulk_create(
        [model(imdb_id=None, **fields), model(imdb_id=None, **fields)]
    )  # NULLs may repeat


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"year": 1887}, "year"),
        ({"year": 2200}, "year"),
        ({"runtime": 0}, "runtime"),
        ({"runtime": 60001}, "runtime"),
        ({"imdb_id": "tt123"}, "imdb_id"),
        ({"imdb_id": "nm0000001"}, "imdb_id"),
        ({"title": ""}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"genres": ["no-such-genre"]}, "genres"),
        ({"genres": ["action", "action"]}, "genres"),
        ({"genres": [f"g{i}" for i in range(11)]}, "genres"),
        ({"directors": [999999]}, "directors"),
        ({"directors": [1, 1]}, "directors"),
        ({"cast": [{"person": 999999, "character": "x"}]}, "cast"),
        ({"cast": [{"character": "x"}]}, "cast.0.person"),
        ({"cast": [{"person": 1, "extra": 1}]}, "cast.0.extra"),
    ],
)
def test_invalid_values_are_400_naming_the_field(
    curator_client: APIClient, genres: dict[str, Genre], payload: dict[str, object], field: str
) -> None:
    response = curator_client.post(URL, {"title": "T", "year": 2000, **payload}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Movie.objects.exists()


def test_read_only_fields_are_ignored(curator_client: APIClient, movie: Movie) -> None:
    response = curator_client.patch(
        detail(movie),
        {"version": 1, "id": 5, "rating": {"average": 10}, "created_at": "2000-01-01T00:00:00Z", "runtime": 137},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["id"] == movie.pk
    assert response.json()["rating"]["count"] == 0


def test_genres_and_people_endpoints(curator_client: APIClient, anon: APIClient, movie: Movie) -> None:
    response = curator_client.post("/api/v1/genres/", {"slug": "noir-ish", "name": "Noir-ish"}, format="json")
    assert response.status_code == 201
    assert response["Location"]
    listed = anon.get("/api/v1/genres/", {"page_size": 100}).json()["results"]
    assert "noir-ish" in [genre["slug"] for genre in listed]
    person = movie.cast.get(order=0).person
    body = anon.get(f"/api/v1/people/{person.pk}/").json()
    assert body["roles"] == [{"movie": {"id": movie.pk, "title": "The Matrix", "year": 1999}, "character": "Neo"}]
    director = movie.directors.get()
    assert anon.get(f"/api/v1/people/{director.pk}/").json()["directed"][0]["id"] == movie.pk
    assert curator_client.patch(f"/api/v1/people/{person.pk}/", {"name": "K. Reeves"}, format="json").status_code == 200
    # Still credited: deleting would silently change the movie.
    response = curator_client.delete(f"/api/v1/people/{person.pk}/")
    assert response.status_code == 409
    genre = movie.genres.first()
    assert genre is not None
    assert curator_client.delete(f"/api/v1/genres/{genre.pk}/").status_code == 409
    unused = Genre.objects.get(slug="noir-ish")
    assert curator_client.delete(f"/api/v1/genres/{unused.pk}/").status_code == 204
