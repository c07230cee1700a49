"""Filters, search and ordering for the movie list (docs/search.md): every bad value is a 400 naming its parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import django_filters
from django import forms
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramSimilarity, TrigramWordSimilarity
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections
from django.db.models import BooleanField, Exists, F, Model, OrderBy, OuterRef, Q, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat, Length, Lower
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import extend_schema_field

from movieapi.fields import PG_BIGINT_MAX, PY_WHITESPACE
from movieapi.filtersets import PlanningFilterSet
from movieapi.pagination import ListPlan
from movies import selectors
from movies.models import CastMember, Genre, Movie, Person, unaccented, words_of
from movies.rules import DB_MAX_YEAR, MAX_GENRES, MAX_RUNTIME, SLUG_RE
from movies.sql import (
    IDS_IN_ORDER_SQL,
    NAME_SEARCH_CONFIG,
    OVERVIEW_SEARCH_CONFIG,
    SEARCH_CANDIDATES,
    SEARCH_MATCHES_SQL,
    SEARCH_PROBE_SQL,
    SEARCH_RANKED_IDS_SQL,
    SEARCH_TITLE_MATCHES_SQL,
    SEARCH_TSQUERY_SQL,
    TITLE_MATCH_SQL,
    TITLE_SEARCH_CONFIG,
    TYPO_MATCHES_SQL,
    TYPO_PROBE_SQL,
)

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
            # The client's text goes in params: django-filter formats every message with them (`%` in it was a 500).
            raise forms.ValidationError("Not a genre slug: %(bad)s.", params={"bad": ", ".join(map(repr, bad))})
        ids = selectors.genre_ids(slugs=slugs)
        unknown = [slug for slug in slugs if slug not in ids]
        if unknown:
            raise forms.ValidationError(
                "Unknown genre(s): %(unknown)s. See /api/v1/genres/.", params={"unknown": ", ".join(unknown)}
            )
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
                "Unknown ordering %(bad)s; use one of %(keys)s, each optionally prefixed with '-'.",
                params={"bad": ", ".join(map(repr, bad)), "keys": ", ".join(ORDERING_FIELDS)},
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


def _comma_separated(token: str) -> str:
    """A pattern for comma-separated tokens as the fields above read them: parts trimmed, empty parts skipped."""
    part = rf"[{PY_WHITESPACE}]*(?:{token})?[{PY_WHITESPACE}]*"
    return rf"^{part}(?:,{part})*$"


# Repeatable (`genre=a&genre=b`); each value comma-separated slugs. Whether a slug exists is the data's to say (400).
@extend_schema_field({"type": "array", "items": {"type": "string", "pattern": _comma_separated(SLUG_RE[1:-1])}})
class GenreFilter(django_filters.Filter):
    field_class = GenreSlugsField


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": PG_BIGINT_MAX})
class PersonFilter(django_filters.Filter):
    field_class = PersonIdField


@extend_schema_field({"type": "string", "pattern": _comma_separated(rf"-?(?:{'|'.join(ORDERING_FIELDS)})")})
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
            elif (
                name in self.fields
                and _repeated(self.data, name)
                and not isinstance(self.fields[name].widget, MultiValueWidget)
            ):
                # A form reads the last value: `year_min=2000&year_min=abc` would drop the first unseen.
                self.errors[name] = self.error_class(["Given more than once; send it once."])
        return cleaned


def _repeated(data: Any, name: str) -> bool:
    """True if the query names the parameter more than once."""
    return isinstance(data, MultiValueDict) and len(data.getlist(name)) > 1


class MovieFilterSet(PlanningFilterSet):
    """`GET movies/` parameters; `search` and `ordering` are applied last, in `filter_plan`."""

    search = django_filters.CharFilter(
        method="_applied_last",
        max_length=MAX_SEARCH_LENGTH,
        strip=False,  # the length is checked as sent (the schema's maxLength); filter_plan strips it
        help_text="Full text over title and overview.",
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

    def filter_plan(self, queryset: QuerySet[Movie]) -> ListPlan:
        """Filters, then search (ranked), then ordering with `id` as the tie-breaker; what the search's probe told
        (its count, its ranked ids' SQL) travels beside the queryset."""
        queryset = self.filter_queryset(queryset)
        data = self.form.cleaned_data
        search = (data.get("search") or "").strip()
        keys: list[str] = data.get("ordering") or []
        order: list[OrderBy] = []
        result = None
        if search:
            result = search_movies(queryset, search, ranked=not keys)
            queryset, order = result.queryset, result.order
        if keys:
            order = [_order_by(key) for key in keys]
            order.append(F("id").desc() if keys[-1].startswith("-") else F("id").asc())
        queryset = queryset.order_by(*order) if order else unfiltered(queryset)
        if result is None:
            return ListPlan(queryset)
        return ListPlan(
            queryset,
            page_ids_sql=result.page_ids,  # only a ranked search (no `ordering`) has them
            known_count=result.count,
            known_count_is_estimate=result.count_is_estimate,
            # Counting trigram matches exactly is never cheap; the last page still is exact.
            count_by_estimate=result.typo,
        )


class PagingOnlyFilterSet(PlanningFilterSet):
    """A list that takes nothing but the paging parameters: any other one is a 400 naming it."""

    class Meta:
        fields: list[str] = []
        form = StrictFilterForm


class NameSearchFilterSet(PagingOnlyFilterSet):
    """A list of named things (people, genres) with a `search` over their names (`search_by_name`)."""

    search = django_filters.CharFilter(
        method="_applied_last",
        max_length=MAX_SEARCH_LENGTH,
        strip=False,  # the length is checked as sent (the schema's maxLength); filter_plan strips it
        help_text=(
            "Words of the name, case and accents aside (`leon` finds Léon), best match first; "
            "when no name has them all, names near the text (typos)."
        ),
    )

    def _applied_last(self, queryset: QuerySet[Any], name: str, value: Any) -> QuerySet[Any]:
        return queryset

    def find(self, queryset: QuerySet[Any], text: str) -> ListPlan:
        """The rows that match the text, best first."""
        raise NotImplementedError

    def filter_plan(self, queryset: QuerySet[Any]) -> ListPlan:
        """The search, ranked, if there is one; the list in its own order otherwise."""
        queryset = self.filter_queryset(queryset)
        text = (self.form.cleaned_data.get("search") or "").strip()
        return self.find(queryset, text) if text else ListPlan(queryset)


class PersonFilterSet(NameSearchFilterSet):
    """`GET people/` parameters."""

    class Meta(NameSearchFilterSet.Meta):
        model = Person

    def find(self, queryset: QuerySet[Any], text: str) -> ListPlan:
        """People by name (`search_people`)."""
        return search_people(queryset, text)


class GenreFilterSet(NameSearchFilterSet):
    """`GET genres/` parameters."""

    class Meta(NameSearchFilterSet.Meta):
        model = Genre

    def find(self, queryset: QuerySet[Any], text: str) -> ListPlan:
        """Genres by name and slug (`search_genres`)."""
        return search_genres(queryset, text)


def search_people(queryset: QuerySet[Person], text: str) -> ListPlan:
    """People by name, best match first (`search_by_name` on the indexes `person_name_search`, `person_name_trgm`)."""
    return search_by_name(queryset, text, F("name"))


def search_genres(queryset: QuerySet[Genre], text: str) -> ListPlan:
    """Genres by name and slug (`science-fiction` and `Science Fiction` both find it), best match first; a few
    rows, no index."""
    return search_by_name(queryset, text, Concat(F("name"), Value(" "), F("slug"), output_field=TextField()))


def search_by_name(queryset: QuerySet[Any], text: str, name: Any) -> ListPlan:
    """The rows whose name has every word of the text, else those whose name is near it (typos), best match first.

    Words: `to_tsvector('simple_unaccent', name) @@ plainto_tsquery('simple_unaccent', text)` (GIN
    `person_name_search` for people): every word, case and accents aside, no operators (`-` and quotes are only
    punctuation in a name). Every such name holds every word, so the nearest is the shortest: ranked by length, then
    id (no per-row similarity: `john` has 3,000 matches among 150,000 people, and ranking them by trigram similarity
    took 20-35 ms, by length 2.5 ms). When no name has them all (`kubrik`, or `smit` typed on the way to `smith`),
    trigrams: `immutable_unaccent(name) %> immutable_unaccent(text)` (GIN `person_name_trgm`), a name with a part near
    the text; like a movie's typo search, only the first SEARCH_CANDIDATES of them are ranked (by how near the name's
    trigrams are to the text's words, plus to the whole text, then id) and the count says so. A text without a
    letter or digit has no word or trigram to look up: nothing matches.
    """
    if not any(char.isalnum() for char in text):
        return ListPlan(queryset.none())
    words = queryset.alias(name_words=words_of(name, NAME_SEARCH_CONFIG)).filter(
        name_words=SearchQuery(text, search_type="plain", config=NAME_SEARCH_CONFIG)
    )
    if words.exists():  # a fallback, not an OR: the trigram arm is the costlier one (as for movies)
        return ListPlan(words.order_by(Length(name), "pk"))
    # Any: the stubs type the trigram functions' text as str; Django takes any expression there.
    folded_name, folded_text = unaccented(name), cast(Any, unaccented(Value(text)))
    typos = queryset.alias(folded_name=folded_name).filter(folded_name__trigram_word_similar=folded_text)
    candidates = list(typos.order_by().values_list("pk", flat=True)[: SEARCH_CANDIDATES + 1])
    rank = TrigramWordSimilarity(folded_text, folded_name) + TrigramSimilarity(folded_name, folded_text)
    found = (
        queryset.filter(_id_among(candidates[:SEARCH_CANDIDATES], queryset.model))
        .annotate(search_rank=rank)
        .order_by("-search_rank", "pk")
    )
    return ListPlan(
        found,
        known_count=min(len(candidates), SEARCH_CANDIDATES),
        known_count_is_estimate=len(candidates) > SEARCH_CANDIDATES,
    )


def unfiltered(queryset: QuerySet[Movie]) -> QuerySet[Movie]:
    """The list without filter, search or ordering parameters: every movie, by id."""
    return queryset.order_by("id")


# Fast path: paging-only lists skip the FilterSet.
# Replaces: django-filter validating and applying a FilterSet when the query has only page, page_size or format.
# Why: ~17% fewer Python calls a page (~2,900 -> ~2,400; e91d689).
# Equal: movies/tests/test_discovery.py::test_a_list_with_only_paging_parameters_skips_the_filterset
# Off: make has_list_parameters return True.
def has_list_parameters(params: QueryDict) -> bool:
    """True if the query names anything besides paging: then the FilterSet validates and applies it."""
    return not params.keys() <= PAGING_PARAMETERS


def _order_by(key: str) -> OrderBy:
    """One ordering key; NULLS LAST only on nullable columns, so the plain indexes still match the others."""
    name = ORDERING_FIELDS[key.removeprefix("-")]
    nulls_last = True if name in NULLS_LAST else None
    return F(name).desc(nulls_last=nulls_last) if key.startswith("-") else F(name).asc(nulls_last=nulls_last)


@dataclass
class SearchResult:
    """What `search_movies` found: the matches, their best-first ordering, and how to count them."""

    queryset: QuerySet[Movie]
    order: list[OrderBy]
    # Exact number of matches (or of the candidates that are ranked), when the probe told it.
    count: int | None = None
    count_is_estimate: bool = False
    # Trigram matches: never counted exactly (see ListPlan.count_by_estimate).
    typo: bool = False
    # The ranked ids as SQL with its parameters, best first, when no compiled queryset is needed for them (a full-text
    # search of the whole catalogue, any typo search: its probe ranked them).
    page_ids: tuple[str, list[Any]] | None = None


def search_movies(queryset: QuerySet[Movie], text: str, *, ranked: bool = True) -> SearchResult:
    """Full text, else trigram title matches (typos), else, for stop words only, the exact title (docs/search.md).

    One probe (`SEARCH_PROBE_SQL`) tells whether the query has a word the index can look up and returns the ids
    of up to SEARCH_CANDIDATES + 1 full-text matches: the movies whose title matches first (GIN
    `movie_title_search`), then other matches in the order the GIN bitmap gives them (storage order). Ranked (no
    explicit `ordering`), only the first SEARCH_CANDIDATES of them are ranked and returned: ranking reads every
    match it ranks (a word in a third of the catalogue took 1.1 s), so a query matching more than that is answered
    from a bounded candidate set, and says so with `count_is_estimate`; every title match is in it unless there are
    more than SEARCH_CANDIDATES of those. Rank = `ts_rank` (title weight A above overview weight B) + the title's
    trigram word similarity + its whole-title similarity, ties by id. When full text finds nothing (`matrx`), the
    titles' trigrams take over (`title %> q`, both unaccented, GIN `movie_title_trgm`), bounded the same way and
    ranked by word similarity, then number of ratings (equally near titles, the better known first), then id. With
    an explicit `ordering`, every match is returned in that order. Accents never count: the configurations and the
    trigram expressions unaccent both sides (movies/sql.py).
    """
    query = SearchQuery(text, search_type="websearch", config=TITLE_SEARCH_CONFIG) | SearchQuery(
        text, search_type="websearch", config=OVERVIEW_SEARCH_CONFIG
    )
    # Trigrams compare unaccented texts (movies/sql.py FOLDED_TITLE_SQL, FOLDED_QUERY_SQL), as indexed.
    # Any: the stubs type the trigram functions' text as str; Django takes any expression there.
    folded_title, folded_text = unaccented(F("title")), cast(Any, unaccented(Value(text)))
    similarity = TrigramWordSimilarity(folded_text, folded_title)
    matches = queryset.filter(search_vector=query)
    whole_catalogue = selectors.whole_catalogue(queryset)
    sources: dict[str, QuerySet[Movie, Any] | tuple[str, list[Any]]]
    if whole_catalogue:  # the sources' SQL is constant: nothing to build or compile
        sources = {
            "title_matches_sql": (SEARCH_TITLE_MATCHES_SQL, [text, text]),
            "matches_sql": (SEARCH_MATCHES_SQL, [text, text]),
        }
    else:
        # Movies whose title words match (the probe checks that the whole query matches them too).
        title_matches = queryset.filter(RawSQL(TITLE_MATCH_SQL, (text, text), output_field=BooleanField()))  # noqa: S611 (constant SQL; the text is a parameter)
        sources = {
            "title_matches_sql": title_matches.values("pk", "search_vector"),
            "matches_sql": matches.values("pk"),
        }
    searchable, candidates = _probe(
        SEARCH_PROBE_SQL, sources, [text, text, SEARCH_CANDIDATES + 1, text, text, SEARCH_CANDIDATES + 1]
    )
    if not searchable:
        # Only stop words ("her", "it") or negations: the index has nothing to look up; the exact title may exist.
        exact = queryset.annotate(title_lower=Lower("title")).filter(title_lower=" ".join(text.lower().split()))
        return SearchResult(exact, [F("rating_count").desc(), F("id").asc()])
    if candidates:
        more = len(candidates) > SEARCH_CANDIDATES
        if not ranked:
            # Every match, in the requested order; the count is known unless there are more than the candidates.
            return SearchResult(matches, [], count=None if more else len(candidates))
        found = queryset.filter(_id_in(candidates[:SEARCH_CANDIDATES]))
        # Whole-title similarity on top: among titles containing every word, the exact title first
        # (`the matrix`: "The Matrix" before "Matrix of the Matrix", which ts_rank prefers for its two matches).
        rank = SearchRank(F("search_vector"), query) + similarity + TrigramSimilarity(folded_title, folded_text)
        return SearchResult(
            found.annotate(search_rank=rank),
            [F("search_rank").desc(), F("id").asc()],
            count=min(len(candidates), SEARCH_CANDIDATES),
            count_is_estimate=more,
            page_ids=(SEARCH_RANKED_IDS_SQL, [int_array(candidates[:SEARCH_CANDIDATES]), text, text, text, text])
            if whole_catalogue
            else None,
        )
    typos = queryset.alias(folded=folded_title).filter(folded__trigram_word_similar=folded_text)
    order = [F("search_rank").desc(), F("rating_count").desc(), F("id").asc()]
    if not ranked:
        return SearchResult(typos.annotate(search_rank=similarity), order, typo=True)
    typo_source = (
        (TYPO_MATCHES_SQL, [text])
        if whole_catalogue
        else typos.values("pk", "rating_count", folded_title=F("folded"))  # as sql.TYPO_COLUMNS_SQL
    )
    # The probe ranks its candidates itself: the page is a slice of its answer, whatever the filters.
    ranked_ids, read = _probe(
        TYPO_PROBE_SQL, {"matches_sql": typo_source}, [SEARCH_CANDIDATES + 1, SEARCH_CANDIDATES, text]
    )
    found = queryset.filter(_id_in(ranked_ids)).annotate(search_rank=similarity)
    return SearchResult(
        found,
        order,
        count=min(read, SEARCH_CANDIDATES),
        count_is_estimate=read > SEARCH_CANDIDATES,
        page_ids=(IDS_IN_ORDER_SQL, [int_array(ranked_ids)]),
    )


def _probe(
    template: str, sources: dict[str, QuerySet[Movie, Any] | tuple[str, list[Any]]], params: list[Any]
) -> tuple[Any, ...]:
    """Run a probe template (movies/sql.py) around its sources' ids; candidate lists come back as lists ([] if none).

    `sources` (`values()` querysets, or SQL with its parameters) fill the template's placeholders in the order
    they appear in it; `params` follow theirs.
    """
    sql: dict[str, str] = {}
    source_params: list[Any] = []
    for name, source in sources.items():
        sql[name], these = source if isinstance(source, tuple) else source.order_by().query.sql_with_params()
        source_params += these
    with connections[Movie.objects.db].cursor() as cursor:
        cursor.execute(template.format(**sql, tsquery=SEARCH_TSQUERY_SQL), [*source_params, *params])
        while cursor.nextset():  # past the SET LOCALs: the probe's row is the last result
            pass
        row = cursor.fetchone()
    assert row is not None
    return tuple([] if value is None else value for value in row)


def _id_in(ids: list[int]) -> RawSQL:
    """`id = ANY(ids)` with the ids as one array parameter (a thousand-value IN list costs milliseconds to build)."""
    return RawSQL(f'"{Movie._meta.db_table}"."id" = ANY(%s::bigint[])', (int_array(ids),), output_field=BooleanField())  # noqa: S611 (a constant column name; the ids are a parameter)


def _id_among(ids: list[int], model: type[Model]) -> RawSQL:
    """`id IN (SELECT unnest(ids))`, the ids one array parameter. Not `= ANY(ids)`: the generic paginator fetches a
    page's rows with `AND id IN (<the page's ids>)`, and PostgreSQL 15 then probes the primary key for every id of
    the larger array, or scans the table (14 ms for a page of people among 1,000 candidates; 2 ms this way)."""
    sql = f'"{model._meta.db_table}"."id" IN (SELECT unnest(%s::bigint[]))'
    return RawSQL(sql, (int_array(ids),), output_field=BooleanField())  # noqa: S611 (a constant column name; the ids are a parameter)


def int_array(ids: list[int]) -> str:
    """Integers as one PostgreSQL array literal, for a `%s::bigint[]` parameter: psycopg dumps a Python list
    element by element in Python (~2 ms for a search's 1,000 candidates), a string in one go."""
    return "{" + ",".join(map(str, ids)) + "}"
