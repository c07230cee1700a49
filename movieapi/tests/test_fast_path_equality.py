"""Fast paths answer exactly as the framework pieces they replace (docs/performance.md, "Fast paths").

Each test compares the fast path with the framework's own behaviour on real PostgreSQL: django-cors-headers'
middleware, DRF's request cycle and reference counting, django-filter's FilterSet, Django's session middlewares,
DRF's JSON renderer.
"""

from __future__ import annotations

import datetime
import gc
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import django_filters
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.forms import BaseForm
from django.http import HttpRequest, QueryDict
from django.http.response import HttpResponseBase
from django.test import Client, RequestFactory, override_settings
from django.test.client import ClientHandler
from django.test.utils import CaptureQueriesContext
from django.utils.translation import gettext_lazy
from django_filters.filterset import BaseFilterSet
from knox.models import AuthToken
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient
from rest_framework.views import APIView

from movieapi.renderers import ORJSONRenderer
from movies.filters import MovieFilterSet
from movies.models import Genre, Movie
from movies.tests.factories import MovieFactory
from movies.tests.test_read_path import declared
from movies.views import MovieFilters

pytestmark = pytest.mark.django_db

STOCK_CORS = "corsheaders.middleware.CorsMiddleware"
OUR_CORS = "movieapi.middleware.CorsMiddleware"
# Headers that differ between any two requests whatever the middleware: the request id and the rate limit left.
_PER_REQUEST_HEADERS = {"x-request-id", "ratelimit"}


def _middleware_with(replacements: dict[str, str]) -> list[str]:
    from django.conf import settings

    return [replacements.get(name, name) for name in settings.MIDDLEWARE]


def _answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {name.lower(): value for name, value in response.items() if name.lower() not in _PER_REQUEST_HEADERS}
    return response.status_code, headers, response.content


# ---- CORS with origins configured --------------------------------------------------------------

_ORIGIN_SETTINGS: list[dict[str, Any]] = [
    {"CORS_ALLOWED_ORIGINS": ["https://app.example.com"]},
    {"CORS_ALLOWED_ORIGIN_REGEXES": [r"^https://\w+\.example\.com$"]},
    {"CORS_ALLOW_ALL_ORIGINS": True},
]


@pytest.mark.parametrize("origins", _ORIGIN_SETTINGS, ids=["listed", "regex", "all"])
def test_cors_answers_as_django_cors_headers(origins: dict[str, Any]) -> None:
    movie = MovieFactory.create()
    detail = f"/api/v1/movies/{movie.pk}/"
    preflight = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "PATCH"}
    asked_headers = {**preflight, "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization, if-match, content-type"}
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("options", detail, {"HTTP_ORIGIN": "https://app.example.com", **asked_headers}),
        ("options", detail, {"HTTP_ORIGIN": "https://app.example.com", **preflight}),
        ("options", detail, {"HTTP_ORIGIN": "https://evil.example.org", **asked_headers}),
        ("options", detail, {}),  # no Origin: a plain OPTIONS, not a preflight
        ("get", detail, {"HTTP_ORIGIN": "https://app.example.com"}),
        ("get", detail, {"HTTP_ORIGIN": "https://evil.example.org"}),
        ("get", detail, {}),
        ("get", "/api/v1/movies/?page_size=2", {"HTTP_ORIGIN": "https://app.example.com"}),
        ("head", detail, {"HTTP_ORIGIN": "https://app.example.com"}),
        ("get", "/api/v1/no-such-route/", {"HTTP_ORIGIN": "https://app.example.com"}),
        ("get", "/healthz", {"HTTP_ORIGIN": "https://app.example.com"}),  # outside CORS_URLS_REGEX
    ]

    def answers() -> list[tuple[int, dict[str, str], bytes]]:
        client = Client()  # a new handler: it loads MIDDLEWARE as it is now
        return [_answer(getattr(client, method)(path, **headers)) for method, path, headers in requests]

    with override_settings(**origins):
        ours = answers()
        with override_settings(MIDDLEWARE=_middleware_with({OUR_CORS: STOCK_CORS})):
            stock = answers()
    assert any("access-control-allow-origin" in headers for _, headers, _ in stock)  # the comparison means something
    for request, our, theirs in zip(requests, ours, stock, strict=True):
        assert our == theirs, request


