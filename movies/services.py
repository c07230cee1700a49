"""Every write to the catalogue. The API, the admin and the import commands all call these.

The movie, its genres, directors and cast are one aggregate with one `version`: every write
to it goes through `movie_create`, `movie_update` or `movie_delete`, and `movie_update` makes
the version check and the write one atomic step. Each names its writer (`actor`), which PostgreSQL
records with the version (docs/history.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

import psycopg.errors
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Field

from movieapi.postgres.prepared import prepared_cursor
from movies import selectors, write_sql
from movies import sql as sql_texts
from movies.errors import AccountGone, ImdbIdTaken, MovieNotFound, RatingNotFound, StillReferenced, VersionConflict
from movies.models import CastMember, Genre, Movie, Person, Rating
from movies.rules import CURATOR, SCALAR_FIELDS
from movies.versions import Actor, actor_set


@dataclass(frozen=True)
class Role:
    """One cast entry: a person and the character they play; the billing order is the list position."""

    person: Person
    character: str = ""


class MovieData(TypedDict, total=False):
    """The writable parts of a movie aggregate; a key left out is left unchanged by `movie_update`."""

    title: str
    year: int
    runtime: int | None
    overview: str
    imdb_id: str | None
    genres: Sequence[Genre]
    directors: Sequence[Person]
    cast: Sequence[Role]


def _imdb_id_taken(exc: IntegrityError) -> ImdbIdTaken:
    if "imdb_id" in str(exc):
        return ImdbIdTaken()
    raise exc


def _write_relations(movie: Movie, data: MovieData) -> None:
    """Replace the genres, directors and cast named in data, each as a whole list."""
    if "genres" in data:
        movie.genres.set(data["genres"])
    if "directors" in data:
        movie.directors.set(data["directors"])
    if "cast" in data:
        CastMember.objects.filter(movie=movie).delete()
        CastMember.objects.bulk_create(
            CastMember(movie=movie, person=role.person, character=role.character, order=order)
            for order, role in enumerate(data["cast"])
        )


def movie_create(*, data: MovieData, actor: Actor) -> Movie:
    """Create a movie aggregate at version 1."""
    fields: dict[str, Any] = {name: data[name] for name in SCALAR_FIELDS if name in data}  # type: ignore[literal-required]
    try:
        with transaction.atomic():
            actor_set(actor=actor)
            # A new movie's empty fields were not set by anyone: an import may still fill them.
            claims = sorted(name for name, value in data.items() if value not in (None, "") and value != [])
            movie = Movie.objects.create(**fields, field_sources=dict.fromkeys(claims, CURATOR))
            _write_relations(movie, data)
    except IntegrityError as exc:
        raise _imdb_id_taken(exc) from exc
    return movie


@dataclass(frozen=True)
class MovieWritten:
    """What a versioned write left: the new version, and the movie's representation row when the write's own
    statement could read it (a write of the row alone; None when relations changed too)."""

    version: int
    row: sql_texts.MovieRow | None = None


def movie_update(
    *, movie_id: int, expected_version: int, data: MovieData, actor: Actor, claimed: Collection[str] | None = None
) -> MovieWritten:
    """Apply data to the movie if it is still at expected_version.

    The fields in `claimed` (default: every field in data) are recorded as set by a curator (`field_sources`),
    in the same UPDATE: no import overwrites them afterwards.

    The check and the write are one conditional UPDATE (`WHERE version = expected`), so of
    any number of concurrent writes based on the same version exactly one succeeds; the
    others get 409 with the current version, or 404 if the movie is gone.
    """
    fields: dict[str, Any] = {name: data[name] for name in SCALAR_FIELDS if name in data}  # type: ignore[literal-required]
    relations = data.keys() & {"genres", "directors", "cast"}
    # The row and its relation lists change in one transaction; a write of the row alone is one statement,
    # atomic by itself, so it runs without one (BEGIN and COMMIT were two of a PATCH's round trips), and the
    # same statement reads the movie's new representation (the relations it reads are the ones it leaves).
    try:
        with transaction.atomic() if relations else contextlib.nullcontext():
            claims = tuple(sorted(data.keys() if claimed is None else claimed))
            updated, row = _conditional_update(
                movie_id, expected_version, fields, claims, actor=actor, represent=not relations
            )
            if not updated:
                # The whole row, not just its version: the API's 409 carries the current ETag too.
                current_row = selectors.movie_detail(movie_id=movie_id)
                if current_row is None:
                    raise MovieNotFound("No such movie: it may have been deleted.")
                current = current_row.version
                raise VersionConflict(
                    f"This write was based on version {expected_version}, but the movie is at version {current}. "
                    "Reapply your change to the movie as it is now and send its version (`current_version`), "
                    "or its ETag in If-Match.",
                    current_version=current,
                    current_row=current_row,
                )
            if relations:
                _write_relations(Movie.objects.only("id").get(pk=movie_id), data)
    except IntegrityError as exc:
        raise _imdb_id_taken(exc) from exc
    return MovieWritten(version=expected_version + 1, row=row)


def _movie_field(name: str) -> Field[Any, Any]:
    field = Movie._meta.get_field(name)
    assert isinstance(field, Field)  # the scalar fields are concrete columns
    return field


def _column(name: str) -> str:
    """The column of a scalar field of Movie, as the write SQL names it."""
    return _movie_field(name).column


@functools.cache
def _conditional_update_sql(names: tuple[str, ...], claims: tuple[str, ...] = ()) -> str:
    """The versioned write of one movie, one text per set of fields and of claims (the curator's provenance is a
    constant of the text: no parameter, no extra statement)."""
    sources = None
    if claims:
        claimed = json.dumps(dict.fromkeys(claims, CURATOR)).replace("'", "''")  # field names only
        sources = f"field_sources || '{claimed}'::jsonb"
    return write_sql.versioned_update_sql([(_column(name), "%s") for name in names], field_sources=sources, actor=True)


# Fast path: versioned write statement.
# Replaces: an ORM update compiled per request inside a transaction, then a re-read of the movie.
# Why: a curator's PATCH 11 -> 2 round trips; ~4.9 -> ~1.9 ms of in-process CPU. The writer's name for the history
# travels in the same statement (its WHERE sets it for the statement's transaction), so it stays 2.
# Equal: movies/tests/test_movies_api.py::test_if_match_current_etag_succeeds_and_returns_new_etag
# Off: none: the versioned write has one path (pinned by test_versioned_patch_query_budget).
def _conditional_update(
    movie_id: int,
    expected_version: int,
    fields: dict[str, Any],
    claims: tuple[str, ...],
    *,
    actor: Actor,
    represent: bool,
) -> tuple[bool, sql_texts.MovieRow | None]:
    """The versioned write as one prepared statement (a curator's PATCH sends it on every request): whether it
    changed the movie, and (represent) the movie's representation row after it."""
    names = tuple(sorted(fields))
    values = [_movie_field(name).get_db_prep_save(fields[name], connection) for name in names]
    sql = _conditional_update_sql(names, claims)
    params = [*values, movie_id, expected_version, actor.as_json()]
    if not represent:
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount > 0, None
    with prepared_cursor(row_factory=sql_texts.movie_row) as cursor:
        cursor.execute(sql_texts.represented_update_sql(sql), params)
        row: sql_texts.MovieRow | None = cursor.fetchone()
        return row is not None, row


# ---- imports ------------------------------------------------------------------------------------


class ImportedValues(Protocol):
    """A new movie's scalar values as an import read them (the importers' MovieRecord)."""

    title: str
    year: int
    runtime: int | None
    overview: str
    imdb_id: str | None


@dataclass(frozen=True, slots=True)
class MovieImportChange:
    """A movie an import changes: the version it read (and locked), its scalar values and provenance after the
    change; bump False when only the provenance changes (a higher source claims equal values): no new version."""

    movie_id: int
    expected_version: int
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    bump: bool


@dataclass(frozen=True)
class MovieImportWritten:
    """What an import batch wrote: the new movies' ids, in the order given, and how many changes found their
    movie at the version they read."""

    created: list[int]
    changed: int


# The PostgreSQL types of SCALAR_FIELDS, for the arrays a batch sends them in.
_SCALAR_TYPES = {"title": "text", "year": "int", "runtime": "int", "overview": "text", "imdb_id": "text"}


@functools.cache
def _import_update_sql() -> str:
    """The versioned write of a batch of movies: one row per change in `v`, from arrays (binary parameters)."""
    arrays = ", ".join(f"%b::{_SCALAR_TYPES[name]}[]" for name in SCALAR_FIELDS)
    return write_sql.versioned_update_sql(
        [(_column(name), f"v.{name}") for name in SCALAR_FIELDS],
        field_sources="v.field_sources::jsonb",
        bump="v.bump",
        rows=f"unnest(%b::bigint[], %b::int[], {arrays}, %b::text[], %b::int[])"
        f" AS v(id, expected_version, {', '.join(SCALAR_FIELDS)}, field_sources, bump)",
    )


def movie_import_batch(
    *,
    cursor: psycopg.Cursor[Any],
    created: Sequence[tuple[ImportedValues, Mapping[str, str]]],
    changed: Sequence[MovieImportChange],
    actor: Actor,
) -> MovieImportWritten:
    """Write the movie rows of an import's batch in the caller's transaction, one statement each: the new movies
    (values, provenance) at version 1, and the changes as versioned writes of rows the caller has locked.

    A change whose movie is no longer at the version read is not written (`changed` counts the others): the caller
    then rolls the batch back. The relations are the caller's, on the same cursor (COPY).
    """
    created_ids: list[int] = []
    if created or changed:
        actor_set(actor=actor, cursor=cursor)
    if created:
        cursor.execute(
            write_sql.IMPORT_INSERT_SQL,
            [
                [values.title for values, _ in created],
                [values.year for values, _ in created],
                [values.runtime for values, _ in created],
                [values.overview for values, _ in created],
                [values.imdb_id for values, _ in created],
                [json.dumps(sources) for _, sources in created],
            ],
        )
        # INSERT ... SELECT ... ORDER BY returns the rows in that order (the ids come from one sequence, in it).
        created_ids = sorted(pk for (pk,) in cursor.fetchall())
    if not changed:
        return MovieImportWritten(created=created_ids, changed=0)
    cursor.execute(
        _import_update_sql(),
        [
            [change.movie_id for change in changed],
            [change.expected_version for change in changed],
            *([change.values[name] for change in changed] for name in SCALAR_FIELDS),
            [json.dumps(change.sources) for change in changed],
            [int(change.bump) for change in changed],
        ],
    )
    return MovieImportWritten(created=created_ids, changed=cursor.rowcount)


def movie_delete(*, movie_id: int, actor: Actor, expected_version: int | None = None) -> None:
    """Delete a movie (and its credits and ratings); with expected_version, only if it is still current. Its history
    stays, ending with a `deleted` entry."""
    with transaction.atomic():
        actor_set(actor=actor)
        # Lock the row before the cascade, as rating writes do: the cascade then sees every committed
        # rating, and no rater holding the movie waits for a rating row this delete already took (deadlock).
        Movie.objects.select_for_update().filter(pk=movie_id).values_list("pk").first()
        movies = Movie.objects.filter(pk=movie_id)
        if expected_version is not None:
            movies = movies.filter(version=expected_version)
        deleted, _ = movies.delete()
        if not deleted:
            current = selectors.movie_version(movie_id=movie_id)
            if current is None:
                raise MovieNotFound()
            raise VersionConflict(
                f"The movie is at version {current}, not {expected_version}; nothing was deleted.",
                current_version=current,
            )


def movie_lock(*, movie_id: int) -> Movie:
    """Lock a movie's row for the rest of the transaction (writes, ratings and ETag checks queue on it)."""
    movie = Movie.objects.select_for_update(no_key=True).filter(pk=movie_id).first()
    if movie is None:
        raise MovieNotFound()
    return movie


def genre_delete(*, genre: Genre) -> None:
    """Delete a genre that no movie uses; removing it from movies silently would bypass their versions."""
    with transaction.atomic():
        # The row lock makes a concurrent write that adds this genre wait for, then fail on, the delete.
        Genre.objects.select_for_update().filter(pk=genre.pk).first()
        used_by = genre.movies.count()
        if used_by:
            raise StillReferenced(
                f"The genre is used by {used_by} movie(s). Remove it from them first (each a versioned write)."
            )
        genre.delete()


def person_delete(*, person: Person) -> None:
    """Delete a person with no credits; removing credits silently would bypass the movies' versions."""
    with transaction.atomic():
        Person.objects.select_for_update().filter(pk=person.pk).first()
        credits = person.directed_movies.count() + person.roles.count()
        if credits:
            raise StillReferenced(f"The person has {credits} credit(s). Remove them from those movies first.")
        person.delete()


# ---- ratings -----------------------------------------------------------------------------------
#
# A movie's rating_count and rating_sum change in the same transaction as its rating rows, and
# every such transaction first locks the movie's row (FOR NO KEY UPDATE): concurrent raters of one
# movie queue on that lock, so each applies its delta to the aggregate the previous one committed.
# They never touch `version` or `updated_at`, so a curator's conditional UPDATE still matches.


def _rating_add(*, movie_id: int, count: int, total: int) -> None:
    Movie.objects.filter(pk=movie_id).update(rating_count=F("rating_count") + count, rating_sum=F("rating_sum") + total)


def _account_gone(exc: IntegrityError) -> AccountGone:
    """A rating by a user deleted while the request ran fails its (deferred) foreign key check at commit."""
    if isinstance(exc.__cause__, psycopg.errors.ForeignKeyViolation):
        return AccountGone()
    raise exc


def rating_set(*, user: AbstractBaseUser, movie_id: int, score: int) -> tuple[Rating, bool]:
    """Create or change user's rating of a movie; return it and whether it was created (404 if no movie)."""
    try:
        with transaction.atomic():
            movie = movie_lock(movie_id=movie_id)
            # The movie lock serializes every rating write of this movie, so this read cannot go stale.
            rating = Rating.objects.filter(user_id=user.pk, movie_id=movie_id).first()
            created = rating is None
            if rating is None:
                rating = Rating.objects.create(user_id=user.pk, movie=movie, score=score)
                _rating_add(movie_id=movie_id, count=1, total=score)
            elif rating.score != score:
                _rating_add(movie_id=movie_id, count=0, total=score - rating.score)
                rating.score = score
                rating.save(update_fields=["score", "updated_at"])
    except IntegrityError as exc:
        raise _account_gone(exc) from exc
    rating.movie = movie
    return rating, created


def rating_delete(*, user: AbstractBaseUser, movie_id: int) -> None:
    """Delete user's rating of a movie (404 if there is no movie or no rating)."""
    with transaction.atomic():
        movie_lock(movie_id=movie_id)
        deleted = Rating.objects.filter(user_id=user.pk, movie_id=movie_id).values_list("score", flat=True).first()
        if deleted is None:
            raise RatingNotFound()
        Rating.objects.filter(user_id=user.pk, movie_id=movie_id).delete()
        _rating_add(movie_id=movie_id, count=-1, total=-deleted)


def ratings_delete_for_user(*, user_id: int) -> None:
    """Delete all of a user's ratings and take them out of their movies' aggregates (before deleting the user).

    Lock order: the user's row first, so no new rating of theirs can appear (inserting one needs a key
    share lock on it); then their movies in id order, like any rater; then one statement deletes the
    rows and subtracts exactly what it deleted.
    """
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk").first()
        movies = Movie.objects.select_for_update(no_key=True, of=("self",)).filter(ratings__user_id=user_id)
        list(movies.order_by("id").values_list("id", flat=True))
        with connection.cursor() as cursor:
            cursor.execute(write_sql.RATINGS_DELETE_FOR_USER_SQL, [user_id])
