"""Idempotency-Key against a live gunicorn with several workers on real PostgreSQL: 50 concurrent POSTs with one
key create one movie, and a worker killed in the middle of a keyed create leaves nothing a retry could replay."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.contrib.auth.models import User
from knox.models import AuthToken
from psycopg import sql

from conftest import LiveServer, live_database_url
from movieapi.tests.test_faults import lock_waiters, wait_for, worker_pids
from movies.models import Genre, Movie
from movies.tests.factories import GenreFactory, MovieFactory

pytestmark = [pytest.mark.live, pytest.mark.slow]

CLIENTS = 50
KEY = '"storm-5b0c6f9e-1d2a-4c8e-9f3b-7a6d5e4c3b2a"'


@dataclass
class Answer:
    status: int  # 0: no HTTP answer (reset, closed, timed out)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def post(base: str, path: str, body: dict[str, Any], token: str, key: str, timeout: float = 30) -> Answer:
    """One POST on a fresh connection with an Idempotency-Key; the same body bytes every time."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    except (OSError, http.client.HTTPException):
        return Answer(0)
    finally:
        conn.close()


@pytest.fixture
def curator_token(transactional_db: None) -> str:
    from conftest import curators_group

    user = User.objects.create_user("idem-curator", password="a-long-enough-password-9")
    user.groups.add(curators_group())
    return AuthToken.objects.create(user=user)[1]


def test_fifty_concurrent_posts_with_one_key_create_one_movie(live_gunicorn: LiveServer, curator_token: str) -> None:
    body = {"title": "Storm Once", "year": 2021, "runtime": 90}
    barrier = threading.Barrier(CLIENTS)
    answers: list[Answer] = [Answer(-1)] * CLIENTS

    def client(index: int) -> None:
        barrier.wait()
        answers[index] = post(live_gunicorn.url, "/api/v1/movies/", body, curator_token, KEY)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {201, 409}, (statuses, live_gunicorn.output()[-3000:])
    created = [answer for answer in answers if answer.status == 201]
    originals = [answer for answer in created if "Idempotent-Replayed" not in answer.headers]
    assert len(originals) == 1
    original = originals[0]
    for answer in created:
        assert answer.body == original.body
        for name in ("Content-Type", "Location", "ETag"):
            assert answer.headers[name] == original.headers[name]
    for answer in answers:
        if answer.status == 409:
            assert answer.json()["type"] == "urn:movieapi:problem:idempotency-key-in-flight"
            assert answer.headers["Retry-After"] == "1"
    assert list(Movie.objects.filter(title="Storm Once").values_list("id", flat=True)) == [original.json()["id"]]
    print(f"\n{CLIENTS} POSTs with one key: {dict(statuses)}, {len(created) - 1} replays, 1 movie")


@contextlib.contextmanager
def holding(dsn: str, statement: sql.Composed, params: list[Any]) -> Iterator[None]:
    """Run the block while a transaction of the test holds what the statement locks; roll it back after."""
    with psycopg.connect(dsn) as blocker:
        blocker.execute(statement, params)
        yield
        blocker.rollback()


def holding_the_genre(dsn: str, genre: Genre) -> contextlib.AbstractContextManager[None]:
    """A create naming the genre then stops in its COMMIT: the foreign keys of a movie's genres are checked at commit
    (Django makes them DEFERRABLE INITIALLY DEFERRED), after its key, movie and answer are written."""
    statement = sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(sql.Identifier(Genre._meta.db_table))
    return holding(dsn, statement, [genre.pk])


def holding_the_imdb_id(dsn: str, imdb_id: str) -> contextlib.AbstractContextManager[None]:
    """A create with this imdb_id then stops inserting its movie row (the unique index waits for the test's
    uncommitted UPDATE), after it has claimed its key, inside its transaction."""
    other = MovieFactory.create(title="Holds the id")
    statement = sql.SQL("UPDATE {} SET imdb_id = %s WHERE id = %s").format(sql.Identifier(Movie._meta.db_table))
    return holding(dsn, statement, [imdb_id, other.pk])


