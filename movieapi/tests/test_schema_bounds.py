"""The server refuses what its schema says it refuses (docs/openapi.md): lengths as sent, one value per parameter."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _errors(response: object) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content  # type: ignore[attr-defined]
    assert response["Content-Type"] == "application/problem+json"  # type: ignore[index]
    return json.loads(response.content)["errors"]  # type: ignore[attr-defined]


def test_max_length_counts_the_value_as_sent(curator_client: APIClient) -> None:
    """The schema's maxLength is the sent string's: trailing spaces trimmed later do not make room."""
    response = curator_client.post("/api/v1/genres/", {"slug": "long", "name": "n" * 100 + " "}, format="json")
    assert "name" in _errors(response)
    created = curator_client.post("/api/v1/genres/", {"slug": "long", "name": " " + "n" * 99}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "n" * 99


@pytest.mark.parametrize(
    "query",
    ["year_min=abc&year_min=1990", "search=a&search=b", "page=1&page=2", "page_size=5&page_size=6"],
)
def test_a_single_valued_parameter_given_twice_is_400(anon: APIClient, query: str) -> None:
    """A form reads the last value; the schema's parameter is one value: a repeat is refused, naming it."""
    name = query.split("=")[0]
    assert name in _errors(anon.get(f"/api/v1/movies/?{query}"))


@pytest.mark.parametrize("query", ["ordering=%25s", "ordering=%25", "genre=a%25d", "genre=%25(x)s"])
def test_a_percent_sign_in_a_refused_value_is_400(anon: APIClient, query: str) -> None:
    """django-filter formats each message with its params: the client's text in the message itself was a 500."""
    response = anon.get(f"/api/v1/movies/?{query}")
    assert query.split("=")[0] in _errors(response)
    assert "%" in json.dumps(response.json()["errors"])  # quoted back as sent


@pytest.mark.parametrize("path", ["/api/v1/movies/", "/api/v1/people/", "/api/v1/genres/"])
def test_search_length_counts_the_text_as_sent(anon: APIClient, path: str) -> None:
    """The schema's maxLength 200 is the parameter as sent: trailing blanks trimmed later do not make room."""
    assert "search" in _errors(anon.get(path, {"search": "a" * 200 + " "}))
    assert anon.get(path, {"search": " " + "a" * 199}).status_code == 200
