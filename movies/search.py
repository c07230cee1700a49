"""Search: movies by full text, else by title trigrams (typos); people and genres by the words of their name, else
by trigrams. The probes' and ranking's SQL is in movies/sql.py; docs/search.md says why each step is shaped so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramSimilarity, TrigramWordSimilarity
from django.db import connections
from django.db.models import BooleanField, F, Model, OrderBy, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat, Length, Lower

from movieapi.pagination import ListPlan
from movies import selectors
from movies.models import Genre, Movie, Person, unaccented, words_of
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
