"""Every read that needs shaping: querysets annotated and prefetched so queries stay constant per request.

The prepared statements read where a queryset of the catalogue would (`read_alias`: a replica in a safe API request,
docs/replicas.md); querysets' `.db` asks the same through the router."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import connections
from django.db.models import CharField, Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from psycopg.types.numeric import Int8

from movieapi.pagination import ListPlan
from movieapi.postgres.prepared import prepared_cursor
from movieapi.replicas import read_alias
from movies.changes import FeedPage, FeedPosition, feed_page, now_position
from movies.errors import FeedHistoryGone
from movies.history import MAX_VERSION, VersionEntry
from movies.models import CastMember, Genre, Movie, MovieVersion, Person, Rating
from movies.sql import (
    CAST_SQL,
    DIRECTORS_SQL,
    FEED_NOW_SQL,
    FEED_PAGE_SQL,
    GENRE_IDS_SQL,
    GENRES_SQL,
    MOVIE_BY_ID_SQL,
    MOVIE_VERSION_SQL,
    MOVIES_BY_IDS_SQL,
    MovieRow,
    movie_row,
    movies_by_id_query_sql,
)


def movie_queryset() -> QuerySet[Movie]:
    """Movies annotated with genre slugs and directors' and cast's JSON: one query for any number of movies."""
    return Movie.objects.defer("search_vector").annotate(
        genre_slugs=RawSQL(GENRES_SQL, (), output_field=ArrayField(CharField())),  # noqa: S611 (constant SQL)
        directors_json=RawSQL(DIRECTORS_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
        cast_json=RawSQL(CAST_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
    )


def movie_detail(*, movie_id: int) -> MovieRow | None:
    """One movie's representation row (for `representation.movie_representation`), or None."""
    with prepared_cursor(read_alias(), row_factory=movie_row) as cursor:
        cursor.execute(MOVIE_BY_ID_SQL, [movie_id])
        row: MovieRow | None = cursor.fetchone()
    return row


def movie_version(*, movie_id: int) -> int | None:
    """A movie's current version, or None if there is no such movie."""
    with prepared_cursor(read_alias()) as cursor:
        cursor.execute(MOVIE_VERSION_SQL, [movie_id])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def whole_catalogue(queryset: QuerySet[Movie]) -> bool:
    """True if the queryset is every movie: no filter, annotation or extra (its ordering aside)."""
    query = queryset.query
    return not query.where and not query.annotations and not query.extra


def _ids_sql(plan: ListPlan) -> tuple[str, Any]:
    """The statement of the plan's queryset's ids, in its order, unlimited: as the plan has it, else compiled."""
    return plan.ids_sql or plan.queryset.values_list("pk", flat=True).query.sql_with_params()


def with_ids_compiled(plan: ListPlan) -> ListPlan:
    """The plan with its queryset's ids statement compiled (unless a constant one gives them), so that the page
    (`movie_page`) and the paginator's count estimate send the same statement, compiled once."""
    if plan.page_ids_sql is not None or plan.ids_sql is not None:
        return plan
    return replace(plan, ids_sql=_ids_sql(plan))


# Fast path: page rows statement.
# Replaces: an annotated ORM queryset built, compiled and serialized field by field for each read.
# Why: 0.85 ms a request of queryset work gone; list page 1 of 20: 0.28 -> 0.48 of the baseline.
# Equal: movies/tests/test_discovery.py::test_fast_representation_equals_the_declared_fields
# Off: none: no ORM twin; selectors.movie_queryset with MovieSerializer is what the test compares with.
def movie_page(plan: ListPlan, offset: int, limit: int) -> list[MovieRow]:
    """Representation rows of movies offset..offset+limit of the plan's ordered (filtered, searched) queryset.

    The ids come from the queryset (an index-only scan for the plain orderings), the rows from one prepared
    statement by id, in the ids' order: the filters run once, and the heavy statement is never re-planned.
    An unfiltered list (the catalogue in one of its orderings) is one prepared statement with the ids' query
    inside: its text depends only on the ordering, and each ordering has its index, whatever the page. So is a
    plan with `page_ids_sql` (a ranked search), with that statement inside.
    """
    queryset = plan.queryset
    sql, params = plan.page_ids_sql or _ids_sql(plan)
    if plan.page_ids_sql is not None or whole_catalogue(queryset):
        with prepared_cursor(queryset.db, row_factory=movie_row) as cursor:
            cursor.execute(movies_by_id_query_sql(sql + " LIMIT %s OFFSET %s"), [*params, limit, offset])
            return cursor.fetchall()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql + " LIMIT %s OFFSET %s", [*params, limit, offset])
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    with prepared_cursor(queryset.db, row_factory=movie_row) as cursor:
        cursor.execute(MOVIES_BY_IDS_SQL, [ids])
        return cursor.fetchall()


