"""Read replicas against a real streaming replica (pg_cluster) and live gunicorns (docs/replicas.md).

Two servers on the same primary, replica and Redis: `lenient` (REPLICA_MAX_LAG_MS one hour: a paused replica still
serves anonymous reads) and `strict` (100 ms: a paused replica is soon skipped). Replay is paused to make lag.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from conftest import LiveServer, start_gunicorn
from movieapi import replicas
from movieapi.tests.conftest import RedisServer, manage_on
from movieapi.tests.pg_cluster import PgCluster, PgServer
from movieapi.tests.test_faults import Answer, call, wait_for
from movieapi.tests.test_settings_env import manage, new_key
from movies.models import Movie

pytestmark = [pytest.mark.live, pytest.mark.slow]

PASSWORD = "correct-horse-battery-staple-7"


@dataclass
class Stack:
    cluster: PgCluster
    lenient: LiveServer
    strict: LiveServer
    token: str  # a curator's
    env: dict[str, str]  # the servers' database, replica and Redis
    folder: Path

    @contextlib.contextmanager
    def own_server(self) -> Iterator[LiveServer]:
        """A lenient server for a test that stops the replica: the shared ones never see it fail, so no worker of
        theirs leaves it alone for a while after (a failed replica is skipped for 2 s and more)."""
        server = start_gunicorn(self.folder, workers=3, env={**self.env, "REPLICA_MAX_LAG_MS": "3600000"})
        try:
            yield server
        finally:
            server.stop()

    @property
    def primary(self) -> PgServer:
        return self.cluster.servers[0]

    @property
    def replica(self) -> PgServer:
        return self.cluster.servers[1]

    def caught_up(self) -> None:
        """The replica runs, replays, and has replayed everything the primary wrote."""
        if not self.replica.running:
            self.cluster.restart(self.replica)
        self.replica.resume_replay()
        self.replica.wait_replayed(self.primary.current_lsn())


@pytest.fixture(scope="module")
def stack(
    replica_cluster: PgCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    primary, replica = replica_cluster.servers
    env = {
        "DATABASE_URL": primary.url("movieapi"),
        "DATABASE_REPLICA_URLS": replica.url("movieapi"),
        "REDIS_URL": redis_server.url,
    }
    manage_on(primary.url("movieapi"), "create_curator", "replica-curator", "--password", PASSWORD)
    folder = tmp_path_factory.mktemp("replicas")
    servers: list[LiveServer] = []
    try:
        servers.append(start_gunicorn(folder, workers=3, env={**env, "REPLICA_MAX_LAG_MS": "3600000"}))
        servers.append(start_gunicorn(folder, workers=2, env={**env, "REPLICA_MAX_LAG_MS": "100"}))
        login = call(servers[0].url, "POST", "/api/v1/tokens/", {"username": "replica-curator", "password": PASSWORD})
        assert login.status == 201, login
        yield Stack(replica_cluster, servers[0], servers[1], login.json()["token"], env, folder)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    """The stack with its replica caught up before and after the test (which may pause or stop it)."""
    stack.caught_up()
    yield stack
    stack.caught_up()


# ---- helpers ---------------------------------------------------------------------------------------------------


def create_movie(stack: Stack, title: str) -> dict[str, Any]:
    answer = call(stack.lenient.url, "POST", "/api/v1/movies/", {"title": title, "year": 2001}, token=stack.token)
    assert answer.status == 201, answer
    movie: dict[str, Any] = answer.json()
    return movie


def patch_runtime(stack: Stack, movie: dict[str, Any], runtime: int) -> Answer:
    body = {"runtime": runtime, "version": movie["version"]}
    answer = call(stack.lenient.url, "PATCH", f"/api/v1/movies/{movie['id']}/", body, token=stack.token)
    assert answer.status == 200, answer
    return answer


def metric(server: LiveServer, name: str, **labels: str) -> float:
    """The value of one series of the server's /metrics (all workers), 0 if it has not appeared yet."""
    text = call(server.url, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def versions_seen(server: LiveServer, path: str, times: int, token: str = "") -> set[int]:
    """The versions of a movie that `times` GETs (spread over the server's workers) answered; each must be 200."""
    seen = set()
    for _ in range(times):
        answer = call(server.url, "GET", path, token=token)
        assert answer.status == 200, answer
        seen.add(answer.json()["version"])
    return seen


# ---- read-your-writes ------------------------------------------------------------------------------------------


def test_a_curator_reads_its_own_write_while_an_anonymous_reader_reads_the_paused_replica(live: Stack) -> None:
    movie = create_movie(live, "Read Your Writes")
    path = f"/api/v1/movies/{movie['id']}/"
    live.caught_up()
    live.replica.pause_replay()
    behind_before = metric(live.lenient, "movieapi_replica_skipped_total", reason="behind_caller")
    replica_reads_before = metric(live.lenient, "movieapi_db_reads_total", target="replica")

    patch_runtime(live, movie, 111)  # version 2, on the primary only: the replica does not replay it

    assert versions_seen(live.lenient, path, 9, token=live.token) == {2}  # the writer: always its write
    assert versions_seen(live.lenient, path, 9) == {1}  # anyone else: the replica's copy, within the lag bound
    assert metric(live.lenient, "movieapi_replica_skipped_total", reason="behind_caller") >= behind_before + 9
    assert metric(live.lenient, "movieapi_db_reads_total", target="replica") >= replica_reads_before + 9

    live.replica.resume_replay()
    live.replica.wait_replayed(live.primary.current_lsn())
    assert versions_seen(live.lenient, path, 6) == {2}


def test_lists_search_feed_and_people_read_the_replica_and_the_writer_reads_its_write(live: Stack) -> None:
    movie = create_movie(live, "Zyxwvut Listed")
    live.caught_up()
    cursor = call(live.lenient.url, "GET", "/api/v1/changes/?after=now").json()["next"]
    live.replica.pause_replay()
    patch_runtime(live, movie, 95)

    search = "/api/v1/movies/?search=Zyxwvut"
    anonymous = call(live.lenient.url, "GET", search).json()["results"]
    curator = call(live.lenient.url, "GET", search, token=live.token).json()["results"]
    assert [(m["id"], m["version"]) for m in anonymous] == [(movie["id"], 1)]
    assert [(m["id"], m["version"]) for m in curator] == [(movie["id"], 2)]

    feed = f"/api/v1/changes/?after={cursor}"
    anonymous_feed = call(live.lenient.url, "GET", feed).json()["results"]
    curator_feed = call(live.lenient.url, "GET", feed, token=live.token).json()["results"]
    assert anonymous_feed == []  # the replica has not replayed the PATCH: nothing new yet
    assert [(c["movie"], c["version"]) for c in curator_feed] == [(movie["id"], 2)]

    for path in ("/api/v1/people/?search=nobody", "/api/v1/genres/", "/api/v1/movies/?ordering=-year&page_size=3"):
        assert call(live.lenient.url, "GET", path).status == 200


def test_if_none_match_naming_a_newer_version_than_the_replica_holds_is_answered_from_the_primary(
    live: Stack,
) -> None:
    movie = create_movie(live, "Conditional Reader")
    path = f"/api/v1/movies/{movie['id']}/"
    live.caught_up()
    live.replica.pause_replay()
    patch_runtime(live, movie, 123)
    newest = call(live.lenient.url, "GET", path, token=live.token)  # the writer reads version 2 (the primary)
    assert newest.json()["version"] == 2
    etag = newest.headers["etag"]

    holds_newest: dict[str, Any] = {"If-None-Match": etag}
    holds_unknown: dict[str, Any] = {"If-None-Match": '"a-tag-nobody-has"'}
    for _ in range(6):  # an anonymous client that holds version 2's ETag is told it is current, never given v1
        answer = call(live.lenient.url, "GET", path, **holds_newest)
        assert answer.status == 304, answer
        answer = call(live.lenient.url, "GET", path, **holds_unknown)
        assert (answer.status, answer.json()["version"]) == (200, 2)  # an unknown tag: the primary decides
    assert versions_seen(live.lenient, path, 3) == {1}  # while an unconditional GET still reads the replica


# ---- lag, a stopped replica ------------------------------------------------------------------------------------


def test_a_replica_past_the_lag_bound_is_skipped_and_readyz_says_so(live: Stack) -> None:
    movie = create_movie(live, "Lagging Replica")
    path = f"/api/v1/movies/{movie['id']}/"
    live.caught_up()
    live.replica.pause_replay()
    patch_runtime(live, movie, 99)
    lag_before = metric(live.strict, "movieapi_replica_skipped_total", replica="replica_1", reason="lag")
    # The replica's lag is the time since the last transaction it replayed: past 100 ms, and past what the workers
    # last probed (at most 0.2 s old).
    time.sleep(0.5)

    assert versions_seen(live.strict, path, 6) == {2}  # anonymous, yet the primary's copy: no replica qualifies
    assert metric(live.strict, "movieapi_replica_skipped_total", replica="replica_1", reason="lag") >= lag_before + 6
    ready = call(live.strict.url, "GET", "/readyz")
    assert ready.status == 200, ready
    report = ready.json()["replicas"]["replica_1"]
    assert report["state"] == "lagging"
    assert report["lag_ms"] > 100
    # The lenient server's bound is an hour: the same replica still serves its anonymous reads.
    assert versions_seen(live.lenient, path, 3) == {1}
    assert call(live.lenient.url, "GET", "/readyz").json()["replicas"]["replica_1"]["state"] == "ok"


def test_stopping_the_replica_under_load_fails_no_read(live: Stack) -> None:
    movies = [create_movie(live, f"Under Load {n}") for n in range(3)]
    live.caught_up()
    with live.own_server() as server:
        paths = [f"/api/v1/movies/{m['id']}/" for m in movies] + ["/api/v1/movies/?page_size=5", "/api/v1/changes/"]
        unreachable_before = metric(server, "movieapi_replica_skipped_total", reason="unreachable")
        answers: list[Answer] = []
        stop = threading.Event()

        def reader(offset: int) -> None:
            n = offset
            while not stop.is_set():
                answers.append(call(server.url, "GET", paths[n % len(paths)]))
                n += 1

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(answers) >= 40, 60, "reads before the stop")
            live.replica.stop("fast")  # ends the replica's sessions, also those in the middle of a read
            count = len(answers)
            wait_for(lambda: len(answers) >= count + 80, 120, "reads after the stop")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        failed = [answer for answer in answers if answer.status != 200]
        assert not failed, failed[:3]
        assert metric(server, "movieapi_replica_skipped_total", reason="unreachable") > unreachable_before
        ready = call(server.url, "GET", "/readyz")
        assert ready.status == 200, ready
        assert ready.json()["replicas"]["replica_1"] == {"state": "unreachable", "lag_ms": None}

        # Back again: within a few seconds (DOWN_SECONDS, then a probe) anonymous reads return to it.
        live.cluster.restart(live.replica)
        before = metric(server, "movieapi_db_reads_total", target="replica")

        def reads_replica_again() -> bool:
            call(server.url, "GET", paths[0])
            return metric(server, "movieapi_db_reads_total", target="replica") > before

        wait_for(reads_replica_again, 30, "reads to return to the restarted replica")


