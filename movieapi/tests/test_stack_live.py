"""The multi-host stack, run here: nginx with deploy/nginx.conf, three API hosts, PostgreSQL primary and replica,
and Redis, each in a network namespace of its own on one bridge, driven from a client namespace (`make stack-test`).

    client 10.213.0.2, .3 -> proxy .10 (Debian's nginx, the shipped file) -> api1..3 .11-.13 (gunicorn, 2 workers)
                                                   -> primary .20, replica .21 (PostgreSQL), redis .30

The proxy resolves `api` from its own /etc/hosts (`ip netns exec` mounts /etc/netns/<ns>/hosts over it) to the
three hosts, as Docker's DNS does in compose. Every claim is checked on counts and outcomes, never on durations:
who answered a request comes from nginx's access log (the request id the client sent, `$upstream_addr`).
docs/operations.md, "The proxy" and "The stack test", says what is proven and how to run it.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from conftest import ROOT
from movieapi.tests import netns
from movieapi.tests.netns import Host, Network
from movieapi.tests.pg_cluster import PgCluster, PgServer, PgUnavailable, find_bindir
from movieapi.tests.test_faults import Answer, call, wait_for, worker_pids

pytestmark = [pytest.mark.live, pytest.mark.slow]

NET = "10.213.0"
PROXY = f"{NET}.10"
API_HOSTS = {"api1": f"{NET}.11", "api2": f"{NET}.12", "api3": f"{NET}.13"}
API_PORT = 8000
CLIENT_A, CLIENT_B = f"{NET}.2", f"{NET}.3"
REDIS_ADDRESS = f"{NET}.30"
CURATOR = ("stack-curator", "a-stack-curator-password-1")
MOVIES = "/api/v1/movies/"

# Rates no test meets, except where a test sets its own (LIMITED).
OPEN_RATES = {
    "THROTTLE_ANON_RATE": "1000000/min",
    "THROTTLE_USER_RATE": "1000000/min",
    "THROTTLE_AUTH_RATE": "1000000/min",
    "THROTTLE_GLOBAL_RATE": "1000000/s",
}
ANON_LIMIT, GLOBAL_LIMIT = 20, 90
LIMITED = {**OPEN_RATES, "THROTTLE_ANON_RATE": f"{ANON_LIMIT}/min", "THROTTLE_GLOBAL_RATE": f"{GLOBAL_LIMIT}/min"}


# ---- requests from the client namespace --------------------------------------------------------


_request_ids = itertools.count()


def request_id(kind: str) -> str:
    """An id unique in this run, which nginx logs with the upstream that answered."""
    return f"{kind}-{os.getpid()}-{next(_request_ids)}"


def send(
    method: str,
    path: str,
    body: Any = None,
    *,
    rid: str,
    token: str = "",
    source: str = CLIENT_A,
    host: str = PROXY,
    port: int = 80,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request from source (call it from a thread in the client namespace), identified by rid in nginx's log."""
    base = f"http://{host}:{port}"
    return call(
        base, method, path, body, token=token, timeout=60, source=source, **{"X-Request-ID": rid, **(headers or {})}
    )