def person_queryset() -> QuerySet[Person]:
    """People; the detail view adds their films with `person_with_films`."""
    return Person.objects.all()


# A person's detail shows this many of the films they directed and of their roles (the earliest first), with
# both counts: an actor with 500 roles was a 280 KB answer. All of them: `movies/?person={id}`, paginated.
PERSON_FILMS_SHOWN = 100


def _credit_count(through: Any) -> Coalesce:
    """How many rows of this credit table name the person (a subquery each: two joins would multiply)."""
    rows = through.objects.filter(person_id=OuterRef("pk")).order_by().values("person_id")
    return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n")), 0, output_field=IntegerField())


def person_with_films() -> QuerySet[Person]:
    """People with their credit counts and the first PERSON_FILMS_SHOWN films directed and roles played
    (`shown_directed`, `shown_roles`)."""
    return Person.objects.annotate(
        directed_count=_credit_count(Movie.directors.through), roles_count=_credit_count(CastMember)
    ).prefetch_related(
        Prefetch(
            "directed_movies",
            queryset=Movie.objects.only("id", "title", "year").order_by("year", "id")[:PERSON_FILMS_SHOWN],
            to_attr="shown_directed",  # a sliced prefetch needs its own attribute
        ),
        Prefetch(
            "roles",
            queryset=CastMember.objects.select_related("movie")
            .only("id", "character", "order", "person_id", "movie__id", "movie__title", "movie__year")
            .order_by("movie__year", "movie_id", "order")[:PERSON_FILMS_SHOWN],
            to_attr="shown_roles",
        ),
    )


def genre_ids(*, slugs: list[str]) -> dict[str, int]:
    """Slug -> id of the genres among these slugs (a filtered movie list asks on every request: prepared)."""
    with prepared_cursor(read_alias()) as cursor:
        cursor.execute(GENRE_IDS_SQL, [slugs])
        return dict(cursor.fetchall())


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


# ---- history (docs/history.md) -------------------------------------------------------------------


def movie_history(*, movie_id: int) -> QuerySet[MovieVersion]:
    """A movie's recorded versions, newest first (`version_entries` reads a slice of them)."""
    return MovieVersion.objects.filter(movie_id=movie_id).order_by("-version")


def version_entries(queryset: QuerySet[MovieVersion]) -> list[VersionEntry]:
    """The versions of a (sliced) queryset as VersionEntry rows, in its order: one query."""
    return [VersionEntry._make(row) for row in queryset.values_list(*VersionEntry._fields)]


def movie_versions_between(*, movie_id: int, first: int, last: int) -> list[VersionEntry]:
    """A movie's recorded versions first..last (those that are kept), oldest first: one query."""
    first, last = max(first, 1), min(last, MAX_VERSION)
    return version_entries(
        MovieVersion.objects.filter(movie_id=movie_id, version__gte=first, version__lte=last).order_by("version")
    )


def movie_version_snapshot(*, movie_id: int, version: int) -> dict[str, Any] | None:
    """The movie as it was at `version` (its snapshot), or None if that version is not recorded."""
    if not 1 <= version <= MAX_VERSION:
        return None
    snapshot: dict[str, Any] | None = (
        MovieVersion.objects.filter(movie_id=movie_id, version=version).values_list("snapshot", flat=True).first()
    )
    return snapshot


def change_feed_page(*, after: FeedPosition, limit: int) -> FeedPage:
    """The change feed's page after a position: one statement (FEED_PAGE_SQL). FeedHistoryGone if entries after it
    were purged."""
    xid, entry_id = Int8(after.xid), Int8(after.id)  # one prepared statement, whatever the numbers' size
    with prepared_cursor(read_alias()) as cursor:
        cursor.execute(FEED_PAGE_SQL, [xid, entry_id, xid, entry_id, Int8(limit)])
        rows = cursor.fetchall()
    page = feed_page(after, rows)
    if page.gone:
        raise FeedHistoryGone()
    return page


def change_feed_now() -> FeedPosition:
    """The feed's present: the position after every entry written by a transaction that has ended."""
    with prepared_cursor(read_alias()) as cursor:
        cursor.execute(FEED_NOW_SQL)
        row = cursor.fetchone()
    return now_position(int(row[0]))
