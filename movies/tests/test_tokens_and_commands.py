"""Logging in and out with bearer tokens, the curators group, and create_curator."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_login_returns_a_hashed_expiring_token_that_works(anon: APIClient, curator: User) -> None:
    response = anon.post(
        "/api/v1/tokens/", {"username": "curator", "password": "a-long-enough-password-2"}, format="json"
    )
    assert response.status_code == 201, response.json()
    token = response.json()["token"]
    assert response.json()["expiry"]
    stored = AuthToken.objects.get(user=curator)
    assert token not in (stored.digest, stored.token_key)  # only a hash and a short key prefix are stored
    assert stored.expiry is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    created = client.post("/api/v1/genres/", {"slug": "tokens", "name": "Tokens"}, format="json")
    assert created.status_code == 201


def test_wrong_password_is_401(anon: APIClient, curator: User) -> None:
    response = anon.post("/api/v1/tokens/", {"username": "curator", "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert not AuthToken.objects.exists()


def test_login_validates_input(anon: APIClient) -> None:
    response = anon.post("/api/v1/tokens/", {"username": "x"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["errors"]


def test_logout_revokes_only_the_current_token(curator: User) -> None:
    _, first = AuthToken.objects.create(user=curator)
    _, second = AuthToken.objects.create(user=curator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first}")
    assert client.delete("/api/v1/tokens/current/").status_code == 204
    assert client.get("/api/v1/movies/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second}")
    assert client.get("/api/v1/movies/").status_code == 200


def test_logout_without_token_is_401(anon: APIClient) -> None:
    response = anon.delete("/api/v1/tokens/current/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(curator: User) -> None:
    from datetime import timedelta

    _, token = AuthToken.objects.create(user=curator, expiry=timedelta(seconds=-1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/movies/").status_code == 401


def test_create_curator_makes_a_curator(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    call_command("create_curator", "alice", "--password", "correct-horse-battery", stdout=out)
    alice = User.objects.get(username="alice")
    assert alice.check_password("correct-horse-battery")
    assert alice.groups.filter(name="curators").exists()
    assert alice.has_perm("movies.change_movie")
    monkeypatch.setenv("CURATOR_PASSWORD", "another-long-password")
    call_command("create_curator", "alice", stdout=out)
    alice.refresh_from_db()
    assert alice.check_password("another-long-password")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bob"], "No password"),
        (["bob", "--password", "123"], "Password refused"),
        (["bad name!", "--password", "correct-horse-battery"], "Bad username"),
    ],
)
def test_create_curator_refuses_bad_input(monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    monkeypatch.delenv("CURATOR_PASSWORD", raising=False)
    with pytest.raises(CommandError, match=message):
        call_command("create_curator", *args)
    assert not User.objects.filter(username__in=["bob", "bad name!"]).exists()


def test_expired_token_is_deleted_when_used_and_others_when_logging_in(curator: User) -> None:
    from datetime import timedelta

    expired_row, expired = AuthToken.objects.create(user=curator, expiry=timedelta(seconds=-1))
    other_row, _ = AuthToken.objects.create(user=curator, expiry=timedelta(seconds=-1))
    live_row, live = AuthToken.objects.create(user=curator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {live}")
    assert client.get("/api/v1/me/ratings/").status_code == 200
    # Using a live token walks no other token: the expired ones are still there.
    assert AuthToken.objects.filter(user=curator).count() == 3
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {expired}")
    assert client.get("/api/v1/me/ratings/").status_code == 401
    assert not AuthToken.objects.filter(digest=expired_row.digest).exists()
    login = APIClient().post(
        "/api/v1/tokens/", {"username": "curator", "password": "a-long-enough-password-2"}, format="json"
    )
    assert login.status_code == 201
    remaining = set(AuthToken.objects.filter(user=curator).values_list("digest", flat=True))
    assert other_row.digest not in remaining
    assert live_row.digest in remaining
    assert len(remaining) == 2


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Bearer " + "x" * 200,
        "Bearer \u00e9t\u00e9",
        "Bearer 0123456789abcdef0123456789abcdef",
        "Bearer",  # no credentials
        "bearer   ",
        "Bearer abc def",  # spaces in the token
    ],
)
def test_unknown_or_malformed_tokens_are_401(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/movies/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "   "])
def test_other_schemes_are_not_ours_and_leave_the_caller_anonymous(db: None, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/movies/").status_code == 200  # a read, anonymous
    refused = client.get("/api/v1/me/ratings/")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"


def test_a_good_token_in_any_case_of_the_scheme_authenticates(curator: User) -> None:
    _, token = AuthToken.objects.create(user=curator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bEARER {token}")
    assert client.get("/api/v1/me/ratings/").status_code == 200


def test_inactive_users_token_is_401(curator: User) -> None:
    _, token = AuthToken.objects.create(user=curator)
    curator.is_active = False
    curator.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/movies/").status_code == 401


def test_permission_backend_answers_as_djangos_model_backend(curator: User) -> None:
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import AnonymousUser, Group, Permission
    from knox.settings import CONSTANTS

    from movieapi.authentication import PermissionBackend, _tokens_with_users

    plain = User.objects.create_user("plain", password="x-long-enough-1")
    direct = User.objects.create_user("direct", password="x-long-enough-1")
    direct.user_permissions.add(Permission.objects.get(codename="delete_genre"))
    both = User.objects.create_user("both", password="x-long-enough-1")
    both.groups.add(Group.objects.create(name="raters"))
    both.groups.get().permissions.add(Permission.objects.get(codename="view_rating"))
    both.user_permissions.add(Permission.objects.get(codename="view_rating"))
    boss = User.objects.create_superuser("boss", password="x-long-enough-1")
    gone = User.objects.create_user("gone", password="x-long-enough-1", is_active=False)
    gone.user_permissions.add(Permission.objects.get(codename="delete_genre"))
    for user in (curator, plain, direct, both, boss, gone, AnonymousUser()):
        ours = PermissionBackend().get_all_permissions(User.objects.get(pk=user.pk) if user.pk else user)
        djangos = ModelBackend().get_all_permissions(User.objects.get(pk=user.pk) if user.pk else user)
        assert ours == djangos, user
        if user.pk:  # a write's token statement reads the same set, cached on the user it loads
            _, key = AuthToken.objects.create(user=user)
            (with_token,) = _tokens_with_users(key[: CONSTANTS.TOKEN_KEY_LENGTH], with_permissions=True)
            assert PermissionBackend().get_all_permissions(with_token.user) == djangos, user
            assert with_token.user._perm_cache == djangos, user
    assert "movies.change_movie" in PermissionBackend().get_all_permissions(curator)
    assert PermissionBackend().get_all_permissions(curator, obj=object()) == set()
