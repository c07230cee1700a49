"""Read replicas: a safe API request's catalogue reads go to a PostgreSQL streaming replica (docs/replicas.md).

Installed only when DATABASE_REPLICA_URLS names replicas (settings: the aliases replica_1, replica_2, ...).
ReplicaMiddleware opens a `Routing` for each GET or HEAD under /api/; its first catalogue read decides where the
whole request reads. Querysets ask through ReplicaRouter, the prepared fast paths through `read_alias()`: one
decision for both. Everything else reads the primary: write requests, reads inside a transaction, accounts, tokens
and permissions (a token just created works at once), the admin, commands.

A replica is a candidate when this worker's view of it (one query, at most every PROBE_INTERVAL seconds) says it is
reachable and at most REPLICA_MAX_LAG_MS behind. An authenticated caller never reads older data than its own last
write: after a write request the primary's WAL position is remembered for the caller in Redis, and a replica that has
not replayed up to it is passed over (the primary answers). A replica that refuses connections or dies mid-request is
marked down for a while (DOWN_SECONDS, doubled while it keeps failing) and the request is answered again from the
primary: no 5xx.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, Error, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from movieapi.metrics import DB_READS, REPLICA_SKIPPED
from movieapi.sql import PRIMARY_WAL_POSITION_SQL, REPLICA_STATE_SQL

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 0.2  # seconds a worker trusts what it last learnt of a replica (its replay position and lag)
# A replica that failed is left alone this long, then probed again; doubled while it keeps failing (a host that drops
# packets costs the one request that probes it a connect timeout, so rarely), up to MAX_DOWN_SECONDS.
DOWN_SECONDS = 2.0
MAX_DOWN_SECONDS = 30.0
WARN_EVERY = 10.0  # seconds between two log lines about the same Redis trouble, per worker
ROUTED_APP = "movies"  # the catalogue; every other app's models are read on the primary
SAFE_METHODS = frozenset({"GET", "HEAD"})  # routed; OPTIONS (a description, not the catalogue) reads the primary
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/"
PRIMARY = "primary"
# A replica's state as /readyz reports it, and why a request passed one over (movieapi_replica_skipped_total).
OK, LAGGING, UNREACHABLE = "ok", "lagging", "unreachable"
LAG, BEHIND_CALLER = "lag", "behind_caller"
# A caller's last write, kept this much longer than the lag bound: past it, any replica within the bound has it.
MARK_MARGIN_MS = 5000
MARK_PREFIX = "movieapi:rw:user:"
# Keep the larger of two positions (two write requests of one caller may finish in either order). Positions are
# fixed-width hexadecimal, so that comparing them as strings compares them as numbers.
_MARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""


# ---- what this worker knows of each replica ------------------------------------------------------------------------


@dataclass
class ReplicaState:
    """One replica as this worker last saw it."""

    alias: str
    state: str = UNREACHABLE
    replayed: int | None = None  # WAL position replayed (bytes), as of `checked`
    lag_ms: float | None = None
    checked: float = float("-inf")  # time.monotonic() of the last probe
    down_until: float = 0.0
    failures: int = 0  # in a row


_states: dict[str, ReplicaState] = {}


def replica_state(alias: str, now: float | None = None) -> ReplicaState:
    """The replica's state, probed again when older than PROBE_INTERVAL (unless it is marked down)."""
    now = time.monotonic() if now is None else now
    state = _states.get(alias)
    if state is None:
        state = _states[alias] = ReplicaState(alias)
    if now - state.checked >= PROBE_INTERVAL and now >= state.down_until:
        _probe(state, now)
    return state


def _probe(state: ReplicaState, now: float) -> None:
    """Ask the replica what it has replayed and how far behind it is (REPLICA_STATE_SQL)."""
    try:
        with connections[state.alias].cursor() as cursor:
            cursor.execute(REPLICA_STATE_SQL)
            replayed, lag_ms = cursor.fetchone()
    except Error as exc:
        mark_down(state.alias, exc)
        return
    state.checked, state.failures = now, 0
    state.replayed = None if replayed is None else int(replayed)
    state.lag_ms = None if lag_ms is None else float(lag_ms)
    within = state.replayed is not None and state.lag_ms is not None and state.lag_ms <= settings.REPLICA_MAX_LAG_MS
    state.state = OK if within else LAGGING


