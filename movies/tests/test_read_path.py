"""The movie read path: rows from prepared statements, the one shape, quiet health checks, quick negotiation."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest
from django.db import NotSupportedError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.http import Http404
from psycopg.postgres import types
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from movieapi.negotiation import ContentNegotiation
from movieapi.pagination import ListPlan
from movieapi.postgres.prepared import prepared_cursor
from movieapi.preconditions import representation_etag
from movieapi.renderers import ORJSONRenderer, dumps
from movies import selectors
from movies.models import Movie
from movies.serializers import MovieSerializer
from movies.sql import MOVIE_BY_ID_SQL, MOVIES_BY_IDS_SQL
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory

URL = "/api/v1/movies/"
TIMESTAMPTZ_OID = types["timestamptz"].oid


@pytest.fixture
def varied(db: None) -> list[Movie]:
    """Movies that exercise every field: no runtime or IMDb id, several directors, casts, other scripts, ratings."""
    drama, comedy = GenreFactory.create(slug="drama"), GenreFactory.create(slug="comedy")
    ann, bob, zoe = (PersonFactory.create(name=name) for name in ("Ann", "Bob", "Zoë «Z»"))
    movies = [
        MovieFactory.create(title="千と千尋の神隠し", runtime=None, imdb_id=None, genres=[drama, comedy]),
        MovieFactory.create(title='Quote "and" \\ backslash', overview="Line\nbreak\ttab", directors=[zoe, ann]),
        MovieFactory.create(title="Брат", imdb_id="tt0118767", directors=[bob]),
        MovieFactory.create(title="Empty", overview=""),
    ]
    CastMemberFactory.create(movie=movies[1], person=bob, character="Him 😀", order=1)
    CastMemberFactory.create(movie=movies[1], person=zoe, character="", order=0)
    Movie.objects.filter(pk=movies[0].pk).update(rating_count=3, rating_sum=20)  # 6.7
    Movie.objects.filter(pk=movies[2].pk).update(rating_count=1, rating_sum=10)
    return movies


def declared(movie_id: int) -> dict[str, Any]:
    """What DRF's declared fields of MovieSerializer make of the movie, read by the plain ORM."""
    return dict(serializers.Serializer.to_representation(MovieSerializer(), Movie.objects.get(pk=movie_id)))


def test_detail_and_list_answer_what_the_declared_fields_give(anon: APIClient, varied: list[Movie]) -> None:
    for movie in varied:
        response = anon.get(f"{URL}{movie.pk}/")
        assert response.status_code == 200
        assert response.json() == declared(movie.pk)
        # The ETag is a digest of the body, and the body is the declared representation, whichever path built it.
        assert response["ETag"] == representation_etag(response.content)
        assert response.content == dumps(declared(movie.pk))
    page = anon.get(URL, {"page_size": "100"}).json()
    assert page["results"] == [declared(movie.pk) for movie in sorted(varied, key=lambda movie: movie.pk)]
    assert page["count"] == len(varied)
    assert page["count_is_estimate"] is False


def test_rows_come_in_the_order_of_the_page_and_missing_ids_are_skipped(varied: list[Movie]) -> None:
    wanted = [varied[2].pk, varied[0].pk, varied[3].pk]
    rows = selectors.movie_page(ListPlan(Movie.objects.filter(pk__in=wanted).order_by("-year", "-id")), 0, 10)
    assert [row.id for row in rows] == [varied[3].pk, varied[2].pk, varied[0].pk]
    rows = selectors.movie_page(ListPlan(Movie.objects.filter(pk__in=wanted).order_by("id")), 1, 10)
    assert [row.id for row in rows] == [varied[2].pk, varied[3].pk]
    assert selectors.movie_page(ListPlan(Movie.objects.filter(pk=-1)), 0, 10) == []
    assert selectors.movie_detail(movie_id=varied[-1].pk + 1000) is None


def test_version_reads_agree_with_the_movie(varied: list[Movie]) -> None:
    movie = varied[1]
    row = selectors.movie_detail(movie_id=movie.pk)
    assert row is not None
    assert row.version == movie.version == selectors.movie_version(movie_id=movie.pk)
    assert selectors.movie_version(movie_id=varied[-1].pk + 1000) is None


def test_the_read_statements_are_prepared_on_the_connection(varied: list[Movie]) -> None:
    for _ in range(2):
        assert selectors.movie_detail(movie_id=varied[0].pk) is not None
        assert len(selectors.movie_page(ListPlan(Movie.objects.order_by("id")), 0, 3)) == 3
        assert len(selectors.movie_page(ListPlan(Movie.objects.filter(year__gte=0).order_by("id")), 0, 3)) == 3
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = {row[0] for row in cursor.fetchall()}
    # psycopg sends them with $n placeholders.
    assert MOVIE_BY_ID_SQL.replace("%s", "$1") in prepared
    assert MOVIES_BY_IDS_SQL.replace("%s", "$1") in prepared  # a filtered page's rows, by their ids
    # An unfiltered page: one statement with the ids' query inside, the page's bounds as parameters.
    assert any(statement.endswith("ORDER BY page.n") and "LIMIT $1 OFFSET $2" in statement for statement in prepared)


