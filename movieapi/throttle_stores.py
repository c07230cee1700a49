"""Rate-limit counter stores: one atomic decision for all the scopes of a request (algorithm: movieapi/throttles.py).

The store is Redis (REDIS_URL; one EVALSHA per request) or, without it, an UNLOGGED PostgreSQL table
(one short transaction per request). If the store fails, the request is served, the failure is logged
and counted, and the store is tried again a second later. What a store is asked (a Check per scope) and what
it answers (a Decision) are defined here too; the DRF throttles in movieapi/throttles.py build the one and read
the other.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import redis
from django.conf import settings
from django.db import DatabaseError, connections
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from movieapi.sql import (
    THROTTLE_COUNT_SQL,
    THROTTLE_CREATE_LOCK_SQL,
    THROTTLE_CREATE_SQL,
    THROTTLE_LOCK_SQL,
    THROTTLE_PURGE_SQL,
    THROTTLE_RELEASE_SQL,
    THROTTLE_TABLE,
)

logger = logging.getLogger(__name__)

STORE_ERRORS = Counter(
    "movieapi_throttle_store_errors_total",
    "Rate-limit decisions that failed because the store did not answer; those requests were served.",
    ["store"],
)
UNCHECKED = Counter(
    "movieapi_throttle_unchecked_total",
    "Requests served without a rate-limit decision because the store was failing.",
)
# Every series exists from the start at 0, so rate() and alerts work before the first event.
for _store in ("redis", "postgresql"):
    STORE_ERRORS.labels(_store)

# After a store failure, requests skip the store for this long (per process) instead of each waiting
# for a timeout; the first request after it tries again, so limits come back without a restart.
RETRY_STORE_AFTER = 1.0
REDIS_TIMEOUT = 0.2  # seconds, for connecting and for each reply


# ---- rates and decisions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    limit: int
    window: int  # seconds


@dataclass(frozen=True)
class Check:
    """One scope's bucket for this request."""

    scope: str
    bucket: str
    rate: Rate


@dataclass(frozen=True)
class ScopeState:
    """Where one scope stands after the decision."""

    scope: str
    rate: Rate
    allowed: bool  # this scope had room (the request may still be refused by another scope)
    remaining: int
    reset: int  # whole seconds until this window ends, at least 1


@dataclass(frozen=True)
class Decision:
    allowed: bool
    states: tuple[ScopeState, ...]  # empty when the store could not be asked
    checks: tuple[Check, ...]

    @property
    def retry_after(self) -> int:
        """Seconds until every scope that refused has a fresh window."""
        return max((state.reset for state in self.states if not state.allowed), default=1)


def build_decision(checks: list[Check], allowed: bool, counts: list[tuple[int, int]]) -> Decision:
    """Turn the store's answer, (hits, ms left in the window) per check, into per-scope states."""
    states = []
    for check, (hits, ttl_ms) in zip(checks, counts, strict=True):
        # On success hits includes this request; on refusal it is the count the window already holds.
        scope_allowed = hits <= check.rate.limit if allowed else hits < check.rate.limit
        states.append(
            ScopeState(
                scope=check.scope,
                rate=check.rate,
                allowed=scope_allowed,
                remaining=max(0, check.rate.limit - hits),
                reset=max(1, math.ceil(ttl_ms / 1000)),
            )
        )
    return Decision(allowed=allowed, states=tuple(states), checks=tuple(checks))


# ---- stores ------------------------------------------------------------------------------------


class StoreUnavailable(Exception):
    """The store could not make a decision."""