def mark_down(alias: str, why: BaseException | str) -> None:
    """Leave the replica alone for a while (DOWN_SECONDS, doubled while it keeps failing), its connection closed."""
    state = _states.setdefault(alias, ReplicaState(alias))
    now = time.monotonic()
    down = min(DOWN_SECONDS * 2**state.failures, MAX_DOWN_SECONDS)
    state.state, state.lag_ms, state.checked, state.down_until = UNREACHABLE, None, now, now + down
    state.failures += 1
    logger.warning("replica %s unreachable, reads go elsewhere for %.0f s: %s", alias, down, why)
    with suppress(Error):
        connections[alias].close()


_warned: dict[str, float] = {}


def _warn(what: str, message: str, *args: Any) -> None:
    """Log a warning, at most once per WARN_EVERY seconds for the same `what` (Redis down: not a line per request)."""
    now = time.monotonic()
    if now - _warned.get(what, float("-inf")) >= WARN_EVERY:
        _warned[what] = now
        logger.warning(message, *args)


def readiness() -> dict[str, dict[str, Any]]:
    """Each replica's state and lag for /readyz (which never fails on them)."""
    report = {}
    for alias in settings.REPLICA_ALIASES:
        state = replica_state(alias)
        lag = None if state.state == UNREACHABLE or state.lag_ms is None else round(state.lag_ms)
        report[alias] = {"state": state.state, "lag_ms": lag}
    return report


# ---- callers' last writes, in Redis --------------------------------------------------------------------------------

_redis: redis.Redis | None = None
_mark: Callable[..., Any] | None = None


def _client() -> tuple[redis.Redis, Callable[..., Any]]:
    """This worker's Redis client and marking script (made on first use: after gunicorn forked the worker)."""
    global _redis, _mark
    if _redis is None or _mark is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25)
        _mark = _redis.register_script(_MARK_SCRIPT)
    return _redis, _mark


def remember_write(user_id: int) -> None:
    """Remember the primary's WAL position now, after the caller's write request committed."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(PRIMARY_WAL_POSITION_SQL)
            position = int(cursor.fetchone()[0])
        _, mark = _client()
        mark(keys=[f"{MARK_PREFIX}{user_id}"], args=[f"{position:016x}", settings.REPLICA_MAX_LAG_MS + MARK_MARGIN_MS])
    except (Error, redis.RedisError) as exc:
        # The caller may now read older data than its write from a replica, for up to the lag bound.
        _warn("mark", "could not remember user %s's write for read-your-writes: %r", user_id, exc)


def last_write(user_id: int) -> int | None:
    """The WAL position of the caller's last write request, if recent; raises redis.RedisError."""
    redis_client, _ = _client()
    value = redis_client.get(f"{MARK_PREFIX}{user_id}")
    return None if value is None else int(value, 16)


# ---- one request's routing ----------------------------------------------------------------------------------------


class Routing:
    """Where one safe API request reads, decided at its first catalogue read (`read_alias`)."""

    __slots__ = ("alias", "pinned", "request")

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.alias: str | None = None  # None: not decided yet
        self.pinned = False  # primary_reads(): the primary, whatever was decided

    def read_alias(self) -> str:
        if self.pinned:
            return DEFAULT_DB_ALIAS
        if self.alias is None:
            decided = _choose(self.request)
            if decided is None:
                return DEFAULT_DB_ALIAS  # the caller is not known yet: decide at a later read
            self.alias = decided
        return self.alias


_routing: ContextVar[Routing | None] = ContextVar("movieapi_replica_routing", default=None)


def read_alias() -> str:
    """The database alias a catalogue read of the current request goes to (the primary outside safe API requests
    and inside transactions)."""
    routing = _routing.get()
    if routing is None or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return routing.read_alias()


def reading_replica() -> bool:
    """True if the current request's catalogue reads come from a replica."""
    routing = _routing.get()
    return routing is not None and not routing.pinned and routing.alias not in (None, DEFAULT_DB_ALIAS)


@contextmanager
def primary_reads() -> Iterator[None]:
    """The current request's reads go to the primary inside this block (e.g. to re-read what a replica lacks)."""
    routing = _routing.get()
    if routing is None:
        yield
        return
    pinned, routing.pinned = routing.pinned, True
    try:
        yield
    finally:
        routing.pinned = pinned


