"""JSON shapes of the catalogue: strict input validation, writes handed to services."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.validators import MaxValueValidator, RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.validators import UniqueValidator

from movieapi.fields import (
    ChangeRequiredMixin,
    DistinctListField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializerMixin,
    WholeWhenNestedMixin,
)
from movies import selectors, services
from movies.models import Genre, Movie, Person
from movies.representation import movie_representation
from movies.rules import (
    EMPTY_OPTIONAL_VALUES,
    IMDB_ID_LENGTH,
    IMDB_NAME_RE,
    IMDB_TITLE_RE,
    MAX_CAST,
    MAX_CHARACTER_LENGTH,
    MAX_DIRECTORS,
    MAX_GENRE_NAME_LENGTH,
    MAX_GENRES,
    MAX_NAME_LENGTH,
    MAX_OVERVIEW_LENGTH,
    MAX_RUNTIME,
    MAX_SLUG_LENGTH,
    MAX_TITLE_LENGTH,
    MIN_YEAR,
    SLUG_RE,
    max_year,
)
from movies.sql import MovieRow

# ---- reads -------------------------------------------------------------------------------------


class PersonRefSerializer(serializers.Serializer):
    """A person as other resources show them."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class CastReadSerializer(serializers.Serializer):
    person = PersonRefSerializer(read_only=True)
    character = serializers.CharField(read_only=True)
    order = serializers.IntegerField(read_only=True)


class RatingSummarySerializer(serializers.Serializer):
    average = serializers.FloatField(read_only=True, allow_null=True, help_text="Mean score to one decimal.")
    count = serializers.IntegerField(read_only=True)


class MovieSerializer(serializers.Serializer):
    """A movie as the API shows it: genres, directors and cast expanded, rating summary, version."""

    id = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)
    year = serializers.IntegerField(read_only=True)
    runtime = serializers.IntegerField(read_only=True, allow_null=True)
    overview = serializers.CharField(read_only=True)
    imdb_id = serializers.CharField(read_only=True, allow_null=True)
    genres = serializers.SerializerMethodField()
    directors = PersonRefSerializer(many=True, read_only=True)
    cast = CastReadSerializer(many=True, read_only=True)
    rating = serializers.SerializerMethodField()
    version = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    @extend_schema_field(serializers.ListField(child=serializers.SlugField()))
    def get_genres(self, movie: Movie) -> list[str]:
        """Genre slugs."""
        slugs = getattr(movie, "genre_slugs", None)
        if slugs is not None:
            return list(slugs)
        return sorted(genre.slug for genre in movie.genres.all())

    @extend_schema_field(RatingSummarySerializer)
    def get_rating(self, movie: Movie) -> dict[str, Any]:
        """Average and count of users' ratings."""
        average = movie.rating_average
        return {"average": float(average) if average is not None else None, "count": movie.rating_count}

    def to_representation(self, movie: Movie | MovieRow) -> dict[str, Any]:
        """The declared fields, built directly by `movie_representation`: the per-field machinery costs more than SQL.

        A MovieRow (`selectors.movie_detail`) as it is; a Movie by `movie_row_of`. test_discovery pins that this
        gives exactly what the declared fields would.
        """
        return movie_representation(movie if isinstance(movie, MovieRow) else self.movie_row_of(movie))

    def movie_row_of(self, movie: Movie) -> MovieRow:
        """A Movie's representation row: `selectors.movie_queryset` annotates the related data as JSON; a bare Movie
        falls back to the ORM."""
        return MovieRow(
            id=movie.id,
            title=movie.title,
            year=movie.year,
            runtime=movie.runtime,
            overview=movie.overview,
            imdb_id=movie.imdb_id,
            genres=self.get_genres(movie),
            directors=_annotated(movie, "directors_json", _directors),
            cast=_annotated(movie, "cast_json", _cast),
            rating_average=movie.rating_average,
            rating_count=movie.rating_count,
            version=movie.version,
            created_at=movie.created_at,
            updated_at=movie.updated_at,
        )


def _annotated(movie: Movie, name: str, fallback: Callable[[Movie], list[dict[str, Any]]]) -> Any:
    """The JSON text the queryset annotated, or the list built from the ORM for a bare Movie."""
    raw = getattr(movie, name, None)
    return fallback(movie) if raw is None else raw


def _directors(movie: Movie) -> list[dict[str, Any]]:
    people = sorted(movie.directors.all(), key=lambda person: (person.name, person.pk))
    return [{"id": person.pk, "name": person.name} for person in people]


def _cast(movie: Movie) -> list[dict[str, Any]]:
    return [
        {"person": {"id": role.person.pk, "name": role.person.name}, "character": role.character, "order": role.order}
        for role in movie.cast.select_related("person").order_by("order")
    ]


# ---- writes ------------------------------------------------------------------------------------


class CastWriteSerializer(WholeWhenNestedMixin, StrictSerializerMixin, serializers.Serializer):
    person = StrictIntegerField(min_value=1, help_text="A person id.")
    character = StrictCharField(max_length=MAX_CHARACTER_LENGTH, allow_blank=True, required=False, default="")


