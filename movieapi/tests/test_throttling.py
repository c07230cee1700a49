"""Rate limits in process: rates, client IP, header syntax, the Redis and PostgreSQL stores, the 429 answer."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.db import connections
from django.test import RequestFactory
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from movieapi import throttle_stores
from movieapi.client_ip import client_ip, rate_limit_bucket
from movieapi.tests.conftest import RedisServer
from movieapi.throttle_stores import Check, PostgresStore, Rate, RedisStore, Store
from movieapi.throttles import parse_rate, rate_limit_headers

# draft-ietf-httpapi-ratelimit-headers-10: a structured-field List of quoted policy names with parameters.
POLICY_RE = re.compile(r'^"(anon|user|auth|global)";q=\d+;w=[1-9]\d*(, "(anon|user|auth|global)";q=\d+;w=[1-9]\d*)*$')
RATELIMIT_RE = re.compile(
    r'^"(anon|user|auth|global)";r=\d+;t=[1-9]\d*(, "(anon|user|auth|global)";r=\d+;t=[1-9]\d*)*$'
)


def unique_prefix() -> str:
    return f"t-{os.urandom(6).hex()}:"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---- rates, client IP, headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/min", Rate(100, 60)),
        ("2000/s", Rate(2000, 1)),
        ("10/minute", Rate(10, 60)),
        ("5/10s", Rate(5, 10)),
        ("1000/hour", Rate(1000, 3600)),
        ("7/day", Rate(7, 86400)),
        (" 3 / 2 min ", Rate(3, 120)),
        ("off", None),
        ("", None),
    ],
)
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "100/fortnight", "x/min", "10/0s", "-1/s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        parse_rate(text)


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, "", "10.0.0.9"),
        (0, "203.0.113.7", "10.0.0.9"),  # no trusted proxy: the header is the client's own claim
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # a forged entry on the left is ignored
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.9"),  # fewer entries than proxies: the chain was bypassed
        (1, "not-an-ip", "10.0.0.9"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip(settings: Any, trusted: int, forwarded: str, expected: str) -> None:
    settings.TRUSTED_PROXY_COUNT = trusted
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_ipv6_clients_share_their_64() -> None:
    assert rate_limit_bucket("2001:db8:1:2:aaaa::1") == rate_limit_bucket("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert rate_limit_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert rate_limit_bucket("192.0.2.1") != rate_limit_bucket("192.0.2.2")


def test_header_syntax() -> None:
    checks = [Check("anon", "1.2.3.4", Rate(100, 60)), Check("global", "all", Rate(2000, 1))]
    decision = throttle_stores.build_decision(checks, True, [(58, 16_001), (1, 999)])
    headers = rate_limit_headers(decision)
    assert headers["RateLimit-Policy"] == '"anon";q=100;w=60, "global";q=2000;w=1'
    assert headers["RateLimit"] == '"anon";r=42;t=17, "global";r=1999;t=1'
    assert POLICY_RE.match(headers["RateLimit-Policy"])
    assert RATELIMIT_RE.match(headers["RateLimit"])


# ---- the stores ---------------------------------------------------------------------------------


def burst(store_factory: Callable[[], Store], checks: list[Check], count: int) -> list[throttle_stores.Decision | None]:
    """count decisions on the same buckets at once, each thread with its own store (as workers have)."""
    barrier = threading.Barrier(count)
    results: list[throttle_stores.Decision | None] = [None] * count

    def run(index: int) -> None:
        store = store_factory()
        barrier.wait()
        try:
            results[index] = store.decide(checks)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def assert_exact(decisions: list[throttle_stores.Decision | None], limit: int) -> None:
    assert all(decision is not None for decision in decisions), "the store failed during the burst"
    allowed = [decision for decision in decisions if decision and decision.allowed]
    assert len(allowed) == limit
    # Each passing request saw a different count: remaining runs exactly from limit-1 down to 0.
    assert sorted(decision.states[0].remaining for decision in allowed) == list(range(limit))
    refused = [decision for decision in decisions if decision and not decision.allowed]
    assert all(not decision.states[0].allowed and decision.retry_after >= 1 for decision in refused)


def test_redis_store_is_exact_under_concurrency(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    checks = [Check("anon", "192.0.2.1", Rate(10, 60)), Check("global", "all", Rate(1000, 60))]
    decisions = burst(lambda: RedisStore(redis_server.url, prefix), checks, 40)
    assert_exact(decisions, 10)
    # Refused requests consumed nothing in the scope that had room.
    last = RedisStore(redis_server.url, prefix).decide([checks[1]])
    assert last is not None
    assert last.states[0].remaining == 1000 - 11


@pytest.mark.django_db(transaction=True)
def test_postgres_store_is_exact_under_concurrency() -> None:
    prefix = unique_prefix()
    checks = [Check("anon", "192.0.2.1", Rate(10, 60)), Check("global", "all", Rate(1000, 60))]
    decisions = burst(lambda: PostgresStore(prefix), checks, 40)
    assert_exact(decisions, 10)
    last = PostgresStore(prefix).decide([checks[1]])
    assert last is not None
    assert last.states[0].remaining == 1000 - 11


@pytest.fixture(params=["redis", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "redis":
        return RedisStore(request.getfixturevalue("redis_server").url, unique_prefix())
    request.getfixturevalue("db")
    return PostgresStore(unique_prefix())


def test_refusal_by_one_scope_consumes_no_other(store: Store) -> None:
    tight, loose = Check("auth", "192.0.2.1", Rate(1, 60)), Check("anon", "192.0.2.1", Rate(5, 60))
    first, second = store.decide([tight, loose]), store.decide([tight, loose])
    assert first is not None
    assert first.allowed
    assert second is not None
    assert not second.allowed
    assert [state.allowed for state in second.states] == [False, True]
    assert second.states[1].remaining == 4  # unchanged by the refused request
    third = store.decide([loose])
    assert third is not None
    assert third.allowed
    assert third.states[0].remaining == 3


def test_window_resets_after_retry_after(store: Store) -> None:
    check = Check("anon", "192.0.2.1", Rate(2, 1))
    assert all(decision and decision.allowed for decision in (store.decide([check]), store.decide([check])))
    refused = store.decide([check])
    assert refused is not None
    assert not refused.allowed
    assert refused.retry_after == 1
    time.sleep(refused.retry_after + 0.05)
    again = store.decide([check])
    assert again is not None
    assert again.allowed
    assert again.states[0].remaining == 1


def test_release_gives_back_one_hit_in_each_open_window(store: Store) -> None:
    checks = [Check("admin_login_ip", "192.0.2.1", Rate(2, 60)), Check("admin_login_username", "u", Rate(5, 60))]
    first = store.decide(checks)
    assert first is not None
    assert first.allowed
    store.release(checks)
    store.release(checks)  # never below zero
    for _ in range(2):
        assert (store.decide(checks) or first).allowed
    refused = store.decide(checks)
    assert refused is not None
    assert not refused.allowed
    assert [state.remaining for state in refused.states] == [0, 3]
    store.release(checks)
    again = store.decide(checks)
    assert again is not None
    assert again.allowed
    assert [state.remaining for state in again.states] == [0, 3]


def test_redis_store_recovers_a_dropped_connection_and_a_forgotten_script(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, unique_prefix())
    check = Check("anon", "192.0.2.1", Rate(5, 60))
    first = store.decide([check])
    assert first is not None
    assert first.states[0].remaining == 4
    admin = redis.Redis.from_url(redis_server.url)
    assert store.client is not None
    own_id = store.client.client_id()
    admin.script_flush()  # as after a restart: the script must be loaded again
    admin.client_kill_filter(_id=str(own_id))  # the store's connection breaks under it
    second = store.decide([check])  # a new connection, the script loaded again, no error counted
    assert second is not None
    assert second.states[0].remaining == 3
    assert store.client.client_id() != own_id
    admin.close()


def test_unreachable_redis_fails_open_counts_and_backs_off() -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    store = RedisStore(f"redis://127.0.0.1:{port}/0", unique_prefix())
    errors, unchecked = (
        sample("movieapi_throttle_store_errors_total", store="redis"),
        sample("movieapi_throttle_unchecked_total"),
    )
    check = Check("anon", "192.0.2.1", Rate(1, 60))
    assert store.decide([check]) is None
    assert store.decide([check]) is None  # within the back-off: not asked again
    assert sample("movieapi_throttle_store_errors_total", store="redis") == errors + 1
    assert sample("movieapi_throttle_unchecked_total") == unchecked + 2


# ---- through the API ----------------------------------------------------------------------------


@pytest.fixture
def rates(settings: Any) -> Callable[..., None]:
    """Set the rates (others off) and a fresh key prefix for this test."""
    settings.THROTTLE_KEY_PREFIX = unique_prefix()

    def set_rates(**scoped: str) -> None:
        rates = {"anon": "off", "user": "off", "auth": "off", "global": "off", **scoped}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}

    return set_rates


@pytest.mark.django_db
def test_anon_limit_answers_429_problem_with_headers(rates: Callable[..., None]) -> None:
    rates(anon="2/min", **{"global": "1000/s"})
    client = APIClient()
    refusals = sample("movieapi_throttle_refusals_total", scope="anon")
    first, second, third = (client.get("/api/v1/genres/") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first["RateLimit-Policy"] == '"anon";q=2;w=60, "global";q=1000;w=1'
    assert re.fullmatch(r'"anon";r=1;t=(60|59), "global";r=\d+;t=1', first["RateLimit"])
    assert third["Content-Type"] == "application/problem+json"
    assert third.json()["type"] == "urn:movieapi:problem:rate-limited"
    assert third.json()["status"] == 429
    assert 1 <= int(third["Retry-After"]) <= 60
    assert third["RateLimit"].startswith('"anon";r=0;t=')
    assert POLICY_RE.match(third["RateLimit-Policy"])
    assert RATELIMIT_RE.match(third["RateLimit"])
    assert sample("movieapi_throttle_refusals_total", scope="anon") == refusals + 1
    # Another address has its own bucket.
    assert client.get("/api/v1/genres/", REMOTE_ADDR="192.0.2.50").status_code == 200


@pytest.mark.django_db
def test_user_limit_counts_per_user_not_per_ip(rates: Callable[..., None], user_client: APIClient) -> None:
    rates(anon="1/min", user="2/min")
    answers = [user_client.get("/api/v1/genres/").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert user_client.get("/api/v1/genres/")["RateLimit-Policy"] == '"user";q=2;w=60'
    # The anonymous bucket of the same address is untouched by the user's requests.
    assert APIClient().get("/api/v1/genres/").status_code == 200


@pytest.mark.django_db
def test_auth_scope_limits_log_in_attempts_per_ip(rates: Callable[..., None]) -> None:
    rates(anon="100/min", auth="2/min")
    client = APIClient()
    attempts = [
        client.post("/api/v1/tokens/", {"username": "nobody", "password": "wrong"}, format="json") for _ in range(3)
    ]
    assert [answer.status_code for answer in attempts[:2]] == [401, 401]
    assert attempts[2].status_code == 429
    assert attempts[2]["RateLimit-Policy"] == '"anon";q=100;w=60, "auth";q=2;w=60'
    # Reads are not under the auth scope, and the refused attempt cost the anon bucket nothing.
    read = client.get("/api/v1/genres/")
    assert read.status_code == 200
    assert read["RateLimit"].startswith('"anon";r=97;')


@pytest.mark.django_db
def test_scopes_switched_off_send_no_headers(rates: Callable[..., None]) -> None:
    rates()
    answer = APIClient().get("/api/v1/genres/")
    assert answer.status_code == 200
    assert "RateLimit-Policy" not in answer
    assert "RateLimit" not in answer