def _choose(request: HttpRequest) -> str | None:
    """A replica that is reachable, within the lag bound and past the caller's last write, else the primary; None
    while the caller is not known (a bearer token DRF has not authenticated yet)."""
    user = request.__dict__.get("user")  # set by DRF's authentication
    if user is None and "HTTP_AUTHORIZATION" in request.META:
        return None
    now = time.monotonic()
    states = [replica_state(alias, now) for alias in settings.REPLICA_ALIASES]
    written: int | None = None
    if user is not None and user.is_authenticated and any(state.state == OK for state in states):
        try:
            written = last_write(user.pk)
        except redis.RedisError as exc:
            _warn("read", "could not read user %s's last write, reading the primary: %r", user.pk, exc)
            states = []
    candidates = [state for state in states if _qualifies(state, written)]
    while candidates:
        state = random.choice(candidates)  # noqa: S311 (spreading load, not a secret)
        candidates.remove(state)
        connection = connections[state.alias]
        before = connection.connection
        if not _connected(connection):
            REPLICA_SKIPPED.labels(state.alias, UNREACHABLE).inc()
            continue
        # A new connection may have reached another server than the probe did (a load-balanced read endpoint).
        if connection.connection is not before:
            _probe(state, time.monotonic())
            if not _qualifies(state, written):
                continue
        DB_READS.labels("replica").inc()
        return state.alias
    DB_READS.labels(PRIMARY).inc()
    return DEFAULT_DB_ALIAS


def _qualifies(state: ReplicaState, written: int | None) -> bool:
    """True if reads may go to the replica: ok, and past the caller's last write; else the reason is counted."""
    if state.state != OK:
        REPLICA_SKIPPED.labels(state.alias, LAG if state.state == LAGGING else UNREACHABLE).inc()
        return False
    if written is not None and (state.replayed is None or state.replayed < written):
        REPLICA_SKIPPED.labels(state.alias, BEHIND_CALLER).inc()
        return False
    return True


def _connected(connection: Any) -> bool:
    """Open (or check, without a round trip while quiet) a replica's connection; False if it cannot be had."""
    try:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    except Error as exc:
        mark_down(connection.alias, exc)
        return False
    return True


def _lost(alias: str) -> bool:
    """True if the replica's connection failed during this request (refused, ended by the server)."""
    connection = connections[alias]
    raw = connection.connection
    state: Any = connection  # django-stubs do not declare errors_occurred
    return bool(state.errors_occurred) and (raw is None or raw.closed)


# ---- Django's hooks ------------------------------------------------------------------------------------------------


class ReplicaRouter:
    """Catalogue models read where the request's routing says; everything else, and every write, on the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        """The routing's alias for the catalogue, the primary for the rest."""
        return read_alias() if model._meta.app_label == ROUTED_APP else DEFAULT_DB_ALIAS

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        """Always the primary."""
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        """One database, whichever copy an object was read from."""
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        """Migrations run on the primary only (replicas replay them)."""
        return db == DEFAULT_DB_ALIAS


class ReplicaMiddleware:
    """Route a safe API request's reads (answering again from the primary if its replica failed), and remember an
    authenticated caller's write requests for read-your-writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in SAFE_METHODS:
            if request.path_info.startswith(API_PREFIX):
                return self._routed(request)
            return self.get_response(request)
        response = self.get_response(request)
        if request.method not in WRITE_METHODS or 400 <= response.status_code < 500:
            return response  # no write: another method, or refused (a 5xx may have committed before it failed)
        user = request.__dict__.get("user")
        if user is not None and user.is_authenticated:
            remember_write(user.pk)
        return response

    def _routed(self, request: HttpRequest) -> HttpResponse:
        routing = Routing(request)
        token = _routing.set(routing)
        try:
            response = self.get_response(request)
            replica = routing.alias
            if replica is not None and replica != DEFAULT_DB_ALIAS and _lost(replica):
                mark_down(replica, "its connection was lost during a request")
                if response.status_code >= 500:
                    # A GET or HEAD is safe to run again: this time on the primary.
                    REPLICA_SKIPPED.labels(replica, UNREACHABLE).inc()
                    DB_READS.labels(PRIMARY).inc()
                    routing.alias = DEFAULT_DB_ALIAS
                    response = self.get_response(request)
            return response
        finally:
            _routing.reset(token)
