"""Users' ratings: the caller's own rating of a movie, their list, and the movie's exact aggregates."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from conftest import bearer_client
from movies import services
from movies.errors import AccountGone
from movies.models import Movie, Rating
from movies.tests.factories import MovieFactory

pytestmark = pytest.mark.django_db

MY_RATINGS = "/api/v1/me/ratings/"


def rating_url(movie_id: int) -> str:
    return f"/api/v1/movies/{movie_id}/rating/"


def aggregate(movie: Movie) -> tuple[int, int, float | None]:
    movie.refresh_from_db()
    average = float(movie.rating_average) if movie.rating_average is not None else None
    return movie.rating_count, movie.rating_sum, average


def sql_aggregate(movie: Movie) -> tuple[int, int, float | None]:
    """What the rating rows say, computed by PostgreSQL from scratch."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(score), 0), round(avg(score), 1) FROM movies_rating WHERE movie_id = %s",
            [movie.pk],
        )
        count, total, average = cursor.fetchone()
    return count, total, float(average) if average is not None else None


@pytest.fixture
def other() -> User:
    return User.objects.create_user("other", "other@example.com", "another-long-password-4")


@pytest.fixture
def other_client(other: User) -> APIClient:
    return bearer_client(other)


# ---- set, read, change, delete -----------------------------------------------------------------


