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
