"""Every read that needs shaping: querysets annotated and prefetched so queries stay constant per request."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db.models import CharField, Prefetch, QuerySet, TextField
from django.db.models.expressions import RawSQL

from movies.models import CastMember, Genre, Movie, Person, Rating
from movies.sql import CAST_SQL, DIRECTORS_SQL, GENRES_SQL


def movie_queryset() -> QuerySet[Movie]:
    """Movies annotated with genre slugs and directors' and cast's JSON: one query for any number of movies."""
    return Movie.objects.defer("search_vector").annotate(
        genre_slugs=RawSQL(GENRES_SQL, (), output_field=ArrayField(CharField())),  # noqa: S611 (constant SQL)
        directors_json=RawSQL(DIRECTORS_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
        cast_json=RawSQL(CAST_SQL, (), output_field=TextField()),  # noqa: S611 (constant SQL)
    )


def movie_detail(*, movie_id: int) -> Movie | None:
    """One movie with everything its representation shows, or None."""
    return movie_queryset().filter(pk=movie_id).first()


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
