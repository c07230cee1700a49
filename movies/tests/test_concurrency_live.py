"""Optimistic concurrency against a real gunicorn with several workers: no edit is ever lost."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from conftest import LiveServer
from movies.models import Movie, Person
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory

pytestmark = [pytest.mark.live, pytest.mark.slow]

CLIENTS = 32
ROUNDS = 5


def request(
    server: LiveServer,
    method: str,
    path: str,
    token: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def storm(
    server: LiveServer, token: str, movie_id: int, bodies: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """Send one PATCH per body from its own thread, all released together by a barrier."""
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, dict[str, Any]]] = [(0, {})] * len(bodies)

    def worker(index: int) -> None:
        barrier.wait()
        results[index] = request(server, "PATCH", f"/api/v1/movies/{movie_id}/", token, bodies[index])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def row(movie_id: int) -> tuple[str, int, int | None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT title, version, runtime FROM movies_movie WHERE id = %s", [movie_id])
        title, version, runtime = cursor.fetchone()
    return title, version, runtime


@pytest.fixture
def curator_token(transactional_db: None) -> str:
    from django.contrib.auth.models import User
    from knox.models import AuthToken

    from conftest import curators_group

    user = User.objects.create_user("storm-curator", password="a-long-enough-password-9")
    user.groups.add(curators_group())
    return AuthToken.objects.create(user=user)[1]


@pytest.fixture
def storm_movie(transactional_db: None) -> Movie:
    genre = GenreFactory.create(slug="action")
    people: list[Person] = PersonFactory.create_batch(3)
    with transaction.atomic():  # one write: version 1 (each relation written on its own would be a version)
        movie = MovieFactory.create(title="Storm", runtime=100, genres=[genre], directors=[people[0]])
        for order, person in enumerate(people):
            CastMemberFactory.create(movie=movie, person=person, order=order)
    return movie


def test_patch_storm_exactly_one_winner_per_round(
    live_gunicorn: LiveServer, curator_token: str, storm_movie: Movie
) -> None:
    for round_number in range(ROUNDS):
        _, version, _ = row(storm_movie.pk)
        bodies = [{"title": f"round {round_number} client {i}", "version": version} for i in range(CLIENTS)]
        results = storm(live_gunicorn, curator_token, storm_movie.pk, bodies)
        statuses = Counter(status for status, _ in results)
        assert statuses == {200: 1, 409: CLIENTS - 1}, (statuses, live_gunicorn.output()[-3000:])
        winner = next(body for status, body in results if status == 200)
        assert all(body["current_version"] == version + 1 for status, body in results if status == 409)
        assert row(storm_movie.pk)[:2] == (winner["title"], version + 1)
        assert winner["version"] == version + 1


def test_different_fields_from_same_version_one_conflict_nothing_reverted(
    live_gunicorn: LiveServer, curator_token: str, storm_movie: Movie
) -> None:
    for _ in range(ROUNDS):
        title, version, runtime = row(storm_movie.pk)
        new_title, new_runtime = title + "!", (runtime or 0) + 1
        results = storm(
            live_gunicorn,
            curator_token,
            storm_movie.pk,
            [{"title": new_title, "version": version}, {"runtime": new_runtime, "version": version}],
        )
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409]
        final_title, final_version, final_runtime = row(storm_movie.pk)
        assert final_version == version + 1
        # Exactly one change landed; the other was refused, not silently merged or reverted.
        assert (final_title, final_runtime) in {(new_title, runtime), (title, new_runtime)}


def test_if_match_storm_exactly_one_winner(live_gunicorn: LiveServer, curator_token: str, storm_movie: Movie) -> None:
    etag = APIClient().get(f"/api/v1/movies/{storm_movie.pk}/")["ETag"]
    barrier = threading.Barrier(CLIENTS)
    results: list[int] = [0] * CLIENTS

    def worker(index: int) -> None:
        barrier.wait()
        results[index] = request(
            live_gunicorn,
            "PATCH",
            f"/api/v1/movies/{storm_movie.pk}/",
            curator_token,
            {"title": f"etag {index}"},
            {"If-Match": etag},
        )[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(results) == {200: 1, 412: CLIENTS - 1}
    assert row(storm_movie.pk)[1] == 2
