"""History through a real gunicorn with several workers: `changes_since` on the wire, and concurrent reverts."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from knox.models import AuthToken

from conftest import LiveServer, curators_group
from movies.history import snapshot_diff
from movies.models import Movie, MovieVersion
from movies.tests.factories import MovieFactory
from movies.tests.history_recording import record
from movies.tests.test_conditional_live import send

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def auth(transactional_db: None) -> dict[str, str]:
    user = User.objects.create_user("live-history", password="a-long-enough-password-9")
    user.groups.add(curators_group())
    return {"Authorization": f"Bearer {AuthToken.objects.create(user=user)[1]}"}


def at_once(count: int, request: Any) -> list[tuple[int, Any, bytes]]:
    """`count` threads released together, each sending request(); their answers."""
    barrier = threading.Barrier(count)
    answers: list[tuple[int, Any, bytes]] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        answer = request()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_stale_writes_on_the_wire_say_what_changed_since(live_gunicorn: LiveServer, auth: dict[str, str]) -> None:
    movie: Movie = MovieFactory.create(title="Live", runtime=100)
    path = f"/api/v1/movies/{movie.pk}/"
    record(movie.pk)
    changes: list[dict[str, object]] = [{"runtime": 101}, {"title": "Live again"}]
    for version, change in enumerate(changes, start=1):
        status, _, raw = send(live_gunicorn, "PATCH", path, auth, {**change, "version": version})
        assert status == 200, raw
        record(movie.pk)
    snapshots = {entry.version: entry.snapshot for entry in MovieVersion.objects.filter(movie_id=movie.pk)}
    expected = [snapshot_diff(snapshots[version - 1], snapshots[version]) for version in (2, 3)]

    # Eight clients on four workers, all based on version 1: each 409 carries the same account of versions 2 and 3.
    answers = at_once(8, lambda: send(live_gunicorn, "PATCH", path, auth, {"overview": "x", "version": 1}))
    assert Counter(status for status, _, _ in answers) == {409: 8}
    for _, headers, raw in answers:
        assert headers["Content-Type"] == "application/problem+json"
        since = json.loads(raw)["changes_since"]
        assert [entry["changes"] for entry in since] == expected

    # The revert answers the movie and its ETag, as a GET then does.
    status, headers, raw = send(live_gunicorn, "POST", f"{path}revert/", auth, {"to_version": 1, "version": 3})
    assert status == 200, raw
    assert json.loads(raw)["runtime"] == 100
    assert send(live_gunicorn, "GET", path, {})[1]["ETag"] == headers["ETag"]


def test_concurrent_reverts_exactly_one_wins(live_gunicorn: LiveServer, auth: dict[str, str]) -> None:
    movie: Movie = MovieFactory.create(title="Storm", runtime=100)
    path = f"/api/v1/movies/{movie.pk}/"
    record(movie.pk)
    assert send(live_gunicorn, "PATCH", path, auth, {"runtime": 150, "version": 1})[0] == 200
    record(movie.pk)
    answers = at_once(8, lambda: send(live_gunicorn, "POST", f"{path}revert/", auth, {"to_version": 1, "version": 2}))
    assert Counter(status for status, _, _ in answers) == {200: 1, 409: 7}
    movie.refresh_from_db()
    assert (movie.version, movie.runtime) == (3, 100)
    assert MovieVersion.objects.filter(movie_id=movie.pk, version=3).count() == 1  # the winner's, by the triggers
    for status, _, raw in answers:
        if status == 409:
            since = json.loads(raw)["changes_since"]
            assert [entry["version"] for entry in since] == [3]
            assert since[0]["changes"] == {"runtime": {"from": 150, "to": 100}}