# ---- no DRF objects left for the cycle collector -----------------------------------------------


# What one request must never leave for the cycle collector: the request (Django's and DRF's), the response, the
# view, a FilterSet or a form. Each of them holds the request, so any one of them in a cycle keeps all of it.
_REQUEST_SCOPED = (HttpRequest, Request, HttpResponseBase, APIView, BaseFilterSet, BaseForm)
# The one cycle a serializer-backed answer still leaves: DRF's serializer and its fields point at each other
# (`field.parent`). Its context (request, view) is emptied (ReleaseViewMiddleware) or was never set (the movie write
# serializer's), so the cycle holds no more than the serializer, its fields and validators, and the instance.
_SERIALIZER_CYCLE = (
    "rest_framework.",
    "movieapi.fields.",
    "movies.serializers.",
    "movies.models.",
    "django.core.validators.",
    "django.db.models.base.ModelState",
)
# What a refused query parameter still leaves: Django's ValidationError is a cycle of its own (`error_list = [self]`),
# holding its message only (movieapi.filtersets.release_filterset drops its traceback).
_VALIDATION_ERROR_CYCLE = ("django.core.exceptions.ValidationError",)
_CONTAINERS = (dict, list, tuple, set)


def _garbage_after(serve: Callable[[], int], expected_status: int) -> list[Any]:
    """What one request leaves in reference cycles (after a first request has filled per-process caches)."""
    assert serve() == expected_status
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert serve() == expected_status
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# (name, method, path, body, status, what the answer may leave in a cycle of its own: nothing request-scoped)
_CYCLE_CASES = [
    ("detail", "GET", "/api/v1/movies/{id}/", None, 200, ()),
    ("list", "GET", "/api/v1/movies/?page_size=5&page=2", None, 200, ()),
    ("filtered list", "GET", "/api/v1/movies/?year_min=1900&genre=drama&ordering=-year", None, 200, ()),
    ("search", "GET", "/api/v1/movies/?search=matrix", None, 200, ()),
    ("404", "GET", "/api/v1/movies/999999999/", None, 404, ()),
    ("400 paging", "GET", "/api/v1/movies/?page=0", None, 400, ()),
    ("400 filter", "GET", "/api/v1/movies/?year_min=abc", None, 400, _VALIDATION_ERROR_CYCLE),
    ("400 repeated", "GET", "/api/v1/movies/?year_min=1&year_min=2", None, 400, _VALIDATION_ERROR_CYCLE),
    ("400 unknown", "GET", "/api/v1/people/?nope=1", None, 400, _VALIDATION_ERROR_CYCLE),
    ("people", "GET", "/api/v1/people/?search=keanu", None, 200, _SERIALIZER_CYCLE),
    ("genres", "GET", "/api/v1/genres/", None, 200, _SERIALIZER_CYCLE),
    ("PATCH", "PATCH", "/api/v1/movies/{id}/", {"title": "Renamed"}, 200, _SERIALIZER_CYCLE),
    ("PATCH 400", "PATCH", "/api/v1/movies/{id}/", {"year": "not a year"}, 400, _SERIALIZER_CYCLE),
    ("PATCH 404", "PATCH", "/api/v1/movies/999999999/", {"title": "Nobody"}, 404, _SERIALIZER_CYCLE),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "own_cycle"),
    [case[1:] for case in _CYCLE_CASES],
    ids=[case[0] for case in _CYCLE_CASES],
)
def test_no_drf_objects_are_left_for_the_cycle_collector(
    curator: User, method: str, path: str, body: dict[str, Any] | None, status: int, own_cycle: tuple[str, ...]
) -> None:
    movie: Movie = MovieFactory.create()
    MovieFactory.create_batch(9)
    token = AuthToken.objects.create(user=curator)[1]
    handler = ClientHandler()  # Django's handler as the test client drives it (connections stay the test's)
    factory = RequestFactory()

    def serve() -> int:
        url = path.format(id=movie.pk)
        if body is None:
            environ = factory.generic(method, url).environ
        else:
            version = Movie.objects.values_list("version", flat=True).get(pk=movie.pk)
            data = json.dumps({**body, "version": version})
            environ = factory.generic(
                method, url, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
            ).environ
        response = handler(dict(environ))
        b"".join(response)
        return int(response.status_code)

    garbage = _garbage_after(serve, status)
    assert sorted({_type_name(obj) for obj in garbage if isinstance(obj, _REQUEST_SCOPED)}) == []
    left = {_type_name(obj) for obj in garbage if not (own_cycle and isinstance(obj, _CONTAINERS))}
    assert sorted(name for name in left if not (own_cycle and name.startswith(own_cycle))) == []