def burst(count: int, send_one: Callable[[int], Answer]) -> list[Answer]:
    """count requests released together from count threads (run it in the client namespace)."""
    barrier = threading.Barrier(count)
    answers: list[Answer | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait(60)
        answers[index] = send_one(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer or Answer(0) for answer in answers]


# ---- the stack ---------------------------------------------------------------------------------


@dataclass
class ApiHost:
    """gunicorn movieapi.wsgi -c gunicorn.conf.py in one namespace, started and stopped as a test needs."""

    network: Network
    host: Host
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def upstream(self) -> str:
        return f"{self.host.address}:{API_PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: dict[str, str]) -> None:
        """Start gunicorn (without waiting: wait_ready)."""
        metrics = self.network.folder / f"metrics-{self.host.role}"
        metrics.mkdir(exist_ok=True)
        self.env = env
        self.process = self.network.spawn(
            self.host,
            [sys.executable, "-m", "gunicorn", "movieapi.wsgi", "-c", "gunicorn.conf.py"],
            env={**env, "HOST": self.host.address, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
            log=self.network.folder / f"{self.host.role}.log",
            cwd=ROOT,
        )

    def wait_ready(self, client: Host) -> None:
        """Wait until this host answers /healthz directly (not through the proxy)."""

        def healthy() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.host.role} exited:\n{self.output()[-3000:]}")
            answer = send("GET", "/healthz", rid=request_id("health"), host=self.host.address, port=API_PORT)
            return answer.status == 200

        self.network.call(client, lambda: wait_for(healthy, 60, f"{self.host.role} to answer /healthz"))

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops a host: gunicorn stops taking connections and finishes the rest."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def kill(self) -> None:
        """SIGKILL the master and its workers together: the host is gone, mid-request."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        wait_for(lambda: not netns.namespace_pids(self.host.netns), 30, f"{self.host.role}'s processes to die")

    def output(self) -> str:
        return (self.network.folder / f"{self.host.role}.log").read_text(errors="replace")


@dataclass
class Stack:
    network: Network
    cluster: PgCluster
    primary: PgServer
    replica: PgServer
    client: Host
    proxy: Host
    apis: list[ApiHost]
    base_env: dict[str, str]
    nginx_conf: Path
    nginx: subprocess.Popen[bytes] | None = None
    token: str = ""
    rotation: list[ApiHost] = field(default_factory=list)  # the hosts the proxy's `api` resolves to

    @property
    def access_log(self) -> Path:
        return self.network.folder / "nginx" / "access.log"

    def api(self, role: str) -> ApiHost:
        return next(api for api in self.apis if api.host.role == role)

    def configure(self, rates: dict[str, str]) -> None:
        """Every API host running with these rates and in the proxy's rotation: (re)start those that are down or
        run with other rates."""
        env = {**self.base_env, **rates}
        changed = [api for api in self.apis if not api.running or api.env != env]
        for api in changed:
            if api.running:
                api.stop()
            api.start(env)
        for api in changed:
            api.wait_ready(self.client)
        if changed or self.rotation != self.apis:
            self.route_to(self.apis)  # a reload also forgets which hosts nginx saw fail

    def route_to(self, apis: list[ApiHost]) -> None:
        """Make `api` resolve to these hosts and reload nginx, as an operator scales (docs/operations.md); return
        once the workers of the previous configuration have finished their requests and exited."""
        self.network.set_etc_hosts(self.proxy, {"api": [api.host.address for api in apis]})
        self.rotation = list(apis)
        if self.nginx is None:
            return
        master = self.nginx.pid
        before = worker_pids(master)
        reload = ["nginx", "-c", str(self.nginx_conf), "-s", "reload"]
        subprocess.run(self.proxy.command(reload), check=True, capture_output=True, timeout=30)
        wait_for(lambda: worker_pids(master).isdisjoint(before), 60, "nginx's old workers to finish their requests")

    def in_client(self, function: Callable[[], Any]) -> Any:
        return self.network.call(self.client, function)

    def upstreams(self) -> dict[str, tuple[int, list[str]]]:
        """nginx's access log: request id -> (status answered, upstreams tried in order)."""
        logged = {}
        for line in self.access_log.read_text().splitlines():
            rid, status, upstreams = line.split(" ", 2)
            logged[rid] = (int(status), [upstream.strip() for upstream in upstreams.strip('"').split(",")])
        return logged

    def flush_counters(self) -> None:
        """Every rate-limit window starts afresh (all counters live in this Redis)."""
        self.in_client(lambda: redis.Redis(host=REDIS_ADDRESS).flushdb())

    def anon_buckets(self) -> set[str]:
        """The client addresses the API counted anonymous requests against (keys prefix + anon:window:bucket)."""
        keys = self.in_client(lambda: redis.Redis(host=REDIS_ADDRESS).keys("*anon:*"))
        return {key.decode().rsplit(":", 1)[1] for key in keys}


def _unavailable() -> str | None:
    reason = netns.unavailable()
    if reason is None and shutil.which("nginx") is None:
        reason = "nginx is not installed (make install-nginx: Debian's nginx)"
    if reason is None and shutil.which("redis-server") is None:
        reason = "redis-server is not installed (make install-redis)"
    if reason is None:
        try:
            find_bindir()
        except PgUnavailable as error:
            reason = str(error)
    return reason


# What the nginx image's /etc/nginx/nginx.conf does around conf.d/default.conf, plus a log of who answered.
NGINX_MAIN = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format stack '$http_x_request_id $status "$upstream_addr"';
    access_log {folder}/access.log stack;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    include {shipped};
}}
"""


def _build(network: Network) -> Stack:
    client = network.add_host("client", CLIENT_A, CLIENT_B)
    proxy = network.add_host("proxy", PROXY, etc_hosts={})
    apis = [ApiHost(network, network.add_host(role, address)) for role, address in API_HOSTS.items()]
    db_host = network.add_host("primary", f"{NET}.20")
    replica_host = network.add_host("replica", f"{NET}.21")
    redis_host = network.add_host("redis", REDIS_ADDRESS)

    network.spawn(
        redis_host,
        ["redis-server", "--bind", REDIS_ADDRESS, "--protected-mode", "no", "--save", "", "--appendonly", "no"],
        log=network.folder / "redis.log",
        cwd=network.folder,
    )
    cluster = PgCluster()
    network.own_folder(cluster.folder)
    primary = cluster.start_primary(host=db_host.address, port=5432, prefix=db_host.command([]))
    primary.query("CREATE DATABASE movieapi")
    replica = cluster.start_replica(host=replica_host.address, port=5432, prefix=replica_host.command([]))

    base_env = {
        **os.environ,
        "DATABASE_URL": primary.url("movieapi"),
        "DATABASE_REPLICA_URLS": replica.url("movieapi"),
        "REDIS_URL": f"redis://{REDIS_ADDRESS}:6379/0",
        "DJANGO_ALLOWED_HOSTS": PROXY,
        "TRUSTED_PROXY_COUNT": "1",
        "PORT": str(API_PORT),
        "WEB_CONCURRENCY": "2",
        "THROTTLE_KEY_PREFIX": "stack:",
        # A replica whose replay a test paused keeps serving anonymous reads, so their answers show who served them.
        "REPLICA_MAX_LAG_MS": "600000",
    }
    for command in (["migrate", "--no-input", "-v0"], ["create_curator", CURATOR[0], "--password", CURATOR[1]]):
        argv = apis[0].host.command([sys.executable, "manage.py", *command])
        done = subprocess.run(argv, env=base_env, cwd=ROOT, timeout=180, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed:\n{done.stdout}{done.stderr}")

    nginx_folder = network.folder / "nginx"
    nginx_folder.mkdir()
    nginx_conf = nginx_folder / "nginx.conf"
    nginx_conf.write_text(NGINX_MAIN.format(folder=nginx_folder, shipped=ROOT / "deploy" / "nginx.conf"))
    # What an operator lists next to nginx.conf: the names of DJANGO_ALLOWED_HOSTS.
    (nginx_folder / "movieapi-server-names.conf").write_text(f"server_name {PROXY};\n")
    stack = Stack(network, cluster, primary, replica, client, proxy, apis, base_env, nginx_conf)
    stack.configure(OPEN_RATES)
    stack.nginx = network.spawn(
        proxy, ["nginx", "-c", str(nginx_conf), "-g", "daemon off;"], log=nginx_folder / "nginx.out"
    )
    login = {"username": CURATOR[0], "password": CURATOR[1]}

    def log_in() -> Answer | None:
        answer = send("POST", "/api/v1/tokens/", login, rid=request_id("login"))
        return answer if answer.status == 201 else None

    stack.token = stack.in_client(lambda: wait_for(log_in, 30, "a log-in through the proxy")).json()["token"]
    return stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail(f"the stack test must run in CI as root, but: {reason}")
        pytest.skip(reason)
    netns.remove_leftovers()
    network = Network(NET)
    cluster: PgCluster | None = None
    try:
        built = _build(network)
        cluster = built.cluster
        yield built
    finally:
        if cluster is not None:
            cluster.close()
        network.close()


# ---- load --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # read, create, patch, resync
    rid: str
    status: int
    started: int  # the load's mark when the request was sent ...
    ended: int  # ... and when its answer (or failure) came

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Load:
    """Readers (anonymous GETs) and writers (a curator creating a movie, then PATCHing it) through the proxy, until
    stopped. A mark() is a numbered moment; every outcome says between which marks it was in flight."""

    stack: Stack
    movie_ids: list[int]
    readers: int = 4
    writers: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    acknowledged: list[tuple[int, int, str]] = field(default_factory=list)  # movie id, version, title
    _mark: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        network, client = self.stack.network, self.stack.client
        self._threads = [network.thread(client, self._read, index) for index in range(self.readers)]
        self._threads += [network.thread(client, self._write, index) for index in range(self.writers)]
        self.wait_for_more(20)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)

    def mark(self) -> int:
        with self._lock:
            self._mark += 1
            return self._mark

    def wait_for_more(self, count: int) -> None:
        """Wait until count more requests have been answered (the load is flowing)."""
        target = len(self.outcomes) + count
        wait_for(lambda: len(self.outcomes) >= target, 60, f"{count} more requests")

    def _send(self, kind: str, method: str, path: str, body: Any = None, token: str = "") -> Answer:
        rid = request_id(kind)
        started = self._mark
        answer = send(method, path, body, rid=rid, token=token)
        with self._lock:
            self.outcomes.append(Outcome(kind, rid, answer.status, started, self._mark))
        return answer

    def _read(self, index: int) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            movie = self.movie_ids[(index + n) % len(self.movie_ids)]
            self._send("read", "GET", f"{MOVIES}{movie}/" if n % 2 else f"{MOVIES}?page_size=5")

    def _write(self, index: int) -> None:
        token = self.stack.token
        movie: dict[str, Any] | None = None
        for n in itertools.count():
            if self._stop.is_set():
                return
            title = f"stack-{os.getpid()}-w{index}-{n}"
            if movie is None:
                answer = self._send("create", "POST", MOVIES, {"title": title, "year": 2001}, token)
            else:
                change = {"version": movie["version"], "title": title}
                answer = self._send("patch", "PATCH", f"{MOVIES}{movie['id']}/", change, token)
            if answer.status in (200, 201):
                movie = answer.json()
                with self._lock:
                    self.acknowledged.append((movie["id"], movie["version"], movie["title"]))
            elif movie is not None:  # the outcome is unknown (or the version moved): read where the movie stands
                fresh = self._send("resync", "GET", f"{MOVIES}{movie['id']}/", token=token)
                if fresh.status == 200:
                    movie = fresh.json()


def seed_movies(stack: Stack, count: int) -> list[int]:
    """count movies created by the curator and replayed by the replica, so that anonymous readers find them there."""

    def create(index: int) -> int:
        body = {"title": f"stack-seed-{index}", "year": 1990 + index}
        answer = send("POST", MOVIES, body, rid=request_id("seed"), token=stack.token)
        assert answer.status == 201, answer
        return int(answer.json()["id"])

    created: list[int] = stack.in_client(lambda: [create(index) for index in range(count)])
    stack.replica.wait_replayed(stack.primary.current_lsn())
    return created


def assert_acknowledged_writes_stored(stack: Stack, load: Load) -> None:
    """Every 2xx create and PATCH is in the primary: the version it answered, with the title it wrote."""
    recorded = {
        (movie_id, version, title)
        for movie_id, version, title in stack.primary.query(
            "SELECT movie_id, version, snapshot->>'title' FROM movies_movieversion", dbname="movieapi"
        )
    }
    missing = set(load.acknowledged) - recorded
    assert not missing, f"{len(missing)} acknowledged writes are not in the database: {sorted(missing)[:5]}"


# ---- the proxy ---------------------------------------------------------------------------------


def test_the_shipped_proxy_spreads_requests_over_every_address_of_api(stack: Stack) -> None:
    """nginx 1.22 runs deploy/nginx.conf as shipped, resolving `api` to the three hosts at start."""
    stack.configure(OPEN_RATES)
    rids = [request_id("spread") for _ in range(30)]
    answers = stack.in_client(lambda: [send("GET", MOVIES, rid=rid) for rid in rids])
    assert [answer.status for answer in answers] == [200] * 30
    logged = stack.upstreams()
    served = [logged[rid][1][-1] for rid in rids]
    assert {served.count(api.upstream) for api in stack.apis} == {10}  # round robin: ten each


# ---- reads on the replica -----------------------------------------------------------------------


def raw_request(head: str, address: str = PROXY) -> bytes:
    """Send a request head as written (from the client namespace) and return all the proxy answered."""
    with socket.create_connection((address, 80), timeout=20, source_address=(CLIENT_A, 0)) as sock:
        sock.sendall(head.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_the_proxy_drops_other_hosts_and_keeps_the_internal_routes_in(stack: Stack) -> None:
    """A Host outside the proxy's server names (or none) gets no answer at all (444: the connection is closed) and
    never reaches the API; the proxy's own name is served; /readyz and /metrics answer 404 through the proxy and 200
    on a host."""
    stack.configure(OPEN_RATES)
    forged = "GET /api/v1/movies/ HTTP/1.1\r\nHost: forged-host.example\r\nConnection: close\r\n\r\n"
    nameless = "GET /api/v1/movies/ HTTP/1.0\r\n\r\n"
    served = f"GET /healthz HTTP/1.1\r\nHost: {PROXY}\r\nConnection: close\r\n\r\n"
    answers = stack.in_client(lambda: [raw_request(head) for head in (forged, nameless, served)])
    assert answers[:2] == [b"", b""]
    assert answers[2].startswith(b"HTTP/1.1 200 ")
    assert not any("forged-host.example" in api.output() for api in stack.apis)

    def internal(path: str) -> list[int]:
        proxied = send("GET", path, rid=request_id("internal"))
        direct = send("GET", path, rid=request_id("internal"), host=stack.apis[0].host.address, port=API_PORT)
        return [proxied.status, direct.status]

    assert stack.in_client(lambda: [internal("/readyz"), internal("/metrics")]) == [[404, 200], [404, 200]]


# One header line every TRICKLE_SECONDS, as issue #19's attacker sent them: each such request takes a gunicorn sync
# worker for as long as it lasts, unless the proxy buffers it.
TRICKLE_SECONDS = 2


@dataclass
class SlowClients:
    """count connections to address:port from the second client address, each sending one GET's head a line at a
    time, rounds lines TRICKLE_SECONDS apart, then ending it; run() in the client namespace."""

    address: str
    port: int
    count: int
    rounds: int
    trickled: int = 0  # header lines sent on every connection so far
    statuses: list[int] = field(default_factory=list)  # each slow request's answer once complete (0: none)
    opened: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        sockets: list[socket.socket] = []
        try:
            for _ in range(self.count):
                sock = socket.create_connection((self.address, self.port), timeout=60, source_address=(CLIENT_B, 0))
                sockets.append(sock)
                sock.sendall(f"GET {MOVIES} HTTP/1.1\r\nHost: {PROXY}\r\n".encode())
            self.opened.set()
            for line in range(self.rounds):
                time.sleep(TRICKLE_SECONDS)
                for sock in sockets:
                    sock.sendall(f"X-Slow-{line}: {'x' * 20}\r\n".encode())
                self.trickled += 1
            for sock in sockets:
                sock.sendall(b"Connection: close\r\n\r\n")
            self.statuses = [self._status(sock) for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
            self.opened.set()
            self.done.set()

    @staticmethod
    def _status(sock: socket.socket) -> int:
        try:
            line = sock.makefile("rb").readline()
        except OSError:
            return 0
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


def test_slow_clients_through_the_shipped_proxy_do_not_starve_others(stack: Stack) -> None:
    """Four times as many slow connections as the three hosts have workers (2 each), trickling their headers for 10
    s: nginx holds them and passes each on only once complete, so every request of another client in the meantime
    is answered 200, and so is each slow one in the end."""
    stack.configure(OPEN_RATES)
    workers = len(stack.apis) * int(stack.base_env["WEB_CONCURRENCY"])
    slow = SlowClients(PROXY, 80, count=4 * workers, rounds=5)
    answers: list[Answer] = []
    latencies: list[float] = []

    def meanwhile() -> None:
        slow.opened.wait(60)
        while not slow.done.is_set() or not answers:
            started = time.perf_counter()
            answers.append(send("GET", MOVIES, rid=request_id("beside-slow")))
            latencies.append(time.perf_counter() - started)

    attack = stack.network.thread(stack.client, slow.run)
    stack.in_client(meanwhile)
    attack.join(120)
    assert slow.trickled == slow.rounds
    assert slow.statuses == [200] * slow.count
    assert {answer.status for answer in answers} == {200}, [a for a in answers if a.status != 200][:3]
    latencies.sort()
    print(
        f"\n{slow.count} slow clients through the proxy: {len(answers)} other requests, all 200; "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )


def test_slow_clients_straight_at_gunicorn_starve_it(stack: Stack) -> None:
    """Why gunicorn is never published: as many slow connections as one host has workers (2), and that host does not
    answer even /healthz while they last; it recovers once they end."""
    stack.configure(OPEN_RATES)
    api = stack.apis[0]
    slow = SlowClients(api.host.address, API_PORT, count=int(stack.base_env["WEB_CONCURRENCY"]), rounds=3)
    attack = stack.network.thread(stack.client, slow.run)

    def probe() -> tuple[Answer, bool]:
        slow.opened.wait(60)
        answer = call(
            f"http://{api.host.address}:{API_PORT}", "GET", "/healthz", timeout=TRICKLE_SECONDS, source=CLIENT_A
        )
        return answer, slow.done.is_set()

    starved, attack_over = stack.in_client(probe)
    attack.join(120)
    assert (starved.status, attack_over) == (0, False), starved  # no answer while the slow clients held the workers
    assert slow.trickled == slow.rounds
    api.wait_ready(stack.client)


def host_metrics(stack: Stack) -> list[list[Sample]]:
    """Each API host's /metrics, read from the host itself (the proxy does not expose it)."""

    def read(api: ApiHost) -> list[Sample]:
        answer = send("GET", "/metrics", rid=request_id("metrics"), host=api.host.address, port=API_PORT)
        assert answer.status == 200, answer
        return [sample for family in text_string_to_metric_families(answer.body.decode()) for sample in family.samples]

    return stack.in_client(lambda: [read(api) for api in stack.apis])