def test_a_replica_dying_in_the_middle_of_a_read_leaves_the_read_to_the_primary(live: Stack) -> None:
    movie = create_movie(live, "Mid-Request")
    path = f"/api/v1/movies/{movie['id']}/"
    live.caught_up()
    with live.own_server() as server:
        unreachable_before = metric(server, "movieapi_replica_skipped_total", reason="unreachable")
        answers: list[Answer] = []
        with psycopg.connect(live.primary.url("movieapi")) as holder:
            # An ACCESS EXCLUSIVE lock is replayed on the replica: a read of the table there waits until the lock's
            # transaction ends on the primary. So the read is caught in the middle, on the replica, as long as we like.
            holder.execute("LOCK TABLE movies_movie IN ACCESS EXCLUSIVE MODE")
            locks = "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = %s::regclass"
            wait_for(
                lambda: live.replica.value(locks, ["movies_movie"], dbname="movieapi"),
                30,
                "the replica to replay the lock",
            )
            reader = threading.Thread(target=lambda: answers.append(call(server.url, "GET", path)))
            reader.start()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = 'movieapi'"
            wait_for(lambda: live.replica.value(waiting), 30, "the read to wait on the replica")
            live.replica.stop("fast")  # ends the session the read waits in
            holder.rollback()  # the read, now answered again from the primary, may go on there
            reader.join(30)
        assert [(answer.status, answer.json()["id"]) for answer in answers] == [(200, movie["id"])]
        assert metric(server, "movieapi_replica_skipped_total", reason="unreachable") == unreachable_before + 1
        assert "its connection was lost during a request" in server.output()