class Store:
    """A shared counter store; decide() is one atomic step for all checks of a request."""

    name = "store"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._retry_at = 0.0

    def key(self, check: Check) -> str:
        # The window is part of the key, so changing a rate starts fresh buckets instead of
        # inheriting a window of another length.
        return f"{self.prefix}{check.scope}:{check.rate.window}:{check.bucket}"

    def decide(self, checks: list[Check]) -> Decision | None:
        """The decision for these checks, or None (serve the request) if the store is failing."""
        if time.monotonic() < self._retry_at:
            UNCHECKED.inc()
            return None
        try:
            allowed, counts = self._decide(checks)
        except StoreUnavailable as exc:
            STORE_ERRORS.labels(self.name).inc()
            UNCHECKED.inc()
            self._retry_at = time.monotonic() + RETRY_STORE_AFTER
            logger.error("rate-limit store %s unavailable, serving without limits: %s", self.name, exc)
            return None
        self._retry_at = 0.0
        return build_decision(checks, allowed, counts)

    def _decide(self, checks: list[Check]) -> tuple[bool, list[tuple[int, int]]]:
        raise NotImplementedError

    def release(self, checks: list[Check]) -> None:
        """Give back the hit a decision counted in each of these buckets (if its window is still open)."""
        if time.monotonic() < self._retry_at:
            return
        try:
            self._release(checks)
        except StoreUnavailable as exc:
            STORE_ERRORS.labels(self.name).inc()
            self._retry_at = time.monotonic() + RETRY_STORE_AFTER
            logger.error("rate-limit store %s unavailable, a hit was not given back: %s", self.name, exc)

    def _release(self, checks: list[Check]) -> None:
        raise NotImplementedError


# KEYS: one counter per scope. ARGV: limit and window (ms) for each key, in order.
# Every window is checked before any is counted, so a request refused by one scope consumes nothing.
# A window starts with the first request counted in it (PEXPIRE when INCR returns 1).
_REDIS_SCRIPT = """
local allowed = 1
local result = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  local hits = 0
  if ttl >= 0 then
    hits = tonumber(redis.call('GET', key))
  else
    if ttl == -1 then redis.call('DEL', key) end
    ttl = tonumber(ARGV[2 * i])
  end
  if hits >= tonumber(ARGV[2 * i - 1]) then allowed = 0 end
  result[2 * i] = hits
  result[2 * i + 1] = ttl
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    local hits = redis.call('INCR', key)
    if hits == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
    result[2 * i] = hits
  end
end
result[1] = allowed
return result
"""
# KEYS: counters to give one hit back to, each only while its window lasts (DECR keeps the TTL).
_REDIS_RELEASE_SCRIPT = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class RedisStore(Store):
    """Counters in Redis: one EVALSHA per request, whatever the number of scopes."""

    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(prefix)
        self.url = url
        self.sha = _script_sha(_REDIS_SCRIPT)
        self.release_sha = _script_sha(_REDIS_RELEASE_SCRIPT)
        self.client: redis.Redis | None = None

    def _connect(self) -> redis.Redis:
        # One connection per process, not a pool: a sync worker sends one command at a time, and the
        # pool's bookkeeping cost as much CPU as the command itself. Short timeouts, and no retry on a
        # timeout: a slow Redis must not hold requests up (_command retries a broken connection once).
        return redis.Redis.from_url(
            self.url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            single_connection_client=True,
        )

    def _decide(self, checks: list[Check]) -> tuple[bool, list[tuple[int, int]]]:
        args: list[str | int] = [self.key(check) for check in checks]
        for check in checks:
            args += [check.rate.limit, check.rate.window * 1000]
        values = [int(value) for value in self._script(_REDIS_SCRIPT, self.sha, len(checks), *args)]
        return values[0] == 1, [(values[2 * i + 1], values[2 * i + 2]) for i in range(len(checks))]

    def _release(self, checks: list[Check]) -> None:
        self._script(_REDIS_RELEASE_SCRIPT, self.release_sha, len(checks), *[self.key(check) for check in checks])

    def _script(self, script: str, sha: str, *args: str | int) -> Any:
        """EVALSHA, loading the script first if Redis has forgotten it (a restart)."""
        try:
            try:
                return self._command("EVALSHA", sha, *args)
            except redis.exceptions.NoScriptError:
                self._command("SCRIPT", "LOAD", script)
                return self._command("EVALSHA", sha, *args)
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _command(self, *args: str | int) -> Any:
        """Fast path: Redis command path.

        Replaces: redis-py's client layer (lock, retry wrapper, reply callbacks) around the one EVALSHA.
        Why: ~15 -> ~12 us of CPU a command in process (process_time, measured for the ledger).
        Equal: movieapi/tests/test_throttling.py::test_redis_store_recovers_a_dropped_connection_and_a_forgotten_script
        Off: send through redis-py instead: `return self.client.execute_command(*args)` in its body.

        One command on the process's connection: sent and read directly, retried once on a new connection if
        the old one broke (Redis restarted). redis-py's client layer around the connection (its lock, retry
        wrapper and reply callbacks) cost about as much CPU as the exchange itself, on every request."""
        if self.client is None:
            self.client = self._connect()
        connection = cast("redis.connection.Connection", self.client.connection)  # single_connection_client
        try:
            connection.send_command(*args)
            return connection.read_response()
        except redis.ConnectionError:  # the connection is already closed; a timeout is not retried
            connection.send_command(*args)
            return connection.read_response()


