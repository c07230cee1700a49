"""A curator's PATCH in process, with the history's triggers and without them, alternately (docs/history.md#cost).

    python bench/history_patch.py [--movies 2000] [--requests 1500] [--rounds 3] [--database movieapi_bench_history]

Creates its own database on the DATABASE_URL server (anew each run), generates a catalogue, then sends PATCHes of
`runtime` with the body's `version` through DRF's test client (the whole Django stack, no HTTP server) to one movie
after another: each round measures both ways, the triggers dropped and installed again in between. Prints
requests/s per round and the median ratio (target: with history >= 0.85 of without). Throttles on Redis
(REDIS_URL, default redis://127.0.0.1:6379/0, under its own key prefix), as `make bench` runs them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench_db import (  # bench/bench_db.py: this script runs as `python bench/...`
    ROOT,
    history_size,
    migrate,
    own_database,
    set_history,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="movieapi_bench_history")
    args = parser.parse_args()

    url = own_database(args.database, fresh=True)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY")
        or "bench-secret-key-not-for-production-0123456789abcdefghij",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_HTTPS": "0",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "THROTTLE_KEY_PREFIX": "movieapi:bench-history:",
        "THROTTLE_USER_RATE": "100000000/min",
        "THROTTLE_GLOBAL_RATE": "100000000/s",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "movieapi.settings",
    }
    migrate(env)
    subprocess.run(
        [sys.executable, "manage.py", "generate_movies", "--count", str(args.movies), "--seed", "3"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from movies.models import Movie

    curator = User.objects.create_user("bench-history-curator")  # a token, no password
    curator.groups.add(Group.objects.get(name="curators"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AuthToken.objects.create(user=curator)[1]}")
    versions = dict(Movie.objects.values_list("id", "version"))
    ids = sorted(versions)
    sent = 0

    def patches(count: int) -> float:
        nonlocal sent
        started = time.perf_counter()
        for _ in range(count):
            movie_id = ids[sent % len(ids)]
            body = {"runtime": 60 + sent % 120, "version": versions[movie_id]}
            response = client.patch(f"/api/v1/movies/{movie_id}/", body, format="json")
            assert response.status_code == 200, response.content
            versions[movie_id] += 1
            sent += 1
        return count / (time.perf_counter() - started)

    ratios = []
    for number in range(1, args.rounds + 1):
        rates = {}
        for on in (False, True) if number % 2 else (True, False):
            set_history(url, on=on)
            patches(100)  # warm-up: prepared statements, caches
            rates[on] = patches(args.requests)
        ratios.append(rates[True] / rates[False])
        print(f"round {number}: without history {rates[False]:,.0f} PATCH/s, with {rates[True]:,.0f} PATCH/s")
    entries, per_version = history_size(url)
    print(f"median ratio with/without: {statistics.median(ratios):.2f} (target >= 0.85)")
    print(f"history: {entries:,} versions, {per_version:,.0f} bytes per version with indexes")


if __name__ == "__main__":
    main()
