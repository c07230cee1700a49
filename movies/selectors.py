"""Every read that needs shaping: querysets annotated and prefetched so queries stay constant per request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.contrib.postgres.fields import ArrayField
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections
from django.db.backends.utils import CursorWrapper
from django.db.models import CharField, Prefetch, QuerySet, TextField
from django.db.models.expressions import RawSQL

from movies.models import CastMember, Genre, Movie, Person, Rating
from movies.sql import CAST_SQL, DIRECTORS_SQL, GENRES_SQL, MOVIE_BY_ID_SQL, MOVIES_BY_IDS_SQL


def movie_queryset() -> QuerySet[Movie]:
    """Movies annotated with genre slugs and directors' and cast's JSON: one query for any number of movies."""
    return Movie.objects.defer("search_vector").annotate(
        genre_slugs=RawSQL(GENRES_SQL, (), output_field=ArrayField(CharField())),  # noqa: S611 (constant SQL)
        directors_json=RawSQL(DIRECTORS_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
        cast_json=RawSQL(CAST_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
    )


def movie_detail(*, movie_id: int) -> tuple[Any, ...] | None:
    """One movie's representation row (`sql.MOVIE_COLUMNS`, for `serializers.movie_representation`), or None."""
    with prepared_cursor() as cursor:
        cursor.execute(MOVIE_BY_ID_SQL, [movie_id])
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


def movie_page(queryset: QuerySet[Movie], offset: int, limit: int) -> list[tuple[Any, ...]]:
    """Representation rows of movies offset..offset+limit of the ordered (filtered, searched) queryset.

    The ids come from the queryset (an index-only scan for the plain orderings), the rows from one prepared
    statement by id, in the ids' order: the filters run once, and the heavy statement is never re-planned.
    """
    ids = list(queryset.values_list("pk", flat=True)[offset : offset + limit])
    if not ids:
        return []
    with prepared_cursor(queryset.db) as cursor:
        cursor.execute(MOVIES_BY_IDS_SQL, [ids])
        return cursor.fetchall()


class _PreparingCursor(psycopg.Cursor[Any]):
    """Binds server-side and asks psycopg to prepare every statement on its first execution."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        """Execute as a prepared statement (unless prepared statements are off, see settings)."""
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)


@contextmanager
def prepared_cursor(alias: str = DEFAULT_DB_ALIAS) -> Iterator[CursorWrapper]:
    """A Django cursor (health check, error wrapping, query log) whose statements are prepared server-side.

    Django's own cursors bind parameters client-side and never prepare, so PostgreSQL parses and plans every
    statement again: a movie's statement (three correlated subqueries) costs more to plan than to run. This one
    prepares each statement on the connection once and then only binds and runs it (settings:
    DB_PREPARED_STATEMENTS). For constant SQL texts only: psycopg keeps 100 prepared statements per connection.
    """
    connection = connections[alias]
    # What `connection.cursor()` does, with our cursor class instead of the client-side one.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw: Any = _PreparingCursor(connection.connection)  # django-stubs type this argument as a CursorWrapper
    cursor = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with cursor:
        try:
            yield cursor
        except NotSupportedError as exc:
            # A prepared statement outlives schema changes: once a column it returns changes type, PostgreSQL
            # refuses it ("cached plan must not change result type") for the rest of the session. Replace the
            # connection when this request ends (not now: the request may be inside a transaction).
            if isinstance(exc.__cause__, psycopg.errors.FeatureNotSupported):
                connection.close_at = time.monotonic()
            raise


def person_queryset() -> QuerySet[Person]:
    """People; the detail view adds their films with `person_with_films`."""
    return Person.objects.all()


def person_with_films() -> QuerySet[Person]:
    """People with the films they directed and the roles they played prefetched."""
    return Person.objects.prefetch_related(
        Prefetch("directed_movies", queryset=Movie.objects.only("id", "title", "year").order_by("year", "id")),
        Prefetch(
            "roles",
            queryset=CastMember.objects.select_related("movie")
            .only("id", "character", "order", "person_id", "movie__id", "movie__title", "movie__year")
            .order_by("movie__year", "movie_id", "order"),
        ),
    )


def genre_queryset() -> QuerySet[Genre]:
    """Genres by slug."""
    return Genre.objects.order_by("slug")


def rating_queryset(*, user_id: int) -> QuerySet[Rating]:
    """A user's ratings, most recently set first, each with its movie's id and title (one query per page)."""
    return (
        Rating.objects.filter(user_id=user_id)
        .select_related("movie")
        .only("id", "score", "created_at", "updated_at", "movie__id", "movie__title")
        .order_by("-updated_at", "-id")
    )