def kill_the_worker_of(server: LiveServer, dsn: str, body: dict[str, Any], token: str) -> tuple[Answer, int]:
    """POST the body with KEY, SIGKILL the worker once its request waits on the test's lock: the client's answer
    and the worker's pid."""
    answers: list[Answer] = []
    thread = threading.Thread(target=lambda: answers.append(post(server.url, "/api/v1/movies/", body, token, KEY)))
    thread.start()
    (victim,) = wait_for(lambda: lock_waiters(dsn), 15, "the create to wait on the test's lock")
    assert victim in worker_pids(server.process.pid)
    os.kill(victim, signal.SIGKILL)
    thread.join(15)
    return answers[0], victim


def session_gone(dsn: str, pid: int) -> bool:
    """Whether the worker `pid` has no database session left (its application_name is movieapi:<pid>)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [f"movieapi:{pid}"])
        return row.fetchone() == (0,)


def test_a_worker_killed_before_the_commit_leaves_nothing_and_the_retry_creates_once(
    transactional_db: None, curator_token: str, live_server_factory: Callable[..., LiveServer]
) -> None:
    server = live_server_factory(workers=2)
    body = {"title": "Killed Once", "year": 2022, "imdb_id": "tt7654321"}
    dsn = live_database_url()
    with holding_the_imdb_id(dsn, "tt7654321"):
        answer, victim = kill_the_worker_of(server, dsn, body, curator_token)
    assert answer.status == 0  # the client saw the connection die: did it create?
    wait_for(lambda: session_gone(dsn, victim), 15, "the killed worker's session to end")
    assert not Movie.objects.filter(title="Killed Once").exists()

    retry = post(server.url, "/api/v1/movies/", body, curator_token, KEY)
    assert retry.status == 201, retry
    assert "Idempotent-Replayed" not in retry.headers  # nothing was committed, so nothing replays: it creates
    again = post(server.url, "/api/v1/movies/", body, curator_token, KEY)
    assert (again.status, again.headers.get("Idempotent-Replayed"), again.body) == (201, "true", retry.body)
    assert Movie.objects.filter(title="Killed Once").count() == 1


def test_a_worker_killed_in_its_commit_is_replayed_by_the_retry(
    transactional_db: None, curator_token: str, live_server_factory: Callable[..., LiveServer]
) -> None:
    """Killed between the commit and the answer: the movie and its answer are committed, the client got nothing."""
    server = live_server_factory(workers=2)
    genre = GenreFactory.create(slug="action")
    body = {"title": "Committed Unanswered", "year": 2022, "genres": ["action"]}
    dsn = live_database_url()
    with holding_the_genre(dsn, genre):
        answer, _ = kill_the_worker_of(server, dsn, body, curator_token)
    assert answer.status == 0
    wait_for(lambda: Movie.objects.filter(title="Committed Unanswered").exists(), 15, "the orphaned commit")

    retry = post(server.url, "/api/v1/movies/", body, curator_token, KEY)
    assert retry.status == 201, retry
    assert retry.headers["Idempotent-Replayed"] == "true"
    movie = Movie.objects.get(title="Committed Unanswered")
    assert retry.json()["id"] == movie.pk
    assert retry.json()["genres"] == ["action"]
    assert retry.headers["Location"].endswith(f"/api/v1/movies/{movie.pk}/")


def test_an_answer_lost_after_the_commit_is_replayed(
    transactional_db: None, curator_token: str, live_server_factory: Callable[..., LiveServer]
) -> None:
    """The client gives up before the answer; the create commits after all. Its retry gets that answer."""
    server = live_server_factory(workers=2)
    genre = GenreFactory.create(slug="drama")
    body = {"title": "Lost Answer", "year": 2023, "genres": ["drama"]}
    dsn = live_database_url()
    with holding_the_genre(dsn, genre):
        answers: list[Answer] = []
        thread = threading.Thread(
            target=lambda: answers.append(post(server.url, "/api/v1/movies/", body, curator_token, KEY, timeout=1))
        )
        thread.start()
        wait_for(lambda: lock_waiters(dsn), 15, "the create to wait in its commit")
        thread.join(15)
    assert [answer.status for answer in answers] == [0]
    wait_for(lambda: Movie.objects.filter(title="Lost Answer").exists(), 15, "the create to commit")

    retry = post(server.url, "/api/v1/movies/", body, curator_token, KEY)
    assert retry.status == 201, retry
    assert retry.headers["Idempotent-Replayed"] == "true"
    movie = Movie.objects.get(title="Lost Answer")
    assert retry.json()["id"] == movie.pk
