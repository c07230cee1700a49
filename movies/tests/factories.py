"""factory_boy factories for the catalogue."""

from __future__ import annotations

import factory

from movies.models import CastMember, Genre, Movie, Person


class GenreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Genre
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"genre-{n}")
    name = factory.LazyAttribute(lambda genre: genre.slug.replace("-", " ").title())


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Person

    name = factory.Faker("name")


class MovieFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Movie
        skip_postgeneration_save = True

    title = factory.Sequence(lambda n: f"Movie {n}")
    year = 1999
    runtime = 120
    overview = "A film."
    imdb_id = factory.Sequence(lambda n: f"tt{n:07d}")

    @factory.post_generation
    def genres(self, create: bool, extracted: list[Genre] | None, **kwargs: object) -> None:
        if create and extracted:
            self.genres.set(extracted)

    @factory.post_generation
    def directors(self, create: bool, extracted: list[Person] | None, **kwargs: object) -> None:
        if create and extracted:
            self.directors.set(extracted)


class CastMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CastMember

    movie = factory.SubFactory(MovieFactory)
    person = factory.SubFactory(PersonFactory)
    character = factory.Faker("first_name")
    order = factory.Sequence(lambda n: n)
