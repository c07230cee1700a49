"""export_movies: streams the catalogue; export -> import into an empty database gives the same catalogue."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from movies.models import CastMember, Genre, Movie, Person
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory

pytestmark = pytest.mark.django_db


def catalogue() -> list[Any]:
    """The catalogue without ids or timestamps: what an export promises to carry."""
    return sorted(
        (
            m.title,
            m.year,
            m.runtime,
            m.overview,
            m.imdb_id,
            sorted(g.slug for g in m.genres.all()),
            sorted((p.name, p.imdb_id) for p in m.directors.all()),
            [(c.person.name, c.person.imdb_id, c.character) for c in m.cast.order_by("order")],
        )
        for m in Movie.objects.prefetch_related("genres", "directors", "cast__person")
    )


def empty_catalogue() -> None:
    CastMember.objects.all().delete()
    Movie.objects.all().delete()
    Person.objects.all().delete()
    Genre.objects.filter(slug__startswith="custom").delete()


@pytest.fixture
def filled() -> list[Any]:
    custom = GenreFactory.create(slug="custom-genre", name="Custom")
    drama = GenreFactory.create(slug="drama")
    people = [PersonFactory.create(name=f"Person {n}", imdb_id=f"nm{n:07d}" if n % 2 else None) for n in range(6)]
    for n in range(25):
        movie = MovieFactory.create(
            title=str(1900 + n) if n % 5 == 0 else f'Film "{n}", with, commas\nand a newline',
            year=1950 + n,
            runtime=None if n % 3 == 0 else 90 + n,
            overview="" if n % 4 == 0 else f"Überblick {n} — ünïcödé, tabs\there",
            imdb_id=None if n % 6 == 0 else f"tt{n + 100:07d}",
            genres=[drama, custom] if n % 2 else [drama],
            directors=people[n % 3 : n % 3 + 2],
        )
        for order, person in enumerate(people[n % 4 : n % 4 + 3]):
            CastMemberFactory.create(movie=movie, person=person, character=f"Role {order}", order=order)
    return catalogue()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_export_then_import_into_an_empty_catalogue_gives_the_same_catalogue(
    tmp_path: Path, filled: list[Any], fmt: str
) -> None:
    path = tmp_path / f"export.{fmt}"
    call_command("export_movies", str(path), stderr=io.StringIO())
    empty_catalogue()
    assert Movie.objects.count() == 0

    call_command("import_movies", str(path), stdout=io.StringIO(), stderr=io.StringIO())

    assert catalogue() == filled
    assert set(Movie.objects.values_list("version", flat=True)) == {1}


def test_jsonl_export_shape(tmp_path: Path, filled: list[Any]) -> None:
    path = tmp_path / "out.jsonl"
    call_command("export_movies", str(path), "--format", "jsonl", stderr=io.StringIO())
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 25
    assert set(rows[1]) == {"id", "title", "year", "runtime", "overview", "imdb_id", "genres", "directors", "cast"}
    assert rows[1]["cast"][0] == {"name": "Person 1", "imdb_id": "nm0000001", "character": "Role 0"}
