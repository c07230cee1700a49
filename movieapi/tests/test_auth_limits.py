"""Authentication limits in process: every way a password changes revokes the user's tokens (and only those), the
admin's log-in form counts only attempts at a password, and a 401 from any view is counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from movieapi.tests.test_throttling import rates, sample, unique_prefix  # noqa: F401 - rates is a fixture

PASSWORD = "a-long-enough-password-1"


def tokens_of(user: User) -> int:
    return AuthToken.objects.filter(user=user).count()


@pytest.fixture
def holder(db: None) -> User:
    """A user with two tokens, and a bystander with one."""
    user = User.objects.create_user("holder", "holder@example.com", PASSWORD)
    for _ in range(2):
        AuthToken.objects.create(user=user)
    AuthToken.objects.create(user=User.objects.create_user("bystander", "by@example.com", PASSWORD))
    return user


def bystander_tokens() -> int:
    return AuthToken.objects.filter(user__username="bystander").count()


def test_set_password_and_save_revokes_the_users_tokens(holder: User) -> None:
    holder.set_password("another-long-password-2")
    holder.save()
    assert tokens_of(holder) == 0
    assert bystander_tokens() == 1


def test_changepassword_command_revokes_the_users_tokens(holder: User) -> None:
    with mock.patch("django.contrib.auth.management.commands.changepassword.getpass.getpass") as getpass:
        getpass.return_value = "another-long-password-2"
        call_command("changepassword", "holder", stdout=mock.Mock())
    assert tokens_of(holder) == 0
    assert bystander_tokens() == 1


def test_create_curator_resetting_a_password_revokes_the_users_tokens(holder: User) -> None:
    call_command("create_curator", "holder", password="another-long-password-2", stdout=mock.Mock())
    assert tokens_of(holder) == 0


def test_an_unusable_password_revokes_the_users_tokens(holder: User) -> None:
    holder.set_unusable_password()
    holder.save(update_fields=["password"])
    assert tokens_of(holder) == 0


def test_saves_that_do_not_change_the_password_keep_the_tokens(holder: User, settings: Any) -> None:
    holder.first_name = "Holder"
    holder.save()
    holder.save(update_fields=["last_login"])
    # A hash upgrade on log-in (more iterations, another hasher) is not a password change, as Django says.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    holder.password = make_password(PASSWORD, hasher="md5")
    holder.save(update_fields=["password"])  # a hash written directly, not through set_password: not counted
    holder.refresh_from_db()
    assert holder.check_password(PASSWORD)
    holder.refresh_from_db()
    assert holder.password.startswith("pbkdf2_sha256$")  # upgraded and saved
    assert tokens_of(holder) == 2
    # Logging in through the API (which saves last_login through the same model) keeps the others too.
    answer = APIClient().post("/api/v1/tokens/", {"username": "holder", "password": PASSWORD}, format="json")
    assert answer.status_code == 201
    assert tokens_of(holder) == 3


def test_log_out_everywhere_needs_a_token(db: None) -> None:
    answer = APIClient().delete("/api/v1/tokens/")
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")


# ---- the admin's log-in form -------------------------------------------------------------------


@pytest.fixture
def admin_limits(settings: Any) -> Callable[..., None]:
    settings.THROTTLE_KEY_PREFIX = unique_prefix()

    def set_limits(ip: str = "off", username: str = "off") -> None:
        settings.ADMIN_LOGIN_RATES = {"admin_login_ip": ip, "admin_login_username": username}

    return set_limits


def test_admin_log_in_counts_only_attempts_at_a_password(db: None, admin_limits: Callable[..., None]) -> None:
    admin_limits(ip="2/min")
    client = Client()
    # Missing fields: the form refuses them without checking any password, and they cost nothing.
    for data in ({"username": "boss"}, {"password": "x"}, {}):
        assert client.post("/admin/login/", data).status_code == 200
    assert [client.post("/admin/login/", {"username": "a", "password": "b"}).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]


def test_refused_admin_log_in_is_counted_in_metrics(db: None, admin_limits: Callable[..., None]) -> None:
    admin_limits(username="1/min")
    before = sample("movieapi_throttle_refusals_total", scope="admin_login_username")
    client = Client()
    answers = [client.post("/admin/login/", {"username": "boss", "password": "wrong"}) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [200, 429]
    assert answers[1]["RateLimit-Policy"] == '"admin_login_username";q=1;w=60'
    assert b"Too many failed log-in attempts" in answers[1].content
    assert sample("movieapi_throttle_refusals_total", scope="admin_login_username") == before + 1


# ---- 401s are counted --------------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_credentials_on_a_protected_endpoint_are_counted(rates: Callable[..., None]) -> None:  # noqa: F811
    rates(anon="2/min")
    client = APIClient()
    answers = [client.post("/api/v1/genres/", {"slug": "x", "name": "X"}, format="json") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [401, 401, 429]
    assert answers[0]["RateLimit"].startswith('"anon";r=1;')
    assert 1 <= int(answers[2]["Retry-After"]) <= 60