def counter(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(sample.value for sample in samples if sample.name == name and labels.items() <= sample.labels.items())


def test_reads_spread_over_the_replica_while_each_caller_reads_its_writes(stack: Stack) -> None:
    """With the replica's replay paused, a curator reads each of its writes on whichever host answers (its last
    write is in Redis, shared by the hosts), while anonymous readers keep reading the replica's older copy."""
    stack.configure(OPEN_RATES)
    (movie,) = seed_movies(stack, 1)
    path = f"{MOVIES}{movie}/"

    def readyz(api: ApiHost) -> Any:
        return send("GET", "/readyz", rid=request_id("ready"), host=api.host.address, port=API_PORT).json()

    replicas = [ready["replicas"] for ready in stack.in_client(lambda: [readyz(api) for api in stack.apis])]
    assert [(set(report), report["replica_1"]["state"]) for report in replicas] == [({"replica_1"}, "ok")] * 3

    def write(version: int) -> Answer:
        change = {"version": version, "title": f"stack-ryw-{version + 1}"}
        return send("PATCH", path, change, rid=request_id("ryw"), token=stack.token)

    def versions(token: str = "") -> list[int]:
        answers = [send("GET", path, rid=request_id("ryw"), token=token) for _ in range(6)]  # two per host
        assert [answer.status for answer in answers] == [200] * 6, answers
        return [answer.json()["version"] for answer in answers]

    before = host_metrics(stack)
    stack.replica.pause_replay()
    try:
        for version in (1, 2, 3):
            written = stack.in_client(functools.partial(write, version))
            assert (written.status, written.json()["version"]) == (200, version + 1)
            assert stack.in_client(lambda: versions(stack.token)) == [version + 1] * 6
            assert stack.in_client(versions) == [1] * 6  # the replica's copy: replay stopped at version 1
    finally:
        stack.replica.resume_replay()
    stack.replica.wait_replayed(stack.primary.current_lsn())
    assert stack.in_client(versions) == [4] * 6
    after = host_metrics(stack)
    for then, now in zip(before, after, strict=True):
        assert (
            counter(now, "movieapi_db_reads_total", target="replica")
            >= counter(then, "movieapi_db_reads_total", target="replica") + 8
        )  # every host: 2 anonymous reads a round, and 2 once caught up
        skipped = counter(now, "movieapi_replica_skipped_total", reason="behind_caller")
        assert skipped >= counter(then, "movieapi_replica_skipped_total", reason="behind_caller") + 6


# ---- rate limits across hosts ------------------------------------------------------------------


def test_client_ip_through_the_proxy_is_the_callers(stack: Stack) -> None:
    """The API counts each caller by its own address (TRUSTED_PROXY_COUNT=1), on every host; a forged
    X-Forwarded-For neither escapes the caller's limit nor spends the limit of the address it names."""
    stack.configure(LIMITED)
    stack.flush_counters()
    forged = stack.in_client(
        lambda: burst(
            2 * ANON_LIMIT,
            lambda i: send(
                "GET", MOVIES, rid=request_id("forged"), source=CLIENT_A, headers={"X-Forwarded-For": f"198.51.100.{i}"}
            ),
        )
    )
    naming_a = stack.in_client(
        lambda: burst(
            ANON_LIMIT + 10,
            lambda _: send("GET", MOVIES, rid=request_id("b"), source=CLIENT_B, headers={"X-Forwarded-For": CLIENT_A}),
        )
    )
    assert sorted(answer.status for answer in forged) == [200] * ANON_LIMIT + [429] * ANON_LIMIT
    assert sorted(answer.status for answer in naming_a) == [200] * ANON_LIMIT + [429] * 10
    assert stack.anon_buckets() == {CLIENT_A, CLIENT_B}
    logged = stack.upstreams()
    served = {logged[answer.headers["x-request-id"]][1][-1] for answer in forged + naming_a if answer.status == 200}
    assert served == {api.upstream for api in stack.apis}


def test_global_limit_is_exact_across_three_hosts(stack: Stack) -> None:
    """THROTTLE_GLOBAL_RATE counts every request of every worker of every host in one Redis: exactly the limit."""
    stack.configure(LIMITED)
    stack.flush_counters()
    count = GLOBAL_LIMIT + 40
    answers = stack.in_client(
        lambda: burst(count, lambda _: send("GET", MOVIES, rid=request_id("global"), token=stack.token))
    )
    passed = [answer for answer in answers if answer.status == 200]
    assert len(passed) == GLOBAL_LIMIT
    assert sorted(answer.status for answer in answers) == [200] * GLOBAL_LIMIT + [429] * 40
    remaining = sorted(int(re.findall(r'"global";r=(\d+)', answer.headers["ratelimit"])[0]) for answer in passed)
    assert remaining == list(range(GLOBAL_LIMIT))  # one count, shared: each value once
    logged = stack.upstreams()
    assert {logged[answer.headers["x-request-id"]][1][-1] for answer in passed} == {api.upstream for api in stack.apis}


# ---- failures under load -----------------------------------------------------------------------


def test_killing_an_api_host_loses_only_requests_in_flight_on_it(stack: Stack) -> None:
    stack.configure(OPEN_RATES)
    victim = stack.api("api2")
    with Load(stack, seed_movies(stack, 5)) as load:
        killed = load.mark()
        victim.kill()
        dead = load.mark()
        load.wait_for_more(150)
    failed = [outcome for outcome in load.outcomes if outcome.failed]
    logged = stack.upstreams()
    for outcome in failed:
        assert outcome.started < dead, outcome  # in flight when the host died ...
        assert outcome.ended >= killed, outcome
        status, upstreams = logged[outcome.rid]
        assert (status, upstreams[-1]) == (502, victim.upstream), (outcome, upstreams)  # ... and on that host
    assert len(failed) <= load.readers + load.writers
    unexpected = [o for o in load.outcomes if not o.failed and o.status not in (200, 201, 409)]
    assert not unexpected, unexpected[:5]  # 409: a PATCH after one whose outcome its writer could not know
    assert_acknowledged_writes_stored(stack, load)
    after = [outcome for outcome in load.outcomes if outcome.started >= dead]
    print(
        f"\nkill: {len(load.outcomes)} requests, {len(failed)} failed (in flight on the killed host), "
        f"{len(after)} after its death all answered, {len(load.acknowledged)} acknowledged writes stored"
    )


def test_rolling_restart_under_load_fails_no_request(stack: Stack) -> None:
    """One host after the other: out of the proxy's rotation (reload), SIGTERM, start again, back in (reload)."""
    stack.configure(OPEN_RATES)
    away: dict[str, tuple[int, int]] = {}  # host -> the marks between which it was out of the rotation
    with Load(stack, seed_movies(stack, 5)) as load:
        for api in stack.apis:
            stack.route_to([other for other in stack.apis if other is not api])
            drained = load.mark()
            assert api.stop() == 0
            load.wait_for_more(20)
            api.start(api.env)
            api.wait_ready(stack.client)
            rejoined = load.mark()
            stack.route_to(stack.apis)
            away[api.upstream] = (drained, rejoined)
            load.wait_for_more(30)
    unanswered = [outcome for outcome in load.outcomes if outcome.status not in (200, 201)]
    assert not unanswered, unanswered[:5]
    assert_acknowledged_writes_stored(stack, load)
    logged = stack.upstreams()
    for upstream, (drained, rejoined) in away.items():
        served = [o for o in load.outcomes if logged[o.rid][1][-1] == upstream]
        assert not [o for o in served if o.started >= drained and o.ended < rejoined]  # out: sent nothing
        assert [o for o in served if o.started >= rejoined]  # back: serving again
    print(f"\nrolling restart: {len(load.outcomes)} requests, none failed, {len(load.acknowledged)} writes stored")


# ---- cleaning up -------------------------------------------------------------------------------


@pytest.fixture
def root_with_ip() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)


