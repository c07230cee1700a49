"""Registration: `POST users/` creates a plain account that can then log in."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

URL = "/api/v1/users/"
GOOD = {"username": "neo", "email": "neo@example.com", "password": "follow-the-white-rabbit"}


def test_register_then_log_in_and_rate(anon: APIClient) -> None:
    response = anon.post(URL, GOOD, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"id", "username", "email"}
    assert body["username"] == "neo"
    assert body["email"] == "neo@example.com"
    user = User.objects.get(pk=body["id"])
    assert user.check_password(GOOD["password"])
    assert (user.is_staff, user.is_superuser, user.groups.exists()) == (False, False, False)
    assert not user.get_all_permissions()

    login = anon.post("/api/v1/tokens/", {"username": "neo", "password": GOOD["password"]}, format="json")
    assert login.status_code == 201
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {login.json()['token']}")
    assert client.get("/api/v1/me/ratings/").status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "NEO"}, "username"),
        ({"email": "Neo@Example.com"}, "email"),
        ({"username": "neo", "email": "NEO@example.com"}, "username"),
    ],
)
def test_taken_username_or_email_is_400_naming_it(anon: APIClient, change: dict[str, str], field: str) -> None:
    assert anon.post(URL, GOOD, format="json").status_code == 201
    body = {**GOOD, "username": "trinity", "email": "trinity@example.com", **change}
    response = anon.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert User.objects.count() == 1


def test_taken_username_and_email_are_both_named(anon: APIClient) -> None:
    anon.post(URL, GOOD, format="json")
    response = anon.post(URL, GOOD, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "email"}


@pytest.mark.parametrize(
    "password",
    ["short1!", "password123", "12345678901234", "neo@example.com", "neo.example"],
    ids=["too-short", "common", "numeric", "same-as-email", "like-email"],
)
def test_weak_password_is_400(anon: APIClient, password: str) -> None:
    response = anon.post(URL, {**GOOD, "password": password}, format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["password"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "is_staff": True}, "is_staff"),
        ({**GOOD, "groups": ["curators"]}, "groups"),
        ({k: v for k, v in GOOD.items() if k != "email"}, "email"),
        ({k: v for k, v in GOOD.items() if k != "password"}, "password"),
        ({**GOOD, "username": 42}, "username"),
        ({**GOOD, "username": "neo smith"}, "username"),
        ({**GOOD, "username": "n\x00eo"}, "username"),
        ({**GOOD, "username": "x" * 151}, "username"),
        ({**GOOD, "email": "not-an-email"}, "email"),
        ({**GOOD, "email": None}, "email"),
        ({**GOOD, "password": None}, "password"),
    ],
)
def test_bad_input_is_400_naming_the_field(anon: APIClient, body: dict[str, Any], field: str) -> None:
    response = anon.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert not User.objects.exists()


def test_lone_surrogate_is_400_not_500(anon: APIClient) -> None:
    raw = '{"username": "neo", "email": "neo@example.com", "password": "\\ud800-lone-surrogate"}'
    response = anon.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["password"]
    assert not User.objects.exists()


def test_read_only_id_is_ignored(anon: APIClient) -> None:
    response = anon.post(URL, {**GOOD, "id": 12345}, format="json")
    assert response.status_code == 201
    assert response.json()["id"] != 12345 or User.objects.get().pk == 12345
