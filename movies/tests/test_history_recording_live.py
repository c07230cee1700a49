"""History under load, against a real gunicorn with several workers: curators' PATCHes and PUTs racing on a few
movies, an import writing some of the same movies (and new ones) in batches, and raters at once. Afterwards every
movie's history holds each of its versions 1..current exactly once, and each version's snapshot is what any GET or
write answer showing that version said (without `rating`)."""

from __future__ import annotations

import io
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections, transaction
from knox.models import AuthToken

from conftest import LiveServer, curators_group
from movies.models import Movie, MovieVersion
from movies.tests.factories import GenreFactory, MovieFactory, PersonFactory
from movies.tests.test_concurrency_live import request

pytestmark = [pytest.mark.live, pytest.mark.slow]

MOVIES = 6
CURATORS = 10
RATERS = 4
WRITES = 12


def test_a_storm_of_writes_imports_and_ratings_leaves_gap_free_histories_equal_to_what_clients_saw(
    live_gunicorn: LiveServer, transactional_db: None, tmp_path: Path
) -> None:
    genres = [GenreFactory.create(slug=slug) for slug in ("drama", "comedy", "war")]
    people = PersonFactory.create_batch(4)
    ids = []
    for n in range(MOVIES):
        with transaction.atomic():
            movie = MovieFactory.create(
                title=f"Storm {n}",
                year=2000 + n,
                imdb_id=f"tt{9000000 + n:07d}",
                genres=[genres[0]],
                directors=[people[n % 4]],
            )
        ids.append(movie.pk)
    curator = User.objects.create_user("history-curator", password="a-long-enough-password-9")
    curator.groups.add(curators_group())
    token = AuthToken.objects.create(user=curator)[1]
    rater_tokens = [
        AuthToken.objects.create(user=User.objects.create_user(f"rater{n}", password="a-long-enough-password-9"))[1]
        for n in range(RATERS)
    ]
    # The import: new overviews and casts for the storm's movies (matched by IMDb id), and new movies, in small
    # batches so that it commits many times during the storm.
    rows = [
        {
            "title": f"Storm {n}",
            "year": 2000 + n,
            "imdb_id": f"tt{9000000 + n:07d}",
            "overview": f"Imported {n}.",
            "cast": [{"name": f"Imported Actor {n}", "character": "Lead"}],
        }
        for n in range(MOVIES)
    ] + [{"title": f"New {n}", "year": 1990, "genres": ["comedy"]} for n in range(40)]
    path = tmp_path / "storm.json"
    path.write_text(json.dumps(rows))

    seen: list[dict[str, Any]] = []  # every representation a client was shown
    lock = threading.Lock()
    errors: list[str] = []

    def show(body: dict[str, Any]) -> None:
        with lock:
            seen.append(body)

    def curator_writes(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(WRITES):
            movie_id = rng.choice(ids)
            status, body = request(live_gunicorn, "GET", f"/api/v1/movies/{movie_id}/", token)
            if status != 200:
                errors.append(f"GET {status} {body}")
                continue
            show(body)
            if rng.random() < 0.7:
                change: dict[str, Any] = {"runtime": rng.randint(60, 200), "version": body["version"]}
                status, answer = request(live_gunicorn, "PATCH", f"/api/v1/movies/{movie_id}/", token, change)
            else:
                change = {
                    "title": body["title"],
                    "year": body["year"],
                    "version": body["version"],
                    "genres": rng.sample(["drama", "comedy", "war"], 2),
                    "cast": [{"person": rng.choice(people).pk, "character": f"C{seed}"}],
                }
                status, answer = request(live_gunicorn, "PUT", f"/api/v1/movies/{movie_id}/", token, change)
            if status == 200:
                show(answer)
                if answer["version"] != body["version"] + 1:  # each accepted write is exactly one version
                    errors.append(f"write of version {body['version']} answered version {answer['version']}")
            elif status != 409:
                errors.append(f"write {status} {answer}")

    def rater(index: int) -> None:
        rng = random.Random(100 + index)
        for _ in range(WRITES):
            status, answer = request(
                live_gunicorn,
                "PUT",
                f"/api/v1/movies/{rng.choice(ids)}/rating/",
                rater_tokens[index],
                {"score": rng.randint(1, 10)},
            )
            if status not in (200, 201):
                errors.append(f"rating {status} {answer}")

    def importer() -> None:
        try:
            call_command("import_movies", str(path), "--batch-size", "3", stdout=io.StringIO(), stderr=io.StringIO())
        except Exception as exc:  # reported with the others below
            errors.append(f"import {exc!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=curator_writes, args=(n,)) for n in range(CURATORS)]
    threads += [threading.Thread(target=rater, args=(n,)) for n in range(RATERS)]
    threads.append(threading.Thread(target=importer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, (errors[:5], live_gunicorn.output()[-3000:])

    current = dict(Movie.objects.values_list("id", "version"))
    assert len(current) == MOVIES + 40
    recorded: dict[int, list[int]] = {}
    snapshots = {}
    for entry in MovieVersion.objects.order_by("movie_id", "version"):
        recorded.setdefault(entry.movie_id, []).append(entry.version)
        snapshots[entry.movie_id, entry.version] = entry.snapshot
    assert recorded == {movie_id: list(range(1, version + 1)) for movie_id, version in current.items()}
    assert sum(current[movie_id] for movie_id in ids) > 2 * MOVIES  # the storm did write
    assert len(seen) > CURATORS * WRITES
    for body in seen:
        shown = {name: value for name, value in body.items() if name != "rating"}
        assert snapshots[body["id"], body["version"]] == shown
    actors = {json.dumps(entry.actor, sort_keys=True) for entry in MovieVersion.objects.all()}
    assert json.dumps({"kind": "import", "source": "json"}, sort_keys=True) in actors
    assert json.dumps({"id": curator.pk, "kind": "user", "username": curator.username}, sort_keys=True) in actors