@dataclass(frozen=True)
class MovieRef:
    """A movie named by its id and not read: what a write starts from. Its conditional statement finds out whether
    the movie exists, and at which version, in the same round trip as the write."""

    id: int


class MovieWriteSerializer(ChangeRequiredMixin, StrictSerializerMixin, serializers.Serializer):
    """A movie as clients write it: genres by slug, people by id, cast as an ordered list.

    `version` (or If-Match) says which version a PUT or PATCH is based on; `update` hands the
    check and the write to `services.movie_update`, the one versioned write path.
    """

    # (The docstring above is the schema's.) If-Match reaches `update` as `save(expected_version=…)`, the writer (the
    # history's `Actor`) as `save(actor=…)`; `create` and `update` return the movie's representation row, which
    # `to_representation` shows.

    read_only_input = frozenset({"id", "rating", "created_at", "updated_at"})
    precondition_fields = frozenset({"version"})

    title = StrictCharField(min_length=1, max_length=MAX_TITLE_LENGTH)
    # The ceiling moves with the calendar: a callable limit, which the schema states as of the day it is generated.
    year = StrictIntegerField(min_value=MIN_YEAR, validators=[MaxValueValidator(max_year)])
    runtime = StrictIntegerField(min_value=1, max_value=MAX_RUNTIME, required=False, allow_null=True)
    overview = StrictCharField(required=False, allow_blank=True, max_length=MAX_OVERVIEW_LENGTH, trim_whitespace=False)
    imdb_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=IMDB_ID_LENGTH,
        validators=[RegexValidator(IMDB_TITLE_RE, "An IMDb id is 'tt' followed by 7 or more digits.")],
    )
    genres = DistinctListField(
        child=StrictCharField(max_length=MAX_SLUG_LENGTH),
        required=False,
        max_length=MAX_GENRES,
        help_text="Genre slugs.",
    )
    directors = DistinctListField(
        child=StrictIntegerField(min_value=1), required=False, max_length=MAX_DIRECTORS, help_text="Person ids."
    )
    cast = CastWriteSerializer(many=True, required=False, max_length=MAX_CAST)  # type: ignore[call-arg]
    version = StrictIntegerField(
        min_value=1, required=False, help_text="The version this write is based on (or send If-Match)."
    )

    # Fields a PUT resets when it leaves them out: a PUT replaces the whole movie.
    put_defaults: dict[str, Any] = EMPTY_OPTIONAL_VALUES

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        """For a partial update, only the fields it sends. DRF skips the others in a partial validation anyway, and
        copying all nine declared fields with their nested children for every request cost a PATCH of one field
        more CPU than validating it."""
        data = getattr(self, "initial_data", None)
        if self.partial and isinstance(data, Mapping):
            return {name: copy.deepcopy(field) for name, field in self._declared_fields.items() if name in data}
        fields: dict[str, serializers.Field[Any, Any, Any, Any]] = super().get_fields()
        return fields

    def known_field_names(self) -> set[str]:
        """Every declared field, whichever `get_fields` built."""
        return set(self._declared_fields)

    def writable_field_names(self) -> list[str]:
        """Every declared field (all writable), whichever `get_fields` built."""
        return list(self._declared_fields)

    def validate_imdb_id(self, value: str | None) -> str | None:
        """Refuse an IMDb id another movie has."""
        if value:
            others = Movie.objects.filter(imdb_id=value)
            if self.instance is not None:
                others = others.exclude(pk=self.instance.id)
            if others.exists():
                raise serializers.ValidationError("Another movie already has this IMDb id.")
        return value

    def validate_genres(self, slugs: list[str]) -> list[Genre]:
        """Resolve the (distinct) genre slugs; each must exist."""
        genres = {genre.slug: genre for genre in Genre.objects.filter(slug__in=slugs)}
        unknown = [slug for slug in slugs if slug not in genres]
        if unknown:
            raise serializers.ValidationError(f"Unknown genre(s): {', '.join(unknown)}. See /api/v1/genres/.")
        return [genres[slug] for slug in slugs]

    def validate_directors(self, ids: list[int]) -> list[Person]:
        """Resolve the (distinct) person ids; each must exist."""
        return _people(ids)

    def validate_cast(self, entries: list[dict[str, Any]]) -> list[services.Role]:
        """Resolve the cast's people, keeping the list order as billing order."""
        people = {person.pk: person for person in _people([entry["person"] for entry in entries])}
        return [services.Role(person=people[entry["person"]], character=entry["character"]) for entry in entries]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A PATCH names something to change (ChangeRequiredMixin); a PUT resets the optional fields it leaves out."""
        attrs = super().validate(attrs)
        if self.instance is not None and not self.partial:
            for name, default in self.put_defaults.items():
                attrs.setdefault(name, default)
        return attrs

    def create(self, validated_data: dict[str, Any]) -> MovieRow:
        """Create through the service; the movie as created."""
        validated_data.pop("version", None)
        actor = validated_data.pop("actor")
        movie = services.movie_create(data=validated_data, actor=actor)  # type: ignore[arg-type]
        return _as_written(movie.pk)

    def update(self, instance: MovieRef, validated_data: dict[str, Any]) -> MovieRow:
        """Check the version and write, atomically, through `services.movie_update`: the body's `version` wins over
        the `expected_version` the view saves with (If-Match). The movie as written."""
        expected = validated_data.pop("version", None)
        named = validated_data.pop("expected_version", None)
        actor = validated_data.pop("actor")
        written = services.movie_update(
            movie_id=instance.id,
            expected_version=named if expected is None else expected,
            data=validated_data,  # type: ignore[arg-type]
            actor=actor,
        )
        # The write's own statement reads the row when it changed the row alone.
        return _as_written(instance.id) if written.row is None else written.row

    def to_representation(self, instance: MovieRow) -> dict[str, Any]:
        """The movie as the API shows it (MovieSerializer's shape), from the row `create` or `update` returned."""
        return movie_representation(instance)


def _as_written(movie_id: int) -> MovieRow:
    """The movie's representation row just after a write (404 if it has been deleted since)."""
    row = selectors.movie_detail(movie_id=movie_id)
    if row is None:
        raise NotFound("No such movie: it may have been deleted.")
    return row


def _people(ids: list[int]) -> list[Person]:
    people = {person.pk: person for person in Person.objects.filter(pk__in=ids).only("id", "name")}
    missing = sorted({pk for pk in ids if pk not in people})
    if missing:
        raise serializers.ValidationError(f"No person with id(s) {', '.join(map(str, missing))}.")
    return [people[pk] for pk in ids]


# ---- genres and people -------------------------------------------------------------------------


class GenreSerializer(ChangeRequiredMixin, StrictSerializerMixin, serializers.ModelSerializer):
    read_only_input = frozenset({"id"})

    slug = StrictCharField(
        max_length=MAX_SLUG_LENGTH,
        validators=[
            RegexValidator(SLUG_RE, "Lower-case letters and digits, words joined by single hyphens."),
            UniqueValidator(queryset=Genre.objects.all(), message="A genre with this slug exists."),
        ],
    )
    name = StrictCharField(
        max_length=MAX_GENRE_NAME_LENGTH,
        validators=[UniqueValidator(queryset=Genre.objects.all(), message="A genre with this name exists.")],
    )

    class Meta:
        model = Genre
        fields = ["id", "slug", "name"]


class PersonSerializer(ChangeRequiredMixin, StrictSerializerMixin, serializers.ModelSerializer):
    read_only_input = frozenset({"id", "directed", "roles"})

    name = StrictCharField(max_length=MAX_NAME_LENGTH)
    imdb_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=IMDB_ID_LENGTH,
        validators=[
            RegexValidator(IMDB_NAME_RE, "An IMDb person id is 'nm' followed by 7 or more digits."),
            UniqueValidator(queryset=Person.objects.all(), message="Another person has this IMDb id."),
        ],
    )

    class Meta:
        model = Person
        fields = ["id", "name", "imdb_id"]


class FilmRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)
    year = serializers.IntegerField(read_only=True)


class RoleSerializer(serializers.Serializer):
    movie = FilmRefSerializer(read_only=True)
    character = serializers.CharField(read_only=True)


SHOWN_CREDITS_HELP = (
    f"The first {selectors.PERSON_FILMS_SHOWN}, earliest film first; all of them: movies/?person={{id}}, paginated."
)


class PersonDetailSerializer(PersonSerializer):
    """A person with the films they directed and the roles they played: the first PERSON_FILMS_SHOWN of each (by
    year), and how many there are."""

    directed = FilmRefSerializer(source="shown_directed", many=True, read_only=True, help_text=SHOWN_CREDITS_HELP)
    directed_count = serializers.IntegerField(read_only=True, help_text="How many films this person directed.")
    roles = RoleSerializer(source="shown_roles", many=True, read_only=True, help_text=SHOWN_CREDITS_HELP)
    roles_count = serializers.IntegerField(read_only=True, help_text="How many roles this person played.")

    class Meta(PersonSerializer.Meta):
        fields = [*PersonSerializer.Meta.fields, "directed", "directed_count", "roles", "roles_count"]


# ---- ratings -----------------------------------------------------------------------------------


class RatedMovieSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)


class RatingSerializer(serializers.Serializer):
    """The caller's rating of a movie, as `movies/{id}/rating/` and `me/ratings/` show it."""

    movie = RatedMovieSerializer(read_only=True)
    score = serializers.IntegerField(read_only=True, min_value=1, max_value=10)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True, help_text="When the score was last set.")


class RatingWriteSerializer(StrictSerializerMixin, serializers.Serializer):
    """A score from 1 to 10, as a JSON integer; the fields of the representation are ignored."""

    read_only_input = frozenset({"movie", "created_at", "updated_at"})

    score = StrictIntegerField(min_value=1, max_value=10, help_text="A whole number from 1 to 10.")