# ---- writes ----------------------------------------------------------------------------------------------------


def test_write_requests_send_no_statement_to_the_replica(live: Stack) -> None:
    if "shared_preload_libraries" not in live.cluster.settings:
        pytest.skip("pg_stat_statements is not installed with these PostgreSQL binaries")
    movie = create_movie(live, "Writes Stay Home")
    live.caught_up()
    statements = (
        "SELECT query, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
        "'movieapi') AND query NOT LIKE '%pg_stat_statements%'"
    )
    live.replica.query("SELECT pg_stat_statements_reset()", dbname="movieapi")

    item = f"/api/v1/movies/{movie['id']}/"
    writes = [
        ("PATCH", item, {"runtime": 90, "version": 1}, 200),
        ("PATCH", item, {"runtime": 91, "version": 1}, 409),  # refused: stale
        ("PUT", f"{item}rating/", {"score": 7}, 201),
        ("POST", "/api/v1/movies/", {"title": "Another Write", "year": 2002}, 201),
        ("DELETE", item, None, 204),
    ]
    for method, path, body, status in writes:
        answer = call(live.lenient.url, method, path, body, token=live.token)
        assert answer.status == status, (method, path, answer)
    assert live.replica.query(statements, dbname="movieapi") == []
    assert live.primary.value("SELECT count(*) FROM movies_movie WHERE title = 'Another Write'", dbname="movieapi")

    # The statements' record works: reads do reach the replica (once no worker still leaves it alone after an earlier
    # test stopped it).
    def a_read_reaches_the_replica() -> bool:
        assert call(live.lenient.url, "GET", "/api/v1/movies/?page_size=3").status == 200
        return bool(live.replica.query(statements, dbname="movieapi"))

    wait_for(a_read_reaches_the_replica, 30, "a read to reach the replica")


