"""Rate limits against a real gunicorn with 4 workers: exact under concurrent bursts, on Redis and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from movieapi.tests.conftest import RedisServer
from movieapi.throttle_stores import RETRY_STORE_AFTER

pytestmark = [pytest.mark.live, pytest.mark.slow]

GENRES = "/api/v1/genres/"
RATELIMIT_ITEM = r'"(anon|user|auth|global)";r=(\d+);t=([1-9]\d*)'


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def scope(self, name: str) -> tuple[int, int]:
        """(remaining, reset) of one scope in the RateLimit header."""
        for scope, remaining, reset in re.findall(RATELIMIT_ITEM, self.headers["ratelimit"]):
            if scope == name:
                return int(remaining), int(reset)
        raise AssertionError(f"no {name} in {self.headers['ratelimit']!r}")


def fetch(
    server: Any, path: str = GENRES, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None, **kw: Any
) -> Answer:
    """One request on its own connection from the given loopback address (Linux routes all of 127/8 locally)."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10, source_address=(source, 0))
    try:
        connection.request(kw.get("method", "GET"), path, body=kw.get("body"), headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def burst(count: int, send: Callable[[int], Answer]) -> list[Answer]:
    """count requests released at the same moment from count threads."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Answer:
        barrier.wait(30)
        return send(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def assert_refusal(answer: Answer, window: int) -> None:
    assert answer.status == 429
    assert answer.headers["content-type"] == "application/problem+json"
    assert json.loads(answer.body)["type"] == "urn:movieapi:problem:rate-limited"
    assert re.fullmatch(r"[1-9]\d*", answer.headers["retry-after"])
    assert 1 <= int(answer.headers["retry-after"]) <= window


def prefix() -> str:
    return f"live-{os.urandom(6).hex()}:"


@pytest.fixture(scope="module")
def limited(live_server_factory: Callable[..., Any], redis_server: RedisServer) -> Any:
    """4 workers on one Redis: anon 20/min, auth 5/min, global out of the way, no trusted proxy."""
    return live_server_factory(
        workers=4,
        env={
            "REDIS_URL": redis_server.url,
            "THROTTLE_KEY_PREFIX": prefix(),
            "THROTTLE_ANON_RATE": "20/min",
            "THROTTLE_AUTH_RATE": "5/min",
            "TRUSTED_PROXY_COUNT": "0",
        },
    )


def test_burst_from_one_ip_passes_exactly_the_limit(transactional_db: None, limited: Any) -> None:
    answers = burst(60, lambda _: fetch(limited, source="127.0.0.2"))
    passed = [answer for answer in answers if answer.status == 200]
    assert len(passed) == 20
    assert sorted(answer.scope("anon")[0] for answer in passed) == list(range(20))
    for answer in answers:
        assert answer.headers["ratelimit-policy"] == '"anon";q=20;w=60, "global";q=1000000;w=1'
        assert re.fullmatch(f"{RATELIMIT_ITEM}, {RATELIMIT_ITEM}", answer.headers["ratelimit"])
        if answer.status != 200:
            assert_refusal(answer, 60)
            assert answer.scope("anon")[0] == 0


def test_spoofed_forwarded_for_does_not_escape_the_limit(transactional_db: None, limited: Any) -> None:
    answers = burst(
        40, lambda index: fetch(limited, source="127.0.0.3", headers={"X-Forwarded-For": f"198.51.100.{index + 1}"})
    )
    assert sum(answer.status == 200 for answer in answers) == 20
    # ... nor does it spend someone else's quota: the address it names still has all of its own.
    assert fetch(limited, source="127.0.0.4").scope("anon")[0] == 19


def test_auth_scope_refuses_log_in_attempts_without_spending_anon(transactional_db: None, limited: Any) -> None:
    body = json.dumps({"username": "nobody", "password": "wrong"})
    answers = [
        fetch(
            limited,
            "/api/v1/tokens/",
            source="127.0.0.5",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        for _ in range(8)
    ]
    assert [answer.status for answer in answers] == [401] * 5 + [429] * 3
    assert answers[0].headers["ratelimit-policy"] == '"anon";q=20;w=60, "auth";q=5;w=60, "global";q=1000000;w=1'
    assert_refusal(answers[-1], 60)
    assert answers[-1].scope("auth")[0] == 0
    # Five attempts counted in anon; the three refused ones did not.
    assert fetch(limited, source="127.0.0.5").scope("anon")[0] == 20 - 5 - 1


def test_global_limit_is_exact_across_many_clients(
    transactional_db: None, live_server_factory: Callable[..., Any], redis_server: RedisServer
) -> None:
    server = live_server_factory(
        workers=4,
        env={
            "REDIS_URL": redis_server.url,
            "THROTTLE_KEY_PREFIX": prefix(),
            "THROTTLE_GLOBAL_RATE": "50/min",
            "THROTTLE_ANON_RATE": "2/min",
            "TRUSTED_PROXY_COUNT": "1",
        },
    )
    # 150 clients: each its own forwarded address (behind one trusted proxy) and its own loopback source.
    answers = burst(
        150,
        lambda index: fetch(
            server, source=f"127.0.1.{index + 1}", headers={"X-Forwarded-For": f"203.0.113.{index + 1}"}
        ),
    )
    passed = [answer for answer in answers if answer.status == 200]
    assert len(passed) == 50
    assert sorted(answer.scope("global")[0] for answer in passed) == list(range(50))
    for answer in answers:
        if answer.status != 200:
            assert_refusal(answer, 60)
    # Behind the trusted proxy each forwarded address has its own anon bucket: one request spent in it
    # when it passed, none when the global scope refused it.
    for answer in answers:
        assert answer.scope("anon")[0] == (1 if answer.status == 200 else 2)


def test_window_resets_after_retry_after(
    transactional_db: None, live_server_factory: Callable[..., Any], redis_server: RedisServer
) -> None:
    server = live_server_factory(
        workers=4, env={"REDIS_URL": redis_server.url, "THROTTLE_KEY_PREFIX": prefix(), "THROTTLE_ANON_RATE": "3/2s"}
    )
    answers = [fetch(server, source="127.0.0.6") for _ in range(4)]
    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert_refusal(answers[-1], 2)
    time.sleep(int(answers[-1].headers["retry-after"]))
    again = fetch(server, source="127.0.0.6")
    assert again.status == 200
    assert again.scope("anon")[0] == 2


def test_postgres_store_is_exact_across_workers(
    transactional_db: None, live_server_factory: Callable[..., Any]
) -> None:
    server = live_server_factory(
        workers=4, env={"REDIS_URL": "", "THROTTLE_KEY_PREFIX": prefix(), "THROTTLE_ANON_RATE": "20/min"}
    )
    answers = burst(60, lambda _: fetch(server, source="127.0.0.7"))
    passed = [answer for answer in answers if answer.status == 200]
    assert len(passed) == 20
    assert sorted(answer.scope("anon")[0] for answer in passed) == list(range(20))
    for answer in answers:
        if answer.status != 200:
            assert_refusal(answer, 60)


def test_redis_outage_serves_requests_then_limits_return(
    transactional_db: None, live_server_factory: Callable[..., Any], redis_server: RedisServer
) -> None:
    server = live_server_factory(
        workers=4, env={"REDIS_URL": redis_server.url, "THROTTLE_KEY_PREFIX": prefix(), "THROTTLE_ANON_RATE": "5/min"}
    )
    assert [fetch(server, source="127.0.0.8").status for _ in range(6)] == [200] * 5 + [429]

    redis_server.stop()
    try:
        during = burst(12, lambda _: fetch(server, source="127.0.0.8"))
        # Served (the 10 s client timeout would have raised on a hang), with the policy but no counts.
        assert [answer.status for answer in during] == [200] * 12
        assert all("ratelimit" not in answer.headers for answer in during)
        assert all(answer.headers["ratelimit-policy"].startswith('"anon";q=5;w=60') for answer in during)
    finally:
        redis_server.start()  # an empty Redis, as after a crash without persistence

    # Each worker asks Redis again once its back-off has passed; wait until decisions come back.
    deadline = time.monotonic() + 15
    decided = 0
    while decided < 8 and time.monotonic() < deadline:
        decided = decided + 1 if "ratelimit" in fetch(server, source="127.0.0.9").headers else 0
    assert decided == 8, "limits did not come back after Redis restarted"
    time.sleep(RETRY_STORE_AFTER + 0.2)  # no worker is still backing off

    after = burst(15, lambda _: fetch(server, source="127.0.0.10"))
    assert sum(answer.status == 200 for answer in after) == 5
    assert "rate-limit store redis unavailable" in server.output()
