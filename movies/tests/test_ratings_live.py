"""Rating storms against a real gunicorn with four workers: the aggregate stays exact, curators' edits succeed."""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.db import connection
from knox.models import AuthToken

from conftest import LiveServer, curators_group
from movies.models import Movie
from movies.tests.factories import MovieFactory

pytestmark = [pytest.mark.live, pytest.mark.slow]

RATERS = 50
RACERS = 10  # of the raters, these send their writes from three threads at once (same token)


def call(
    server: LiveServer, method: str, path: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """One request on its own connection; returns the status and the decoded JSON body."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def run_together(tasks: list[Callable[[], None]]) -> None:
    """Run each task in its own thread, all released at once by a barrier; re-raise the first failure."""
    barrier = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        barrier.wait()
        try:
            task()
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(task,), daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    if errors:
        raise errors[0]


@dataclass
class Rater:
    """One user's script of rating calls, and what their rating must be once it has run."""

    user_id: int
    token: str
    steps: list[tuple[str, int | None, int]] = field(default_factory=list)  # (method, score, expected status)
    got: list[int] = field(default_factory=list)

    @property
    def final(self) -> int | None:
        last_method, last_score, _ = self.steps[-1]
        return last_score if last_method == "PUT" else None


def make_raters(count: int) -> list[Rater]:
    """Users with tokens, each with a script of PUTs (random scores) and DELETEs and the statuses they must get."""
    users = User.objects.bulk_create(User(username=f"rater{i}", email=f"rater{i}@example.com") for i in range(count))
    raters = []
    for i, user in enumerate(users):
        _, token = AuthToken.objects.create(user=user)
        rater = Rater(user_id=user.pk, token=token)
        rng = random.Random(i)
        rater.steps.append(("PUT", rng.randint(1, 10), 201))
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.3:
                rater.steps.append(("DELETE", None, 204 if rater.final is not None else 404))
            else:
                rater.steps.append(("PUT", rng.randint(1, 10), 200 if rater.final is not None else 201))
        raters.append(rater)
    return raters


def rating_task(server: LiveServer, movie_id: int, rater: Rater) -> Callable[[], None]:
    def task() -> None:
        path = f"/api/v1/movies/{movie_id}/rating/"
        for method, score, _ in rater.steps:
            status, _ = call(server, method, path, rater.token, {"score": score} if method == "PUT" else None)
            rater.got.append(status)

    return task


def racing_tasks(server: LiveServer, movie_id: int, rater: Rater, threads: int = 3) -> list[Callable[[], None]]:
    """Several threads sending one user's writes at once: each answer must be a success or a clean 404."""

    def task(seed: int) -> None:
        rng = random.Random(seed)
        path = f"/api/v1/movies/{movie_id}/rating/"
        for _ in range(6):
            if rng.random() < 0.3:
                status, _ = call(server, "DELETE", path, rater.token)
                assert status in {204, 404}, status
            else:
                status, _ = call(server, "PUT", path, rater.token, {"score": rng.randint(1, 10)})
                assert status in {200, 201}, status

    seeds = range(rater.user_id * threads, (rater.user_id + 1) * threads)
    return [functools.partial(task, seed) for seed in seeds]


def stored(movie_id: int) -> tuple[int, int, float | None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rating_count, rating_sum, rating_average FROM movies_movie WHERE id = %s", [movie_id])
        count, total, average = cursor.fetchone()
    return count, total, float(average) if average is not None else None


def recounted(movie_id: int) -> tuple[int, int, float | None]:
    """The aggregate computed afresh by PostgreSQL from the rating rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(score), 0), round(avg(score), 1) FROM movies_rating WHERE movie_id = %s",
            [movie_id],
        )
        count, total, average = cursor.fetchone()
    return count, total, float(average) if average is not None else None


def assert_exact(server: LiveServer, movie: Movie, raters: list[Rater]) -> None:
    """Every scripted answer as expected, their rows as scripted, and the stored aggregate equal to a recount."""
    for rater in raters:
        assert rater.got == [status for _, _, status in rater.steps], f"user {rater.user_id}"
    expected_rows = {rater.user_id: rater.final for rater in raters if rater.final is not None}
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, score FROM movies_rating WHERE movie_id = %s", [movie.pk])
        rows = dict(cursor.fetchall())
    assert {user_id: score for user_id, score in rows.items() if user_id in expected_rows} == expected_rows
    count, total, average = stored(movie.pk)
    assert (count, total, average) == recounted(movie.pk)
    assert count == len(rows)
    assert total == sum(rows.values())
    status, body = call(server, "GET", f"/api/v1/movies/{movie.pk}/")
    assert status == 200
    assert body["rating"] == {"average": average, "count": count}


@pytest.mark.usefixtures("transactional_db")
def test_rating_storm_keeps_the_aggregate_exact(live_gunicorn: LiveServer) -> None:
    movie = MovieFactory.create()
    raters = make_raters(RATERS)
    scripted, racers = raters[:-RACERS], raters[-RACERS:]

    run_together(
        [
            *(rating_task(live_gunicorn, movie.pk, rater) for rater in scripted),
            *(task for rater in racers for task in racing_tasks(live_gunicorn, movie.pk, rater)),
        ]
    )

    assert_exact(live_gunicorn, movie, scripted)
    after = Movie.objects.get(pk=movie.pk)
    assert (after.version, after.updated_at) == (movie.version, movie.updated_at)
    requests = sum(len(rater.steps) for rater in scripted) + RACERS * 3 * 6
    print(f"\n{requests} rating requests from {RATERS} users; aggregate {stored(movie.pk)}")


@pytest.mark.usefixtures("transactional_db")
def test_curators_versioned_patches_succeed_during_a_rating_storm(live_gunicorn: LiveServer) -> None:
    movie = MovieFactory.create()
    raters = make_raters(RATERS)
    curator = User.objects.create(username="storm-curator")
    curator.groups.add(curators_group())
    _, curator_token = AuthToken.objects.create(user=curator)
    patches: list[tuple[int, int, int]] = []  # (status, version sent, version answered)

    def curate() -> None:
        """Read the movie and PATCH it with the version just read, several times while ratings land."""
        path = f"/api/v1/movies/{movie.pk}/"
        for round_ in range(5):
            _, current = call(live_gunicorn, "GET", path)
            status, body = call(
                live_gunicorn, "PATCH", path, curator_token, {"title": f"Storm {round_}", "version": current["version"]}
            )
            patches.append((status, current["version"], body.get("version", -1)))

    scripted, racers = raters[:-RACERS], raters[-RACERS:]

    run_together(
        [
            curate,
            *(rating_task(live_gunicorn, movie.pk, rater) for rater in scripted),
            *(task for rater in racers for task in racing_tasks(live_gunicorn, movie.pk, rater)),
        ]
    )

    assert [status for status, _, _ in patches] == [200] * 5, patches
    assert all(answered == sent + 1 for _, sent, answered in patches), patches
    assert Movie.objects.get(pk=movie.pk).version == movie.version + 5
    assert Movie.objects.get(pk=movie.pk).title == "Storm 4"
    assert_exact(live_gunicorn, movie, scripted)


@pytest.mark.usefixtures("transactional_db")
def test_concurrent_registrations_of_one_email_create_one_account(live_gunicorn: LiveServer) -> None:
    results: list[tuple[int, dict[str, Any]]] = []

    def register(index: int) -> Callable[[], None]:
        body = {"username": f"twin{index}", "email": "Twin@example.com", "password": "same-email-different-9"}
        return lambda: results.append(call(live_gunicorn, "POST", "/api/v1/users/", body=body))

    run_together([register(i) for i in range(6)])

    assert sorted(status for status, _ in results) == [201] + [400] * 5
    assert all("email" in body["errors"] for status, body in results if status == 400)
    assert User.objects.filter(email__iexact="twin@example.com").count() == 1


@pytest.mark.usefixtures("transactional_db")
def test_deleting_a_movie_during_a_rating_storm_takes_its_ratings_with_it(live_gunicorn: LiveServer) -> None:
    movie = MovieFactory.create()
    raters = make_raters(RATERS)
    curator = User.objects.create(username="storm-curator")
    curator.groups.add(curators_group())
    _, curator_token = AuthToken.objects.create(user=curator)
    deleted: list[int] = []
    path = f"/api/v1/movies/{movie.pk}/rating/"

    def rate_until_gone(rater: Rater) -> Callable[[], None]:
        def task() -> None:
            for score in itertools.cycle(range(1, 11)):
                status, _ = call(live_gunicorn, "PUT", path, rater.token, {"score": score})
                assert status in {200, 201, 404}, status
                if status == 404 or (deleted and deleted[0] != 204):
                    return

        return task

    def delete_midway() -> None:
        # Wait until the storm is under way (some ratings exist), then delete the movie.
        try:
            while Movie.objects.filter(pk=movie.pk, rating_count__lt=RATERS // 2).exists():
                time.sleep(0.01)
        finally:
            connection.close()  # this thread's own connection
        deleted.append(call(live_gunicorn, "DELETE", f"/api/v1/movies/{movie.pk}/", curator_token)[0])

    run_together([delete_midway, *(rate_until_gone(rater) for rater in raters)])

    assert deleted == [204]
    assert not Movie.objects.filter(pk=movie.pk).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM movies_rating WHERE movie_id = %s", [movie.pk])
        assert cursor.fetchone() == (0,)
