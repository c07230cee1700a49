"""`manage.py generate_movies`: deterministic per seed, and its rating aggregates match its rating rows."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from movies.management.commands import generate_movies
from movies.models import CastMember, Genre, Movie, MovieVersion, Person, Rating
from movies.tests.history_recording import snapshot_now

pytestmark = pytest.mark.django_db


def generate(seed: int) -> list[tuple[object, ...]]:
    call_command("generate_movies", count=60, seed=seed, people=40, users=30, stdout=io.StringIO())
    return list(
        Movie.objects.order_by("id").values_list("id", "title", "year", "runtime", "rating_count", "rating_sum")
    )


def wipe() -> None:
    Rating.objects.all().delete()
    CastMember.objects.all().delete()
    Movie.objects.all().delete()
    Person.objects.all().delete()
    User.objects.filter(username__startswith="reviewer").delete()


def test_same_seed_same_catalogue_other_seed_another() -> None:
    first = generate(7)
    wipe()
    assert generate(7) == first
    wipe()
    assert generate(8) != first


def test_catalogue_is_consistent_and_has_credits() -> None:
    generate(1)
    assert Movie.objects.count() == 60
    for movie in Movie.objects.annotate(n=Count("ratings"), total=Sum("ratings__score")):
        assert (movie.rating_count, movie.rating_sum) == (movie.n, movie.total or 0)
    assert Rating.objects.exists()
    assert CastMember.objects.count() >= 60
    assert Movie.directors.through.objects.count() >= 60
    assert not Movie.objects.filter(genres=None).exists()
    # New rows get ids after the generated ones: the sequences were moved on.
    assert Person.objects.create(name="After").pk > Person.objects.exclude(name="After").order_by("-id")[0].pk


def test_count_must_be_positive() -> None:
    with pytest.raises(CommandError):
        call_command("generate_movies", count=0, stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bulk_min", [10, 10_000], ids=["bulk load", "row by row"])
def test_each_generated_movie_has_its_first_version_recorded(
    monkeypatch: pytest.MonkeyPatch, bulk_min: int, genres: dict[str, Genre]
) -> None:
    """The bulk path (indexes dropped and rebuilt, the history's triggers paused in its transaction) records every
    movie's first version itself, as the triggers record it on the row-by-row path; and the triggers are back on."""
    monkeypatch.setattr(generate_movies, "BULK_MIN", bulk_min)
    call_command("generate_movies", count=60, seed=7, people=40, users=30, stdout=io.StringIO())
    entries = list(MovieVersion.objects.order_by("movie_id").values_list("movie_id", "version", "kind", "actor"))
    movie_ids = list(Movie.objects.order_by("id").values_list("id", flat=True))
    assert entries == [(movie_id, 1, "created", {"kind": "database"}) for movie_id in movie_ids]
    for entry in MovieVersion.objects.all():
        assert entry.snapshot == snapshot_now(entry.movie_id)
    Movie.objects.filter(id=movie_ids[0]).update(title="Renamed after the load")
    assert MovieVersion.objects.filter(movie_id=movie_ids[0]).count() == 2  # the triggers record again
