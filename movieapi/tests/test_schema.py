"""The OpenAPI schema generates without warnings and documents the problem answers; the docs pages load."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings_and_validates() -> None:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    movie = schema["paths"]["/api/v1/movies/{id}/"]
    assert set(movie["patch"]["responses"]) >= {"200", "400", "401", "403", "404", "409", "412", "413", "415", "428"}
    problem = movie["patch"]["responses"]["409"]["content"]
    assert "application/problem+json" in problem
    assert "304" in movie["get"]["responses"]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
def test_docs_pages_are_served(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content  # assets are local (sidecar), so the docs work offline


def test_models_and_migrations_agree() -> None:
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
