"""Who may do what: every endpoint and method of docs/api.md for anonymous, plain user, curator and staff.

Each case asserts the status, and that a refused request wrote nothing (and an allowed write did).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import override_settings
from django.urls import URLResolver, resolve
from knox.models import AuthToken
from rest_framework.test import APIClient

from movieapi.urls import api_v1
from movies.models import CastMember, Genre, Movie, Person, Rating
from movies.tests.factories import GenreFactory, PersonFactory
from movies.tests.history_recording import record

pytestmark = pytest.mark.django_db

ROLES = ("anon", "user", "curator", "staff")
PASSWORDS = {
    "user": ("plain", "a-long-enough-password-1"),
    "curator": ("curator", "a-long-enough-password-2"),
    "staff": ("staff", "a-long-enough-password-3"),
    "anon": ("other", "another-long-password-4"),  # anyone may log in: anonymous logs in as `other`
}


@dataclass
class World:
    """What each case acts on: a movie another user has rated, and a genre and a person nothing uses."""

    movie: Movie
    spare_genre: Genre
    spare_person: Person
    other: User


@pytest.fixture(autouse=True)
def fast_password_hashing() -> Any:
    """Hashing speed is not under test here; PBKDF2 would make the matrix take a minute."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def world(movie: Movie) -> World:
    other = User.objects.create_user("other", "other@example.com", "another-long-password-4")
    Rating.objects.create(user=other, movie=movie, score=9)
    Movie.objects.filter(pk=movie.pk).update(rating_count=1, rating_sum=9)
    movie.refresh_from_db()
    record(movie.pk)  # its version 1 in its history (a no-op once the database records versions itself)
    return World(
        movie=movie, spare_genre=GenreFactory.create(slug="unused"), spare_person=PersonFactory.create(), other=other
    )


def snapshot() -> dict[str, Any]:
    """Everything a request could write, in comparable form."""
    return {
        "movies": sorted(Movie.objects.values_list("id", "title", "year", "version", "rating_count", "rating_sum")),
        "genres": sorted(Genre.objects.values_list("id", "slug", "name")),
        "people": sorted(Person.objects.values_list("id", "name")),
        "cast": sorted(CastMember.objects.values_list("movie_id", "person_id", "order")),
        "directors": sorted(Movie.directors.through.objects.values_list("movie_id", "person_id")),
        "movie_genres": sorted(Movie.genres.through.objects.values_list("movie_id", "genre_id")),
        "ratings": sorted(Rating.objects.values_list("user_id", "movie_id", "score")),
        "users": sorted(User.objects.values_list("id", "username", "email", "is_staff")),
        "groups": sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        "permissions": sorted(User.user_permissions.through.objects.values_list("user_id", "permission_id")),
        "curators": sorted(Group.objects.get(name="curators").permissions.values_list("id", flat=True)),
        "tokens": sorted(AuthToken.objects.values_list("digest", flat=True)),
        "all_permissions": Permission.objects.count(),
    }


Path = Callable[[World], str]
Body = Callable[[World, str], dict[str, Any] | None]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Path
    body: Body
    expected: dict[str, int]


def movies(world: World) -> str:
    return "/api/v1/movies/"


def movie(world: World) -> str:
    return f"/api/v1/movies/{world.movie.pk}/"


def rating(world: World) -> str:
    return f"/api/v1/movies/{world.movie.pk}/rating/"


def no_body(world: World, role: str) -> None:
    return None


def body(payload: dict[str, Any]) -> Body:
    return lambda world, role: payload


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def curators_only(status: int) -> dict[str, int]:
    return {"anon": 401, "user": 403, "staff": 403, "curator": status}


def users_only(status: int) -> dict[str, int]:
    return {"anon": 401, "user": status, "staff": status, "curator": status}