# ---- FilterSets share no mutable state --------------------------------------------------------


class StockMovieFilters(MovieFilterSet):
    """The same FilterSet without CachedFormMixin: django-filter's own per-request copies."""


def _field_state(form_class: type) -> dict[str, dict[str, Any]]:
    return {name: dict(vars(field)) for name, field in form_class.base_fields.items()}  # type: ignore[attr-defined]


def _filtered_sql(filterset: Any) -> str:
    """What django-filter's own filter step makes of the cleaned data (each filter applied in turn)."""
    return str(django_filters.FilterSet.filter_queryset(filterset, Movie.objects.order_by("id")).query)


@pytest.mark.parametrize("interleaved", [False, True], ids=["in-sequence", "interleaved"])
def test_filtersets_share_no_mutable_state_across_requests(interleaved: bool) -> None:
    queries = [
        "genre=drama&year_min=1990&person=7",
        "year_min=abc&runtime_max=-1&genre=drama",
        "search=matrix&ordering=-year&rating_min=7.5",
        "genre=no-such-genre&year_max=2000",
    ]
    MovieFilters(QueryDict(queries[0]), queryset=Movie.objects.all()).is_valid()  # the form class is built once
    form_class = MovieFilters(QueryDict(""), queryset=Movie.objects.all()).get_form_class()
    fields_before = _field_state(form_class)

    def make(query: str) -> Any:
        return MovieFilters(QueryDict(query), queryset=Movie.objects.all())

    if interleaved:
        filtersets = [make(query) for query in queries]
        for filterset in reversed(filtersets):
            filterset.is_valid()
    else:
        filtersets = []
        for query in queries:
            filtersets.append(make(query))
            filtersets[-1].is_valid()

    for query, filterset in zip(queries, filtersets, strict=True):
        stock = StockMovieFilters(QueryDict(query), queryset=Movie.objects.all())
        assert filterset.is_valid() == stock.is_valid(), query
        assert filterset.errors == stock.errors, query
        assert filterset.form.cleaned_data == stock.form.cleaned_data, query
        if filterset.is_valid():
            assert _filtered_sql(filterset) == _filtered_sql(stock), query
        assert type(filterset.form) is form_class
        for name, copied in filterset.filters.items():
            assert copied.parent is filterset, (query, name)
    first, second = filtersets[0], filtersets[1]
    assert first.form is not second.form
    assert first.form.fields is not second.form.fields
    assert first.filters is not second.filters
    assert not set(map(id, first.filters.values())) & set(map(id, second.filters.values()))
    assert _field_state(form_class) == fields_before  # no instance changed the shared fields


# ---- the admin keeps its sessions; the API skips them -----------------------------------------

STOCK_SESSIONS = {
    "movieapi.middleware.SessionMiddleware": "django.contrib.sessions.middleware.SessionMiddleware",
    "movieapi.middleware.AuthenticationMiddleware": "django.contrib.auth.middleware.AuthenticationMiddleware",
    "movieapi.middleware.MessageMiddleware": "django.contrib.messages.middleware.MessageMiddleware",
}


