"""Authentication limits against a real gunicorn with 4 workers on one Redis: the admin's log-in limited per address
and per username, failed bearer tokens counted, tokens revoked with the password and by log-out-everywhere."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from django.contrib.auth.models import User

from movieapi.tests.conftest import RedisServer
from movieapi.tests.test_ops import metric_value
from movieapi.tests.test_throttling_live import RATELIMIT_ITEM, Answer, assert_refusal, burst, fetch, prefix

pytestmark = [pytest.mark.live, pytest.mark.slow]

PASSWORD = "a-long-enough-password-9"
# Django's CSRF check takes the unmasked secret of the cookie as a form token too: no page to fetch first.
CSRF = "x" * 32
REFUSED_TEXT = b"Too many failed log-in attempts"


def admin_log_in(server: Any, username: str, password: str, *, source: str) -> Answer:
    """POST the admin's log-in form once from the given loopback address."""
    body = urlencode({"username": username, "password": password, "next": "/admin/", "csrfmiddlewaretoken": CSRF})
    return fetch(
        server,
        "/admin/login/?next=/admin/",
        source=source,
        method="POST",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={CSRF}"},
    )


def assert_log_in_refused(answer: Answer, window: int) -> None:
    assert answer.status == 429
    assert answer.headers["content-type"].startswith("text/html")
    assert REFUSED_TEXT in answer.body  # the log-in page again, saying why and for how long
    assert 1 <= int(answer.headers["retry-after"]) <= window


def staff_user(username: str) -> User:
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True, is_superuser=True)