CASES = [
    Case("index", "GET", lambda w: "/api/v1/", no_body, everyone(200)),
    Case("movies list", "GET", movies, no_body, everyone(200)),
    Case("movie create", "POST", movies, body({"title": "Speed", "year": 1994}), curators_only(201)),
    Case("movie detail", "GET", movie, no_body, everyone(200)),
    Case("movie put", "PUT", movie, body({"title": "Matrix", "year": 1999, "version": 1}), curators_only(200)),
    Case("movie patch", "PATCH", movie, body({"title": "Matrix", "version": 1}), curators_only(200)),
    Case("movie delete", "DELETE", movie, no_body, curators_only(204)),
    Case("movie history", "GET", lambda w: f"{movie(w)}history/", no_body, curators_only(200)),
    Case("movie version", "GET", lambda w: f"{movie(w)}history/1/", no_body, curators_only(200)),
    Case(
        "movie revert",
        "POST",
        lambda w: f"{movie(w)}revert/",
        body({"to_version": 1, "version": 1}),
        curators_only(200),
    ),
    # `other` has rated the movie: nobody else's GET or DELETE reaches that rating.
    Case("rating get", "GET", rating, no_body, users_only(404)),
    Case("rating put", "PUT", rating, body({"score": 7}), users_only(201)),
    Case("rating delete", "DELETE", rating, no_body, users_only(404)),
    Case("genres list", "GET", lambda w: "/api/v1/genres/", no_body, everyone(200)),
    Case(
        "genre create",
        "POST",
        lambda w: "/api/v1/genres/",
        body({"slug": "new-wave", "name": "New Wave"}),
        curators_only(201),
    ),
    Case("genre detail", "GET", lambda w: f"/api/v1/genres/{w.spare_genre.pk}/", no_body, everyone(200)),
    Case(
        "genre patch",
        "PATCH",
        lambda w: f"/api/v1/genres/{w.spare_genre.pk}/",
        body({"name": "Renamed"}),
        curators_only(200),
    ),
    Case("genre delete", "DELETE", lambda w: f"/api/v1/genres/{w.spare_genre.pk}/", no_body, curators_only(204)),
    Case("people list", "GET", lambda w: "/api/v1/people/", no_body, everyone(200)),
    Case("person create", "POST", lambda w: "/api/v1/people/", body({"name": "New Person"}), curators_only(201)),
    Case("person detail", "GET", lambda w: f"/api/v1/people/{w.spare_person.pk}/", no_body, everyone(200)),
    Case(
        "person patch",
        "PATCH",
        lambda w: f"/api/v1/people/{w.spare_person.pk}/",
        body({"name": "Renamed"}),
        curators_only(200),
    ),
    Case("person delete", "DELETE", lambda w: f"/api/v1/people/{w.spare_person.pk}/", no_body, curators_only(204)),
    Case(
        "register",
        "POST",
        lambda w: "/api/v1/users/",
        lambda w, role: {"username": f"new-{role}", "email": f"new-{role}@example.com", "password": "zion-is-far-9"},
        everyone(201),
    ),
    Case(
        "log in",
        "POST",
        lambda w: "/api/v1/tokens/",
        lambda w, role: dict(zip(("username", "password"), PASSWORDS[role], strict=True)),
        everyone(201),
    ),
    Case("log out", "DELETE", lambda w: "/api/v1/tokens/current/", no_body, users_only(204)),
    Case("my ratings", "GET", lambda w: "/api/v1/me/ratings/", no_body, users_only(200)),
    Case("change feed", "GET", lambda w: "/api/v1/changes/", no_body, everyone(200)),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_permission_matrix(request: pytest.FixtureRequest, world: World, case: Case, role: str) -> None:
    client: APIClient = request.getfixturevalue("anon" if role == "anon" else f"{role}_client")
    before = snapshot()

    response = getattr(client, case.method.lower())(case.path(world), case.body(world, role), format="json")

    expected = case.expected[role]
    assert response.status_code == expected, (case.name, role, response.content)
    if expected >= 400:
        assert response["Content-Type"] == "application/problem+json"
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    after = snapshot()
    if case.method == "GET" or expected >= 400:
        assert after == before, "a refused request (or a read) wrote something"
    else:
        assert after != before, "an allowed write changed nothing"
    # The other user's rating survives everything but the movie's own deletion.
    if case.name != "movie delete" or expected >= 400:
        assert Rating.objects.get(user=world.other, movie=world.movie).score == 9


def test_matrix_covers_every_api_route(world: World) -> None:
    """A route added to /api/v1/ without a row in the matrix fails here."""
    names: set[str | None] = set()

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            else:
                names.add(pattern.name)

    walk(api_v1)
    assert names == {resolve(case.path(world)).url_name for case in CASES}