def test_a_closed_network_leaves_nothing(root_with_ip: None) -> None:
    network = Network("10.213.1")
    host = network.add_host("a", "2", etc_hosts={"api": ["10.213.1.3"]})
    sleeper = network.spawn(host, ["sleep", "600"], log=network.folder / "sleep.log")
    names = network.namespaces
    network.close()
    assert sleeper.poll() == -signal.SIGKILL
    assert not [name for name in names if (netns.NETNS_DIR / name).exists() or (netns.NETNS_ETC / name).exists()]
    assert not network.folder.exists()


def test_leftovers_of_a_run_that_died_are_removed_and_a_live_runs_kept(root_with_ip: None) -> None:
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    left = f"{netns.PREFIX}{dead}-api1"
    live = f"{netns.PREFIX}{os.getpid()}-kept"
    folder = Path(tempfile.mkdtemp(prefix=f"{netns.PREFIX}{dead}-"))
    foreign = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    (folder / "owned").write_text(f"{foreign}\n")
    subprocess.run(["ip", "netns", "add", left], check=True)
    subprocess.run(["ip", "netns", "add", live], check=True)
    (netns.NETNS_ETC / left).mkdir(parents=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", left, "sleep", "600"], start_new_session=True)
    try:
        wait_for(lambda: netns.namespace_pids(left), 10, "the orphan to run in its namespace")
        removed = netns.remove_leftovers()
        assert orphan.wait(10) == -signal.SIGKILL
        assert (netns.NETNS_DIR / live).exists()
        assert not (netns.NETNS_DIR / left).exists()
        assert not (netns.NETNS_ETC / left).exists()
        assert not folder.exists()
        assert not foreign.exists()
        assert removed == [left, str(folder)]
    finally:
        orphan.kill()
        subprocess.run(["ip", "netns", "delete", live], check=False)
        subprocess.run(["ip", "netns", "delete", left], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(foreign, ignore_errors=True)