def api_log_in(server: Any, username: str, password: str = PASSWORD) -> str:
    answer = fetch(
        server,
        "/api/v1/tokens/",
        method="POST",
        body=json.dumps({"username": username, "password": password}),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 201, answer.body
    token: str = json.loads(answer.body)["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status_with(server: Any, token: str) -> int:
    return fetch(server, "/api/v1/me/ratings/", headers=bearer(token)).status


@pytest.fixture(scope="module")
def redis_env(redis_server: RedisServer) -> Callable[..., dict[str, str]]:
    def env(**rates: str) -> dict[str, str]:
        return {"REDIS_URL": redis_server.url, "THROTTLE_KEY_PREFIX": prefix(), "TRUSTED_PROXY_COUNT": "0", **rates}

    return env


@pytest.fixture
def admin_server(
    transactional_db: None, live_server_factory: Callable[..., Any], redis_env: Callable[..., dict[str, str]]
) -> Callable[[str, str], Any]:
    """A staff user `boss`, and a gunicorn with 4 workers limiting admin log-ins per address and per username."""
    staff_user("boss")

    def start(ip_rate: str, username_rate: str) -> Any:
        env = redis_env(THROTTLE_ADMIN_LOGIN_IP_RATE=ip_rate, THROTTLE_ADMIN_LOGIN_USERNAME_RATE=username_rate)
        return live_server_factory(workers=4, env=env)

    return start


# ---- the admin's log-in ------------------------------------------------------------------------


def test_admin_log_in_failures_are_limited_per_username_across_workers(admin_server: Callable[[str, str], Any]) -> None:
    server = admin_server("off", "4/min")
    # 12 wrong passwords at once, each from its own address: the username's limit holds across the workers.
    answers = burst(12, lambda index: admin_log_in(server, "boss", "wrong", source=f"127.0.2.{index + 1}"))
    assert sorted(answer.status for answer in answers) == [200] * 4 + [429] * 8
    for answer in answers:
        if answer.status == 429:
            assert_log_in_refused(answer, 60)
            assert '"admin_login_username";r=0;t=' in answer.headers["ratelimit"]
    # Locked for the window, whatever the address and even with the right password (nor does case escape it).
    assert_log_in_refused(admin_log_in(server, "BOSS", PASSWORD, source="127.0.2.100"), 60)
    assert_log_in_refused(admin_log_in(server, "boss", PASSWORD, source="127.0.2.101"), 60)
    # Another username is not locked.
    staff_user("other")
    assert admin_log_in(server, "other", PASSWORD, source="127.0.2.1").status == 302

    metrics = fetch(server, "/metrics").body.decode()
    assert metric_value(metrics, "movieapi_throttle_refusals_total", scope="admin_login_username") == 10
    assert metric_value(metrics, "movieapi_throttle_refusals_total", scope="admin_login_ip") == 0


def test_admin_log_in_failures_are_limited_per_address_and_successes_are_free(
    admin_server: Callable[[str, str], Any],
) -> None:
    server = admin_server("3/min", "3/min")
    # More successful log-ins than either limit: none of them counts.
    assert [admin_log_in(server, "boss", PASSWORD, source="127.0.2.200").status for _ in range(5)] == [302] * 5
    # Guesses spread over usernames from one address: its limit refuses the fourth, a right password too.
    guesses = [admin_log_in(server, f"guess{n}", "wrong", source="127.0.2.200").status for n in range(3)]
    assert guesses == [200] * 3
    refused = admin_log_in(server, "guess9", "wrong", source="127.0.2.200")
    assert_log_in_refused(refused, 60)
    assert '"admin_login_ip";r=0;t=' in refused.headers["ratelimit"]
    assert_log_in_refused(admin_log_in(server, "boss", PASSWORD, source="127.0.2.200"), 60)
    # The user from another address is not locked: the guesses never named them.
    assert admin_log_in(server, "boss", PASSWORD, source="127.0.2.201").status == 302


# ---- failed bearer tokens ----------------------------------------------------------------------


def test_bad_tokens_are_counted_against_the_address_and_a_valid_token_is_not(
    transactional_db: None, live_server_factory: Callable[..., Any], redis_env: Callable[..., dict[str, str]]
) -> None:
    User.objects.create_user("reader", "reader@example.com", PASSWORD)
    server = live_server_factory(workers=4, env=redis_env(THROTTLE_ANON_RATE="20/min", THROTTLE_AUTH_RATE="off"))
    token = api_log_in(server, "reader")

    answers = burst(30, lambda _: fetch(server, source="127.0.3.1", headers=bearer(os.urandom(32).hex())))
    assert sorted(answer.status for answer in answers) == [401] * 20 + [429] * 10
    for answer in answers:
        assert answer.headers["ratelimit-policy"] == '"anon";q=20;w=60, "global";q=1000000;w=1'
        assert re.fullmatch(f"{RATELIMIT_ITEM}, {RATELIMIT_ITEM}", answer.headers["ratelimit"])
        if answer.status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")
        else:
            assert_refusal(answer, 60)
            assert answer.scope("anon")[0] == 0
    assert sorted(answer.scope("anon")[0] for answer in answers if answer.status == 401) == list(range(20))

    # A valid token from the same address counts against its user, not the spent address.
    valid = fetch(server, source="127.0.3.1", headers=bearer(token))
    assert valid.status == 200
    assert valid.headers["ratelimit-policy"].startswith('"user";q=')
    # Anonymous requests from that address share its quota, which the bad tokens spent.
    assert_refusal(fetch(server, source="127.0.3.1"), 60)


# ---- tokens die with the password, or all at once ----------------------------------------------


def test_a_password_changed_in_the_admin_revokes_every_token(transactional_db: None, live_gunicorn: Any) -> None:
    staff_user("boss")
    User.objects.create_user("reader", "reader@example.com", PASSWORD)
    tokens = [api_log_in(live_gunicorn, "reader") for _ in range(2)]
    bystander = api_log_in(live_gunicorn, "boss")
    assert [status_with(live_gunicorn, token) for token in tokens] == [200, 200]

    with requests.Session() as browser:  # the admin's own forms, with their session and CSRF cookies
        browser.get(f"{live_gunicorn.url}/admin/login/", timeout=10)
        logged_in = browser.post(
            f"{live_gunicorn.url}/admin/login/?next=/admin/",
            {"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=10,
        )
        assert logged_in.status_code == 302
        reader = User.objects.get(username="reader")
        form = f"{live_gunicorn.url}/admin/auth/user/{reader.pk}/password/"
        browser.get(form, timeout=10)
        new_password = "a-new-password-7"
        changed = browser.post(
            form,
            {"password1": new_password, "password2": new_password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=10,
        )
        assert changed.status_code == 302, changed.text[:2000]
    assert [status_with(live_gunicorn, token) for token in tokens] == [401, 401]
    assert status_with(live_gunicorn, bystander) == 200  # another user's token lives on
    assert status_with(live_gunicorn, api_log_in(live_gunicorn, "reader", new_password)) == 200


def test_log_out_everywhere_revokes_every_token_of_the_caller(transactional_db: None, live_gunicorn: Any) -> None:
    User.objects.create_user("reader", "reader@example.com", PASSWORD)
    User.objects.create_user("other", "other@example.com", PASSWORD)
    tokens = [api_log_in(live_gunicorn, "reader") for _ in range(3)]
    bystander = api_log_in(live_gunicorn, "other")

    answer = fetch(live_gunicorn, "/api/v1/tokens/", method="DELETE", headers=bearer(tokens[1]))
    assert answer.status == 204
    assert answer.body == b""
    assert [status_with(live_gunicorn, token) for token in tokens] == [401, 401, 401]
    assert status_with(live_gunicorn, bystander) == 200
    # Without a token there is nothing to revoke: 401, as for DELETE tokens/current/.
    anonymous = fetch(live_gunicorn, "/api/v1/tokens/", method="DELETE")
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