class PostgresStore(Store):
    """Counters in an UNLOGGED PostgreSQL table, through the request's own database connection."""

    name = "postgresql"

    def __init__(self, prefix: str, alias: str = "default") -> None:
        super().__init__(prefix)
        self.alias = alias

    def _decide(self, checks: list[Check]) -> tuple[bool, list[tuple[int, int]]]:
        try:
            try:
                return self._transaction(checks)
            except psycopg.errors.UndefinedTable:
                self._create_table()
                return self._transaction(checks)
        except (psycopg.Error, DatabaseError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _release(self, checks: list[Check]) -> None:
        try:
            raw = self._raw()
            with raw.transaction(), raw.cursor() as cursor:
                cursor.execute(THROTTLE_RELEASE_SQL, {"keys": [self.key(check) for check in checks]})
        except (psycopg.Error, DatabaseError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _raw(self) -> psycopg.Connection[Any]:
        # The raw psycopg connection under Django's: no second connection per worker, and the
        # statements stay out of Django's query log (tests pin query counts per request). Throttles run
        # before the view, outside any transaction (ATOMIC_REQUESTS is off), so each decision commits
        # on its own and holds its row locks only for its own two statements.
        wrapper = connections[self.alias]
        wrapper.ensure_connection()
        raw: psycopg.Connection[Any] = wrapper.connection
        return raw

    def _transaction(self, checks: list[Check]) -> tuple[bool, list[tuple[int, int]]]:
        keys = [self.key(check) for check in checks]
        raw = self._raw()
        with raw.transaction(), raw.cursor() as cursor:
            cursor.execute(THROTTLE_LOCK_SQL, {"keys": keys, "windows": [check.rate.window for check in checks]})
            rows = {key: (int(hits), int(ttl_ms)) for key, hits, ttl_ms in cursor.fetchall()}
            counts = [rows[key] for key in keys]
            allowed = all(hits < check.rate.limit for check, (hits, _) in zip(checks, counts, strict=True))
            if allowed:
                cursor.execute(THROTTLE_COUNT_SQL, {"keys": keys})
                counts = [(hits + 1, ttl_ms) for hits, ttl_ms in counts]
        if random.random() < 0.001:  # noqa: S311 - only spreads the clean-up of expired buckets
            with raw.transaction(), raw.cursor() as cursor:
                cursor.execute(THROTTLE_PURGE_SQL)
        return allowed, counts

    def _create_table(self) -> None:
        raw = self._raw()
        with raw.transaction(), raw.cursor() as cursor:
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; serialise them.
            cursor.execute(THROTTLE_CREATE_LOCK_SQL, [THROTTLE_TABLE])
            cursor.execute(THROTTLE_CREATE_SQL)


def _script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


_stores: dict[tuple[int, str, str], Store] = {}


def get_store() -> Store:
    """The store for this process (one per forked worker: connections must not cross a fork)."""
    url, prefix = settings.REDIS_URL, settings.THROTTLE_KEY_PREFIX
    key = (os.getpid(), url, prefix)
    store = _stores.get(key)
    if store is None:
        store = RedisStore(url, prefix) if url else PostgresStore(prefix)
        _stores[key] = store
    return store
