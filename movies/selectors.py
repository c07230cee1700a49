"""Every read that needs shaping: querysets annotated and prefetched so queries stay constant per request."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from movies.models import CastMember, Genre, Movie, Person


def movie_queryset() -> QuerySet[Movie]:
    """Movies with genres, directors and cast prefetched: four queries for any number of movies."""
    return Movie.objects.prefetch_related(
        Prefetch("genres", queryset=Genre.objects.only("id", "slug")),
        Prefetch("directors", queryset=Person.objects.only("id", "name").order_by("name", "id")),
        Prefetch("cast", queryset=CastMember.objects.select_related("person").order_by("order")),
    ).defer("search_vector")


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
