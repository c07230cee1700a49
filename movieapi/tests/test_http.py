"""First contact in process: the index, the 404 text, the docs pages (offline, problems when throttled), and
integers too long to convert (docs/http.md)."""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from movies.tests.factories import MovieFactory

pytestmark = pytest.mark.django_db

HUGE = "9" * 5000  # over Python's 4300-digit limit for int(str)
# Any absolute http(s) URL in a page: the docs pages must name none (they load everything from this server).
ABSOLUTE_URL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ---- the index ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/v1/"])
def test_the_index_lists_the_resources_and_docs_as_absolute_urls(anon: APIClient, path: str) -> None:
    response = anon.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    index = response.json()
    assert index["resources"]["movies"] == "http://testserver/api/v1/movies/"
    assert index["docs"] == {
        "swagger_ui": "http://testserver/api/docs/",
        "redoc": "http://testserver/api/redoc/",
        "schema": "http://testserver/api/schema/",
    }
    assert "http://testserver/api/v1/tokens/" in index["authentication"]


def test_every_url_the_index_names_answers(anon: APIClient, user_client: APIClient) -> None:
    index = anon.get("/api/v1/").json()
    for name, url in {**index["resources"], **index["docs"]}.items():
        path = url.removeprefix("http://testserver")
        if name in ("users", "tokens"):  # POST only
            assert anon.get(path).status_code == 405, name
        else:
            assert user_client.get(path).status_code == 200, name


def test_the_index_is_not_in_the_schema_and_leaves_its_operation_ids_alone() -> None:
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/" not in paths
    assert "/api/v1/" not in paths
    # The generator strips the paths' common prefix from operation ids; `/` among them would make it `/`.
    assert paths["/api/v1/movies/"]["get"]["operationId"] == "v1_movies_list"


@pytest.mark.parametrize("path", ["/api/v1/nothing/", "/nothing", "/api/v2/"])
def test_the_404_text_points_to_the_index_and_does_not_contradict_itself(anon: APIClient, path: str) -> None:
    problem = assert_problem(anon.get(path), 404)
    assert problem["detail"] == f"There is nothing at {path}. GET /api/v1/ lists what there is."
    assert anon.get("/api/v1/").status_code == 200  # the index it points to


# ---- the docs pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/redoc/", "/api/docs/", "/api/docs/?script="])
def test_the_docs_pages_name_no_other_host_and_forbid_loading_from_one(anon: APIClient, path: str) -> None:
    response = anon.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert not ABSOLUTE_URL.search(page), page
    assert "fonts.googleapis.com" not in page
    policy = response.get("Content-Security-Policy", "")
    assert "default-src 'self'" in policy
    for directive in policy.split("; "):
        _directive, *sources = directive.split()
        assert all(source.startswith("'") or source in ("data:", "blob:") for source in sources), directive


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/", "/api/schema/"])
def test_a_throttled_docs_page_answers_a_real_problem(settings: Any, path: str) -> None:
    settings.THROTTLE_KEY_PREFIX = f"t-{os.urandom(6).hex()}:"
    throttle_rates = {"anon": "1/min", "user": "off", "auth": "off", "global": "off"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": throttle_rates}
    client = APIClient()
    assert client.get(path).status_code == 200
    problem = assert_problem(client.get(path), 429)
    assert problem["type"] == "urn:movieapi:problem:rate-limited"
    assert int(client.get(path)["Retry-After"]) >= 1


@pytest.mark.parametrize("path", ["/", "/api/v1/", "/api/docs/", "/api/redoc/", "/api/schema/"])
def test_options_on_the_first_contact_pages_answers_allow(anon: APIClient, path: str) -> None:
    response = anon.options(path)
    assert response.status_code in (200, 204), response.content[:300]
    assert "GET" in response["Allow"]


def test_a_docs_page_asked_for_a_format_it_lacks_is_a_problem(anon: APIClient) -> None:
    assert_problem(anon.get("/api/schema/", HTTP_ACCEPT="image/png"), 406)


# ---- integers longer than Python converts ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/movies/", '{"title": "Big", "year": HUGE}'),
        ("post", "/api/v1/movies/", '{"title": "Big", "year": 2000, "cast": [{"person": -HUGE, "character": "x"}]}'),
        ("patch", "/api/v1/movies/{movie}/", '{"version": HUGE}'),
        ("put", "/api/v1/movies/{movie}/rating/", '{"score": HUGE}'),
        ("post", "/api/v1/people/", '{"name": "Someone", "id": HUGE}'),
    ],
    ids=["movie-year", "cast-person", "version", "rating-score", "person-read-only-id"],
)
def test_an_over_long_integer_in_a_body_is_a_400_without_python_s_advice(
    curator_client: APIClient, method: str, path: str, body: str
) -> None:
    movie = MovieFactory.create()
    response = getattr(curator_client, method)(
        path.format(movie=movie.pk), data=body.replace("HUGE", HUGE), content_type="application/json"
    )
    problem = assert_problem(response, 400)
    assert (
        problem["detail"] == "The body has an integer of 5000 digits; no field takes more than 19 (a 64-bit integer)."
    )
    assert "set_int_max_str_digits" not in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/movies/{HUGE}/",
        f"/api/v1/movies/{HUGE}/rating/",
        f"/api/v1/people/{HUGE}/",
        f"/api/v1/genres/{HUGE}/",
        f"/api/v1/movies/?year_min={HUGE}",
        f"/api/v1/movies/?person={HUGE}",
        f"/api/v1/movies/?rating_min={HUGE}",
        f"/api/v1/movies/?page={HUGE}",
        f"/api/v1/movies/?page_size={HUGE}",
        f"/api/v1/people/?page={HUGE}",
    ],
)
def test_an_over_long_integer_in_a_path_or_query_is_a_plain_4xx(user_client: APIClient, path: str) -> None:
    response = user_client.get(path)
    assert response.status_code in (400, 404), response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert "set_int_max_str_digits" not in response.content.decode()


# ---- chunked bodies at the WSGI layer (live: test_http_live.py) ---------------------------------


def call_wsgi(environ: dict[str, Any]) -> tuple[str, dict[str, Any] | None, bytes]:
    """Run ChunkedBodyReader around an app that records the environ and body it was handed."""
    from movieapi.middleware import ChunkedBodyReader

    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ, body=environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [])
        return [b""]

    statuses: list[str] = []
    answer = b"".join(ChunkedBodyReader(app)(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], seen or None, answer


def test_a_chunked_body_reaches_django_with_its_length() -> None:
    status, seen, _ = call_wsgi(
        {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b'{"a": 1}'), "wsgi.input_terminated": True}
    )
    assert status == "200 OK"
    assert seen is not None
    assert (seen["CONTENT_LENGTH"], seen["body"]) == ("8", b'{"a": 1}')


def test_a_chunked_body_a_server_cannot_end_is_411_not_empty() -> None:
    status, seen, answer = call_wsgi({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"5\r\nhello")})
    assert status == "411 Length Required"
    assert seen is None  # the application never ran
    assert json.loads(answer)["status"] == 411