def _admin_visit(username: str, password: str) -> list[tuple[str, int, str, str, frozenset[str]]]:
    """Log in through the form (CSRF enforced), add a genre, read the message, log out: what each step answered."""
    client = Client(enforce_csrf_checks=True)
    steps = []

    def step(name: str, response: Any) -> Any:
        text = response.content.decode() if response.get("Content-Type", "").startswith("text/html") else ""
        said = " ".join(re.findall(r'<li class="(?:success|info|warning|error)">(.*?)</li>', text, re.S))
        said = re.sub(r"/\d+/", "/<id>/", said)
        steps.append((name, response.status_code, response.get("Location", ""), said, frozenset(response.cookies)))
        return response

    step("login page", client.get("/admin/login/?next=/admin/"))
    csrf = client.cookies["csrftoken"].value
    data = {"username": username, "password": password, "next": "/admin/", "csrfmiddlewaretoken": csrf}
    step("log in", client.post("/admin/login/?next=/admin/", data))
    index = step("index", client.get("/admin/"))
    assert b"Log out" in index.content
    form = {"slug": "noir", "name": "Film noir", "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    step("add genre", client.post("/admin/movies/genre/add/", form))
    step("changelist", client.get("/admin/movies/genre/"))
    step("changelist again", client.get("/admin/movies/genre/"))  # a message is shown once
    step("api", client.get("/api/v1/genres/"))
    step("log out", client.post("/admin/logout/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value}))
    step("index after", client.get("/admin/"))
    Genre.objects.filter(slug="noir").delete()
    return steps


def test_the_admin_keeps_its_sessions_as_djangos_middleware_does() -> None:
    User.objects.create_superuser("boss", "boss@example.com", "a-long-enough-password-9")
    ours = _admin_visit("boss", "a-long-enough-password-9")
    with override_settings(MIDDLEWARE=_middleware_with(STOCK_SESSIONS)):
        stock = _admin_visit("boss", "a-long-enough-password-9")
    assert ours == stock
    by_step = {name: (status, location, said, cookies) for name, status, location, said, cookies in ours}
    assert by_step["log in"][:2] == (302, "/admin/")
    assert "sessionid" in by_step["log in"][3]
    assert "was added successfully" in by_step["changelist"][2]
    assert not by_step["changelist again"][2]
    assert by_step["index after"][0] == 302  # to the login page: the session is gone


def test_the_api_skips_sessions_even_with_a_session_cookie() -> None:
    User.objects.create_superuser("boss", "boss@example.com", "a-long-enough-password-9")
    client = Client()
    client.login(username="boss", password="a-long-enough-password-9")
    assert "sessionid" in client.cookies
    with CaptureQueriesContext(connection) as queries:
        api = client.get("/api/v1/genres/")
    assert api.status_code == 200
    assert not any("django_session" in query["sql"] for query in queries)  # no session read or written
    assert not api.cookies  # no Set-Cookie
    assert "cookie" not in api.get("Vary", "").lower()
    assert not hasattr(api.wsgi_request, "session")
    # Django's own middlewares answer the API the same (DRF puts its own user on the request either way).
    with override_settings(MIDDLEWARE=_middleware_with(STOCK_SESSIONS)):
        stock = Client()
        stock.cookies = client.cookies
        assert _answer(stock.get("/api/v1/genres/")) == _answer(api)


# ---- the renderer --------------------------------------------------------------------------------


def test_orjson_renders_what_drfs_json_renderer_renders(anon: APIClient) -> None:
    movie = MovieFactory.create(title="Léon — «ça»", overview='A "quote", a \\ and a tab\t, a line\u2028separator.')
    values = {
        "decimal": Decimal("7.50"),
        "time": datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=datetime.UTC),
        "lazy": gettext_lazy("Not found."),
        "error": ErrorDetail("Too long.", code="max_length"),
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
    }
    bodies = [
        declared(movie.pk),
        anon.get("/api/v1/movies/", {"page_size": "5"}).json(),
        anon.get("/api/v1/movies/", {"page": "0"}).json(),  # a problem
        values,
    ]
    for data in bodies:
        drf = JSONRenderer().render(data)
        # The one difference: DRF escapes U+2028 and U+2029 (for JavaScript embedding), orjson writes them as UTF-8.
        ours = ORJSONRenderer().render(data)
        ours = ours.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
        assert ours == drf
        assert json.loads(ORJSONRenderer().render(data)) == json.loads(drf)
    assert ORJSONRenderer().render(None) == JSONRenderer().render(None) == b""
