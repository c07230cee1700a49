from __future__ import annotations

import pytest

from movies.models import Genre, Movie, Person
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory


@pytest.fixture
def genres(db: None) -> dict[str, Genre]:
    return {slug: GenreFactory.create(slug=slug) for slug in ("action", "drama", "science-fiction")}


@pytest.fixture
def people(db: None) -> list[Person]:
    return [PersonFactory.create(name=name) for name in ("Lana Wachowski", "Keanu Reeves", "Carrie-Anne Moss")]


@pytest.fixture
def movie(genres: dict[str, Genre], people: list[Person]) -> Movie:
    movie = MovieFactory.create(
        title="The Matrix",
        year=1999,
        runtime=136,
        imdb_id="tt0133093",
        genres=[genres["action"], genres["science-fiction"]],
        directors=[people[0]],
    )
    CastMemberFactory(movie=movie, person=people[1], character="Neo", order=0)
    CastMemberFactory(movie=movie, person=people[2], character="Trinity", order=1)
    return movie