def test_read_path_queries_are_counted(anon: APIClient, varied: list[Movie], django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        assert anon.get(f"{URL}{varied[0].pk}/").status_code == 200
    with django_assert_num_queries(1):  # the page's rows by its ids' query (a last page needs no count)
        assert anon.get(URL, {"page_size": "100"}).status_code == 200
    with django_assert_num_queries(2):  # filtered: the page's ids, then its rows
        assert anon.get(URL, {"page_size": "100", "year_min": "0"}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_health_check_asks_the_server_only_when_the_connection_is_not_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    original = connection.is_usable

    def is_usable() -> bool:
        asked.append(usable := original())
        return usable

    monkeypatch.setattr(connection, "is_usable", is_usable)
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid

    # A new request on an idle, healthy connection: no SELECT 1, same backend.
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == backend
    assert asked == []

    # The server ends the session between requests: the check asks, fails, and the request gets a new connection.
    with other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [backend])
        other.execute("SELECT pg_sleep(0.1)")  # let the goodbye message reach the socket
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != backend
    assert asked == [False]


@pytest.mark.django_db(transaction=True)
def test_the_prepared_cursor_lives_as_long_as_its_connection() -> None:
    with prepared_cursor() as first:
        first.execute(MOVIE_BY_ID_SQL, [1])
        assert first.fetchone() is None
        raw = first.cursor
    with prepared_cursor() as second:
        second.execute("SELECT %s::int + 1", [1])
        assert second.fetchone() == (2,)
        assert second.cursor is raw
        assert not raw.closed
    connection.close()  # Django replaces the connection (CONN_MAX_AGE, a failed health check): a new cursor with it
    with prepared_cursor() as third:
        third.execute("SELECT 3")
        assert third.fetchone() == (3,)
        assert third.cursor is not raw
        assert third.cursor.connection is connection.connection


TIMESTAMPS = [
    "2020-01-01 10:00:00+00",
    "2020-01-01 10:00:00.5+05",
    "1999-12-31 23:59:59.999999-08",
    "0001-01-01 00:00:00+00",
    "2038-01-19 03:14:08.000001+13:45",
]


@pytest.mark.django_db
def test_timestamps_load_as_djangos_loader_loads_them() -> None:
    """The C-backed loader (movieapi.postgres.base) gives what Django's own timestamptz loader gives."""
    values = ", ".join(f"'{text}'::timestamptz" for text in TIMESTAMPS) + ", NULL::timestamptz"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {values}")
        ours = cursor.fetchone()
    with other_connection() as plain:
        plain.execute("SET TIME ZONE 'UTC'")  # what Django does to its own connections
        register_tzloader(connection.timezone, plain)
        djangos = plain.execute(f"SELECT {values}").fetchone()
    assert ours == djangos
    assert all(value.tzinfo is datetime.UTC for value in ours[:-1])
    assert ours[1] == datetime.datetime(2020, 1, 1, 5, 0, 0, 500000, tzinfo=datetime.UTC)
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    assert loader.timezone is connection.timezone  # Django's create_cursor keeps the connection's loader
    if psycopg.pq.__impl__ in {"c", "binary"}:
        assert type(loader(TIMESTAMPTZ_OID, connection.connection)._parse.__self__).__module__.startswith("psycopg_")


def other_connection() -> psycopg.Connection[Any]:
    """A second connection to the test database, outside Django."""
    # Django's own parameters: they include a socket directory given in OPTIONS (the embedded server's).
    params = {key: value for key, value in connection.get_connection_params().items() if key != "cursor_factory"}
    return psycopg.connect(**params, autocommit=True)


ACCEPTS = [None, "*/*", "application/json", "application/json; q=0.9", "text/*, */*", "application/*", "text/html"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=xml"])
def test_negotiation_answers_what_drf_answers(accept: str | None, query: str) -> None:
    headers: dict[str, Any] = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"{URL}1/{query}", None, **headers))
    renderers = [ORJSONRenderer()]

    def outcome(negotiation: BaseContentNegotiation) -> Any:
        try:
            renderer, media_type = negotiation.select_renderer(request, renderers)
        except (NotAcceptable, Http404) as exc:
            return type(exc)
        return type(renderer), media_type

    assert outcome(ContentNegotiation()) == outcome(DefaultContentNegotiation())


def test_the_api_still_answers_json_or_a_problem(anon: APIClient, varied: list[Movie]) -> None:
    response = anon.get(f"{URL}{varied[0].pk}/", HTTP_ACCEPT="*/*")
    assert (response.status_code, response["Content-Type"]) == (200, "application/json")
    response = anon.get(f"{URL}{varied[0].pk}/", HTTP_ACCEPT="text/html")
    assert response.status_code == 406
    assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.django_db(transaction=True)
def test_a_column_changing_type_under_a_prepared_statement_replaces_the_connection(varied: list[Movie]) -> None:
    movie_id = varied[2].pk
    assert selectors.movie_detail(movie_id=movie_id) is not None  # prepared on this connection
    backend = connection.connection.info.backend_pid
    # A migration run by another process (on this connection, psycopg would see the ALTER and drop its statements).
    with other_connection() as other:
        other.execute("ALTER TABLE movies_movie ALTER COLUMN imdb_id TYPE text")
    try:
        with pytest.raises(NotSupportedError, match="cached plan"):
            selectors.movie_detail(movie_id=movie_id)
        connection.close_if_unusable_or_obsolete()  # what the end of the request does
        assert selectors.movie_detail(movie_id=movie_id) is not None
        assert connection.connection.info.backend_pid != backend
    finally:
        with other_connection() as other:
            other.execute("ALTER TABLE movies_movie ALTER COLUMN imdb_id TYPE varchar(16)")