def test_put_creates_then_changes_the_rating(user_client: APIClient, movie: Movie) -> None:
    response = user_client.put(rating_url(movie.pk), {"score": 8}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["movie"] == {"id": movie.pk, "title": "The Matrix"}
    assert body["score"] == 8
    assert response["Location"].endswith(rating_url(movie.pk))
    assert set(body) == {"movie", "score", "created_at", "updated_at"}
    assert aggregate(movie) == (1, 8, 8.0)

    response = user_client.put(rating_url(movie.pk), {"score": 3}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["score"] == 3
    assert aggregate(movie) == (1, 3, 3.0)
    assert Rating.objects.get().score == 3

    assert user_client.get(rating_url(movie.pk)).json()["score"] == 3
    assert user_client.get(f"/api/v1/movies/{movie.pk}/").json()["rating"] == {"average": 3.0, "count": 1}


def test_put_is_idempotent(user_client: APIClient, movie: Movie) -> None:
    first = user_client.put(rating_url(movie.pk), {"score": 6}, format="json").json()
    again = user_client.put(rating_url(movie.pk), {"score": 6}, format="json")
    assert again.status_code == 200
    assert again.json() == first  # same score, same updated_at: nothing happened
    assert aggregate(movie) == (1, 6, 6.0)
    assert Rating.objects.count() == 1


def test_average_is_the_mean_to_one_decimal(movie: Movie, db: None) -> None:
    for index, score in enumerate([7, 8, 8]):
        rater = User.objects.create(username=f"rater{index}")
        services.rating_set(user=rater, movie_id=movie.pk, score=score)
    assert aggregate(movie) == (3, 23, 7.7) == sql_aggregate(movie)


def test_get_without_a_rating_is_404(user_client: APIClient, movie: Movie) -> None:
    response = user_client.get(rating_url(movie.pk))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_delete_removes_the_rating_and_its_share_of_the_aggregate(
    user_client: APIClient, other_client: APIClient, movie: Movie
) -> None:
    user_client.put(rating_url(movie.pk), {"score": 10}, format="json")
    other_client.put(rating_url(movie.pk), {"score": 5}, format="json")
    assert aggregate(movie) == (2, 15, 7.5)

    response = user_client.delete(rating_url(movie.pk))
    assert response.status_code == 204
    assert aggregate(movie) == (1, 5, 5.0) == sql_aggregate(movie)
    assert user_client.get(rating_url(movie.pk)).status_code == 404
    assert user_client.delete(rating_url(movie.pk)).status_code == 404
    assert aggregate(movie) == (1, 5, 5.0)

    assert other_client.delete(rating_url(movie.pk)).status_code == 204
    assert aggregate(movie) == (0, 0, None)
    assert user_client.get(f"/api/v1/movies/{movie.pk}/").json()["rating"] == {"average": None, "count": 0}


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_missing_movie_is_404_and_writes_nothing(user_client: APIClient, db: None, method: str) -> None:
    response = getattr(user_client, method)(rating_url(999999), {"score": 5}, format="json")
    assert response.status_code == 404
    assert response.json()["detail"] == "No such movie."
    assert not Rating.objects.exists()


def test_huge_movie_id_is_404_not_500(user_client: APIClient, db: None) -> None:
    assert user_client.put(rating_url(10**30), {"score": 5}, format="json").status_code == 404


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"score": 0}, "score"),
        ({"score": 11}, "score"),
        ({"score": -1}, "score"),
        ({"score": 5.5}, "score"),
        ({"score": 5.0}, "score"),
        ({"score": "5"}, "score"),
        ({"score": None}, "score"),
        ({"score": True}, "score"),
        ({"score": [5]}, "score"),
        ({"score": 2**70}, "score"),
        ({}, "score"),
        ({"score": 5, "user": 1}, "user"),
        ({"score": 5, "comment": "great"}, "comment"),
    ],
)
def test_bad_score_is_400_naming_the_field(
    user_client: APIClient, movie: Movie, body: dict[str, Any], field: str
) -> None:
    response = user_client.put(rating_url(movie.pk), body, format="json")
    assert response.status_code == 400, response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert list(response.json()["errors"]) == [field]
    assert not Rating.objects.exists()
    assert aggregate(movie) == (0, 0, None)


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"[5]", "application/json", 400),
        (b'{"score": 5', "application/json", 400),
        (b"5", "application/json", 400),
        (b"score=5", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_body_is_refused(
    user_client: APIClient, movie: Movie, raw: bytes, content_type: str, status: int
) -> None:
    response = user_client.generic("PUT", rating_url(movie.pk), raw, content_type=content_type)  # type: ignore[arg-type]
    assert response.status_code == status
    assert not Rating.objects.exists()


def test_read_only_fields_of_the_representation_are_ignored(user_client: APIClient, movie: Movie) -> None:
    other_movie = MovieFactory.create()
    body = {"score": 4, "movie": {"id": other_movie.pk, "title": "x"}, "created_at": "2000-01-01T00:00:00Z"}
    response = user_client.put(rating_url(movie.pk), body, format="json")
    assert response.status_code == 201
    assert response.json()["movie"]["id"] == movie.pk
    assert Rating.objects.get().movie_id == movie.pk


# ---- nobody reaches another user's rating ------------------------------------------------------


def test_another_users_rating_is_unreachable(
    user_client: APIClient, other_client: APIClient, other: User, movie: Movie
) -> None:
    other_client.put(rating_url(movie.pk), {"score": 9}, format="json")

    assert user_client.get(rating_url(movie.pk)).status_code == 404
    assert user_client.delete(rating_url(movie.pk)).status_code == 404
    assert user_client.get(MY_RATINGS).json()["count"] == 0
    # Setting one's own score creates one's own rating and leaves the other's alone.
    assert user_client.put(rating_url(movie.pk), {"score": 1}, format="json").status_code == 201
    assert Rating.objects.get(user=other).score == 9
    assert other_client.get(rating_url(movie.pk)).json()["score"] == 9
    assert aggregate(movie) == (2, 10, 5.0)
    # No URL takes a user or a rating id.
    assert user_client.get(f"{rating_url(movie.pk)}{other.pk}/").status_code == 404
    assert user_client.get(f"/api/v1/ratings/{Rating.objects.get(user=other).pk}/").status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_anonymous_and_bad_tokens_get_401_with_bearer_challenge(anon: APIClient, movie: Movie, method: str) -> None:
    for client in (anon, APIClient(HTTP_AUTHORIZATION="Bearer not-a-real-token")):
        response = getattr(client, method)(rating_url(movie.pk), {"score": 5}, format="json")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response["Content-Type"] == "application/problem+json"
    assert anon.get(MY_RATINGS).status_code == 401
    assert not Rating.objects.exists()


# ---- ratings and the movie's version, ETag and lifetime ----------------------------------------


def test_rating_changes_the_etag_but_not_version_or_updated_at(
    user_client: APIClient, anon: APIClient, movie: Movie
) -> None:
    before = anon.get(f"/api/v1/movies/{movie.pk}/")
    user_client.put(rating_url(movie.pk), {"score": 7}, format="json")
    after = anon.get(f"/api/v1/movies/{movie.pk}/")
    assert after["ETag"] != before["ETag"]
    assert after.json()["version"] == before.json()["version"] == 1
    assert after.json()["updated_at"] == before.json()["updated_at"]
    assert after.json()["rating"] == {"average": 7.0, "count": 1}


def test_rating_never_fails_a_curators_versioned_patch(
    user_client: APIClient, curator_client: APIClient, movie: Movie
) -> None:
    version = curator_client.get(f"/api/v1/movies/{movie.pk}/").json()["version"]
    user_client.put(rating_url(movie.pk), {"score": 2}, format="json")
    response = curator_client.patch(
        f"/api/v1/movies/{movie.pk}/", {"title": "The Matrix!", "version": version}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == version + 1
    assert response.json()["rating"] == {"average": 2.0, "count": 1}


def test_ratings_go_with_a_deleted_movie(user_client: APIClient, curator_client: APIClient, movie: Movie) -> None:
    user_client.put(rating_url(movie.pk), {"score": 2}, format="json")
    assert curator_client.delete(f"/api/v1/movies/{movie.pk}/").status_code == 204
    assert not Rating.objects.exists()
    assert user_client.get(MY_RATINGS).json()["count"] == 0
    assert user_client.get(rating_url(movie.pk)).status_code == 404


def test_deleting_a_user_takes_their_ratings_out_of_the_aggregates(user: User, other: User, db: None) -> None:
    movies = [MovieFactory.create() for _ in range(3)]
    for movie in movies:
        services.rating_set(user=user, movie_id=movie.pk, score=10)
        services.rating_set(user=other, movie_id=movie.pk, score=4)
    user.delete()
    for movie in movies:
        assert aggregate(movie) == (1, 4, 4.0) == sql_aggregate(movie)


@pytest.mark.usefixtures("transactional_db")
def test_rating_by_a_user_deleted_meanwhile_is_refused_cleanly() -> None:
    movie = MovieFactory.create()
    ghost = User.objects.create(username="ghost")
    User.objects.filter(pk=ghost.pk).delete()  # as if deleted while their request was running
    with pytest.raises(AccountGone):
        services.rating_set(user=ghost, movie_id=movie.pk, score=5)
    assert aggregate(movie) == (0, 0, None)
    assert not Rating.objects.exists()


# ---- me/ratings --------------------------------------------------------------------------------


def test_my_ratings_lists_my_ratings_newest_first(user_client: APIClient, other_client: APIClient, db: None) -> None:
    first, second, third = (MovieFactory.create(title=title) for title in ("First", "Second", "Third"))
    for movie, score in ((first, 1), (second, 2), (third, 3)):
        user_client.put(rating_url(movie.pk), {"score": score}, format="json")
    other_client.put(rating_url(first.pk), {"score": 10}, format="json")
    user_client.put(rating_url(first.pk), {"score": 5}, format="json")  # changing it makes it the newest

    body = user_client.get(MY_RATINGS).json()
    assert body["count"] == 3
    assert [(item["movie"]["title"], item["score"]) for item in body["results"]] == [
        ("First", 5),
        ("Third", 3),
        ("Second", 2),
    ]
    assert body["results"][0]["movie"] == {"id": first.pk, "title": "First"}

    page = user_client.get(MY_RATINGS, {"page_size": 2, "page": 2}).json()
    assert [item["movie"]["title"] for item in page["results"]] == ["Second"]
    assert page["next"] is None
    assert user_client.get(MY_RATINGS, {"page_size": 101}).status_code == 400
    assert user_client.get(MY_RATINGS, {"page": 0}).status_code == 400


def test_my_ratings_query_count_does_not_grow_with_the_page(user: User, user_client: APIClient, db: None) -> None:
    for _ in range(60):  # more than either page holds, so both pages take the same path
        services.rating_set(user=user, movie_id=MovieFactory.create().pk, score=5)
    counts = []
    for size in (1, 50):
        with CaptureQueriesContext(connection) as queries:
            response = user_client.get(MY_RATINGS, {"page_size": size})
        assert len(response.json()["results"]) == size
        counts.append(len(queries))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("size", [1, 50])
def test_my_ratings_query_budget(
    user: User, user_client: APIClient, db: None, size: int, django_assert_max_num_queries: Any
) -> None:
    for _ in range(60):
        services.rating_set(user=user, movie_id=MovieFactory.create().pk, score=5)
    # Authentication (token with its user, token housekeeping), then the page: ids, rows, a LIMITed count.
    with django_assert_max_num_queries(5):
        assert len(user_client.get(MY_RATINGS, {"page_size": size}).json()["results"]) == size
