"""Filters, search and ordering for the movie list (API.md, Lists): every bad value is a 400 naming its parameter."""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django import forms
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections
from django.db.models import Exists, F, OrderBy, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from movieapi.pagination import count_by_estimate
from movies.models import DB_MAX_YEAR, MAX_GENRES, MAX_RUNTIME, SLUG_RE, CastMember, Genre, Movie, Person

_SLUG = re.compile(SLUG_RE)

MAX_SEARCH_LENGTH = 200
# Query parameters the list answers besides its filters: paging, and DRF's format suffix.
PAGING_PARAMETERS = frozenset({"page", "page_size", "format"})

# Public ordering keys → columns. Each (column, id) pair has a btree index in both directions.
ORDERING_FIELDS: dict[str, str] = {
    "title": "title",
    "year": "year",
    "runtime": "runtime",
    "rating": "rating_average",
    "rating_count": "rating_count",
    "created_at": "created_at",
}
# Nullable columns: NULLs (unrated movies, unknown runtimes) go last in both directions, as their indexes do.
NULLS_LAST = frozenset({"rating_average", "runtime"})
ORDERING_CHOICES = [(key, key) for key in ORDERING_FIELDS] + [(f"-{key}", f"-{key}") for key in ORDERING_FIELDS]


class MultiValueWidget(forms.Widget):
    """Read every occurrence of a repeated query parameter (`genre=a&genre=b`)."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        """All values of the parameter, repeated or not."""
        if isinstance(data, MultiValueDict | QueryDict):
            return data.getlist(name)
        value = data.get(name)
        return [] if value is None else [value]


class GenreSlugsField(forms.Field):
    """Genre slugs, repeated and/or comma-separated, resolved to genre ids (unknown slugs are an error)."""

    widget = MultiValueWidget

    def to_python(self, value: Any) -> list[int]:
        """Split, check and resolve the slugs in one query."""
        slugs: list[str] = []
        for raw in value or []:
            slugs.extend(part.strip() for part in str(raw).split(","))
        slugs = [slug for slug in slugs if slug]
        if not slugs:
            return []
        slugs = list(dict.fromkeys(slugs))
        if len(slugs) > MAX_GENRES:
            raise forms.ValidationError(f"At most {MAX_GENRES} genres.")
        bad = [slug for slug in slugs if len(slug) > 50 or not _SLUG.fullmatch(slug)]
        if bad:
            raise forms.ValidationError(f"Not a genre slug: {', '.join(map(repr, bad))}.")
        ids = dict(Genre.objects.filter(slug__in=slugs).values_list("slug", "id"))
        unknown = [slug for slug in slugs if slug not in ids]
        if unknown:
            raise forms.ValidationError(f"Unknown genre(s): {', '.join(unknown)}. See /api/v1/genres/.")
        return [ids[slug] for slug in slugs]


class OrderingField(forms.Field):
    """Comma-separated ordering keys, each optionally prefixed with '-'."""

    def to_python(self, value: Any) -> list[str]:
        """Split and check every key against the allowed ones."""
        keys = [part.strip() for part in str(value or "").split(",") if part.strip()]
        allowed = {choice for choice, _ in ORDERING_CHOICES}
        bad = [key for key in keys if key not in allowed]
        if bad:
            raise forms.ValidationError(
                f"Unknown ordering {', '.join(map(repr, bad))}; use one of {', '.join(ORDERING_FIELDS)}, "
                "each optionally prefixed with '-'."
            )
        return keys


class PersonIdField(forms.IntegerField):
    """A person id that exists (an unknown one is a 400, like an unknown genre)."""

    def to_python(self, value: Any) -> int | None:
        """Parse and check that the person exists."""
        person_id: int | None = super().to_python(value)
        if person_id is None:
            return None
        if not 1 <= person_id < 2**63:
            raise forms.ValidationError("A person id is a whole number of at least 1.")
        if not Person.objects.filter(pk=person_id).exists():
            raise forms.ValidationError(f"No person with id {person_id}. See /api/v1/people/.")
        return person_id


class IntegerFilter(django_filters.Filter):
    """A whole-number filter with bounds, so that no value can overflow the column (400, not 500)."""

    field_class = forms.IntegerField


@extend_schema_field(OpenApiTypes.STR)
class GenreFilter(django_filters.Filter):
    field_class = GenreSlugsField


@extend_schema_field(OpenApiTypes.INT)
class PersonFilter(django_filters.Filter):
    field_class = PersonIdField


class OrderingKeysFilter(django_filters.Filter):
    field_class = OrderingField


class StrictFilterForm(forms.Form):
    """Refuse query parameters the list does not know, naming them (a typo must not silently widen a search)."""

    def clean(self) -> dict[str, Any]:
        """Add an error for every unknown parameter."""
        cleaned = super().clean() or {}
        for name in self.data:
            if name not in self.fields and name not in PAGING_PARAMETERS:
                self.errors[name] = self.error_class(
                    [f"Unknown query parameter. Known: {', '.join([*self.fields, *sorted(PAGING_PARAMETERS)])}."]
                )
        return cleaned


class MovieFilterSet(django_filters.FilterSet):
    """`GET movies/` parameters; `search` and `ordering` are applied last, in `filter_queryset`."""

    search = django_filters.CharFilter(
        method="_applied_last", max_length=MAX_SEARCH_LENGTH, help_text="Full text over title and overview."
    )
    genre = GenreFilter(
        method="filter_genres",
        help_text="Genre slug; repeat or comma-separate: the movie has all of them.",
    )
    year_min = IntegerFilter(field_name="year", lookup_expr="gte", min_value=0, max_value=DB_MAX_YEAR)
    year_max = IntegerFilter(field_name="year", lookup_expr="lte", min_value=0, max_value=DB_MAX_YEAR)
    runtime_min = IntegerFilter(field_name="runtime", lookup_expr="gte", min_value=0, max_value=MAX_RUNTIME)
    runtime_max = IntegerFilter(field_name="runtime", lookup_expr="lte", min_value=0, max_value=MAX_RUNTIME)
    rating_min = django_filters.NumberFilter(
        field_name="rating_average",
        lookup_expr="gte",
        validators=[MinValueValidator(0), MaxValueValidator(10)],
        help_text="Minimum average rating (0-10); unrated movies are left out.",
    )
    person = PersonFilter(
        method="filter_person",
        help_text="A person id: movies they play in or direct.",
    )
    ordering = OrderingKeysFilter(
        method="_applied_last",
        help_text=(
            "Comma-separated keys among title, year, runtime, rating, rating_count, created_at, each optionally "
            "prefixed with '-'; ties are broken by id; unrated movies come last either way. "
            "Default: best match first with `search`, else id."
        ),
    )

    class Meta:
        model = Movie
        fields: list[str] = []
        form = StrictFilterForm

    def _applied_last(self, queryset: QuerySet[Movie], name: str, value: Any) -> QuerySet[Movie]:
        return queryset

    def filter_genres(self, queryset: QuerySet[Movie], name: str, genre_ids: list[int]) -> QuerySet[Movie]:
        """Movies that have every genre: one semi-join per genre on the (movie, genre) unique index."""
        through = Movie.genres.through
        for genre_id in genre_ids:
            queryset = queryset.filter(Exists(through.objects.filter(movie_id=OuterRef("pk"), genre_id=genre_id)))
        return queryset

    def filter_person(self, queryset: QuerySet[Movie], name: str, person_id: int) -> QuerySet[Movie]:
        """Movies the person plays in or directs (both lookups start from the person's index)."""
        directed = Movie.directors.through.objects.filter(person_id=person_id).values("movie_id")
        played = CastMember.objects.filter(person_id=person_id).values("movie_id")
        return queryset.filter(Q(pk__in=played) | Q(pk__in=directed))

    def filter_queryset(self, queryset: QuerySet[Movie]) -> QuerySet[Movie]:
        """Filters, then search (ranked), then ordering with `id` as the tie-breaker."""
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        search = (data.get("search") or "").strip()
        keys: list[str] = data.get("ordering") or []
        order: list[OrderBy] = []
        typo = False
        if search:
            queryset, order, typo = search_movies(queryset, search)
        if keys:
            order = [_order_by(key) for key in keys]
            order.append(F("id").desc() if keys[-1].startswith("-") else F("id").asc())
        queryset = queryset.order_by(*order) if order else queryset.order_by("id")
        # Counting trigram matches exactly is never cheap (see count_by_estimate); the last page still is exact.
        return count_by_estimate(queryset) if typo else queryset


def _order_by(key: str) -> OrderBy:
    """One ordering key; NULLS LAST only on nullable columns, so the plain indexes still match the others."""
    name = ORDERING_FIELDS[key.removeprefix("-")]
    nulls_last = True if name in NULLS_LAST else None
    return F(name).desc(nulls_last=nulls_last) if key.startswith("-") else F(name).asc(nulls_last=nulls_last)


def search_movies(queryset: QuerySet[Movie], text: str) -> tuple[QuerySet[Movie], list[OrderBy], bool]:
    """(matches, best-first ordering, whether they are typo matches): full text, else trigram title matches.

    Full text is served by the GIN index `movie_search`; its rank adds the title's trigram word similarity to
    `ts_rank`, so title hits (weight A) come before overview hits (weight B). Only when full text finds
    nothing (a typo: `matrx`) do the titles' trigrams take over (`title %> q`, GIN `movie_title_trgm`), ranked
    by word similarity, then by number of ratings (equally near titles: the better known first), then id.
    OR-ing both arms made every query pay for the trigram arm (140 ms against 2 ms for `lost kingdom` on a
    million movies). Ordering by `rating_count` also keeps PostgreSQL off the plan it preferred for the typo
    arm, a whole scan of the `(title, id)` index filtered by `%>` (1.4 s): it cannot be index-only now, and
    the GIN bitmap wins (12 ms for `lost kingdm`, ~60 ms warm for `matrx`, whose 10,000 candidates must all
    be ranked).
    """
    query = SearchQuery(text, search_type="websearch", config="simple") | SearchQuery(
        text, search_type="websearch", config="english"
    )
    similarity = TrigramWordSimilarity(text, "title")
    matches = queryset.filter(search_vector=query)
    if _has_rows(matches):
        rank = SearchRank(F("search_vector"), query) + similarity
        return matches.annotate(search_rank=rank), [F("search_rank").desc(), F("id").asc()], False
    typos = queryset.filter(title__trigram_word_similar=text).annotate(search_rank=similarity)
    return typos, [F("search_rank").desc(), F("rating_count").desc(), F("id").asc()], True


def _has_rows(queryset: QuerySet[Movie]) -> bool:
    """Whether the queryset matches any row, planned for all its rows so that the GIN index answers.

    `EXISTS`/`LIMIT 1` lets PostgreSQL plan for the first row only, and for a word it has no statistics on
    (a typo) it expects ~1,000 matches and sequential-scans to find the first soon: 300-540 ms when there is
    none. A MATERIALIZED CTE is planned for all rows (a bitmap scan of `movie_search`: 0.4 ms for no match,
    1.5 ms for `lost kingdom`, ~50 ms for a word in a third of the catalogue) and read only up to its first row.
    """
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"WITH matches AS MATERIALIZED ({sql}) SELECT EXISTS (SELECT 1 FROM matches)", params)  # noqa: S608 (compiled ORM SQL with parameters)
        row = cursor.fetchone()
    return bool(row and row[0])
