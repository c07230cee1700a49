"""The OpenAPI schema generates without warnings and documents the problem answers; the docs pages load."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from movieapi.fields import PY_WHITESPACE

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


# ---- the schema states what the server enforces (docs/openapi.md) --------------------------------


@pytest.fixture(scope="module")
def schema(django_db_blocker: object) -> dict:
    out = io.StringIO()
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def _parameter(operation: dict, name: str) -> dict:
    return next(parameter for parameter in operation["parameters"] if parameter["name"] == name)


def test_public_reads_document_optional_auth_and_every_status(schema: dict) -> None:
    paths = schema["paths"]
    for path in ("/api/v1/movies/", "/api/v1/movies/{id}/", "/api/v1/genres/", "/api/v1/people/{id}/"):
        get = paths[path]["get"]
        assert {} in get["security"], path
        assert {"knoxApiToken": []} in get["security"], path
        # A bad token is 401 even where none is needed; a missing resource or a page past the end 404.
        assert {"400", "401", "404", "406", "413", "429", "503"} <= set(get["responses"]), path
        assert "403" not in get["responses"], path
    assert paths["/api/v1/me/ratings/"]["get"]["security"] == [{"knoxApiToken": []}]
    assert {"401", "404"} <= set(paths["/api/v1/me/ratings/"]["get"]["responses"])
    assert "403" not in paths["/api/v1/me/ratings/"]["get"]["responses"]  # IsAuthenticated: 401, never 403
    assert {"403", "415"} <= set(paths["/api/v1/movies/"]["post"]["responses"])
    for code, response in paths["/api/v1/movies/{id}/"]["patch"]["responses"].items():
        if code.startswith(("4", "5")):
            assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_paging_and_filters_state_their_bounds(schema: dict) -> None:
    from movies.rules import DB_MAX_YEAR, MAX_RUNTIME

    movies = schema["paths"]["/api/v1/movies/"]["get"]
    assert _parameter(movies, "page")["schema"] == {"type": "integer", "minimum": 1, "maximum": 999999999}
    assert _parameter(movies, "page_size")["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert _parameter(movies, "year_min")["schema"] == {"type": "integer", "minimum": 0, "maximum": DB_MAX_YEAR}
    assert _parameter(movies, "runtime_max")["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_RUNTIME}
    assert _parameter(movies, "rating_min")["schema"] == {"type": "number", "minimum": 0, "maximum": 10}
    assert _parameter(movies, "person")["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert _parameter(movies, "search")["schema"]["maxLength"] == 200
    assert _parameter(movies, "year_min")["allowEmptyValue"] is True  # `year_min=` filters nothing
    ordering = re.compile(_parameter(movies, "ordering")["schema"]["pattern"])
    assert ordering.search("-year, title")
    assert not ordering.search("-year,nope")
    # At most MAX_ORDERING_KEYS comma-separated parts, as the filter counts them (empty parts included).
    assert ordering.search("rating,-year,title")
    assert not ordering.search("rating,-year,title,year")
    assert not ordering.search("title,,,year")


def test_request_bodies_are_closed_and_bounded(schema: dict) -> None:
    from movies.rules import max_year

    components = schema["components"]["schemas"]
    movie = components["MovieWriteRequest"]
    assert movie["additionalProperties"] is False
    assert {"id", "rating", "created_at", "updated_at"} <= set(movie["properties"])  # accepted and ignored
    assert movie["properties"]["year"]["minimum"] == 1888
    assert movie["properties"]["year"]["maximum"] == max_year()  # this year + 5, as of generation
    assert movie["properties"]["version"]["minimum"] == 1
    assert movie["properties"]["version"]["maximum"] == 2**63 - 1
    assert movie["properties"]["genres"]["uniqueItems"] is True
    assert components["CastWriteRequest"]["additionalProperties"] is False
    assert components["PatchedMovieWriteRequest"]["additionalProperties"] is False
    for name in ("GenreRequest", "PersonRequest", "RegistrationRequest", "LoginRequest", "RatingWriteRequest"):
        assert components[name]["additionalProperties"] is False, name
    title = re.compile(movie["properties"]["title"]["pattern"])
    assert title.search("Léon")
    assert not title.search(" \u3000\t")
    assert not title.search("a\x00b")
    assert components["PersonRequest"]["properties"]["imdb_id"]["pattern"] == "^nm[0-9]{7,}$"


def test_whitespace_class_is_pythons() -> None:
    """The schema's patterns spell out the characters str.strip() removes; no more, no fewer."""
    spelled = re.compile(f"[{PY_WHITESPACE}]")
    python = {chr(point) for point in range(0x110000) if chr(point).isspace()}
    matched = {chr(point) for point in range(0x110000) if spelled.fullmatch(chr(point))}
    assert matched == python