# ---- configuration and the router ------------------------------------------------------------------------------


def test_without_replicas_nothing_is_installed_and_reads_use_the_primary() -> None:
    # The suite runs with DATABASE_REPLICA_URLS empty (pyproject's pytest env), as `make run` does by default.
    assert list(settings.DATABASES) == ["default"]
    assert settings.REPLICA_ALIASES == []
    assert getattr(settings, "DATABASE_ROUTERS", []) == []
    assert "movieapi.replicas.ReplicaMiddleware" not in settings.MIDDLEWARE
    assert replicas.read_alias() == "default"
    assert not replicas.reading_replica()


def test_replica_urls_become_aliases_with_the_primarys_options(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    show = (
        "from django.conf import settings as s; import json; "
        "print(json.dumps([s.DATABASES, s.DATABASE_ROUTERS, s.MIDDLEWARE, s.REPLICA_MAX_LAG_MS], default=str))"
    )
    urls = "postgres://u@replica-a:5432/movieapi, postgres://u@replica-b:5433/movieapi"
    result = manage(
        tmp_path,
        *("shell", "-v", "0", "-c", show),
        DJANGO_SECRET_KEY=new_key(),
        DATABASE_REPLICA_URLS=urls,
        REDIS_URL="redis://r:6379/0",
    )
    assert result.returncode == 0, result.stderr

    databases, routers, middleware, max_lag = json.loads(result.stdout)
    assert list(databases) == ["default", "replica_1", "replica_2"]
    assert [databases[a]["HOST"] for a in ("replica_1", "replica_2")] == ["replica-a", "replica-b"]
    for alias in ("replica_1", "replica_2"):
        replica = databases[alias]
        assert replica["TEST"]["MIRROR"] == "default"  # the test runner creates nothing on a replica
        assert replica["ENGINE"] == databases["default"]["ENGINE"] == "movieapi.postgres"
        assert replica["CONN_HEALTH_CHECKS"] is True
        assert replica["CONN_MAX_AGE"] == databases["default"]["CONN_MAX_AGE"]
        assert replica["OPTIONS"] == {**databases["default"]["OPTIONS"], "connect_timeout": 2}
    assert routers == ["movieapi.replicas.ReplicaRouter"]
    assert middleware.index("movieapi.replicas.ReplicaMiddleware") == (
        middleware.index("movieapi.metrics.MetricsMiddleware") + 1
    )
    assert max_lag == 1000


def test_replicas_without_redis_are_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    replica = "postgres://u@replica-a/movieapi"
    result = manage(tmp_path, "check", DJANGO_SECRET_KEY=new_key(), DATABASE_REPLICA_URLS=replica, REDIS_URL="")
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URLS needs REDIS_URL" in result.stderr


def test_the_router_writes_and_migrates_on_the_primary_and_reads_accounts_there() -> None:
    router = replicas.ReplicaRouter()
    assert router.db_for_write(Movie) == "default"
    assert router.db_for_read(User) == "default"  # accounts, tokens, permissions: always the primary
    assert router.db_for_read(Movie) == "default"  # outside a safe API request
    assert router.allow_migrate("default", "movies")
    assert not router.allow_migrate("replica_1", "movies")
    assert router.allow_relation(Movie(), User())
