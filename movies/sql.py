"""SQL fragments of a movie's representation, shared by `selectors.movie_queryset` and the bench baseline.

No Django imports: bench/baseline_app.py sends the very same SQL without Django.
"""

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, get_type_hints

# Everything a movie's representation shows beyond its own columns, as correlated subqueries, so a page of any
# size is one SQL statement. JSON is built by PostgreSQL and handed over as text (orjson parses it fastest).
GENRES_SQL = """ARRAY(
    SELECT g.slug FROM movies_movie_genres mg JOIN movies_genre g ON g.id = mg.genre_id
    WHERE mg.movie_id = movies_movie.id ORDER BY g.slug)"""
DIRECTORS_SQL = """(
    SELECT coalesce(json_agg(json_build_object('id', p.id, 'name', p.name) ORDER BY p.name, p.id), '[]')::text
    FROM movies_movie_directors md JOIN movies_person p ON p.id = md.person_id
    WHERE md.movie_id = movies_movie.id)"""
CAST_SQL = """(
    SELECT coalesce(json_agg(json_build_object(
        'person', json_build_object('id', p.id, 'name', p.name), 'character', c.character, 'order', c."order"
    ) ORDER BY c."order"), '[]')::text
    FROM movies_cast c JOIN movies_person p ON p.id = c.person_id
    WHERE c.movie_id = movies_movie.id)"""

# Search is blind to case and accents (docs/search.md): each text search configuration below runs the `unaccent`
# dictionary before its own (`Léon` is indexed and looked up as `leon`), and the trigram side compares
# `immutable_unaccent(...)` of both texts, the expression the trigram indexes are built on (migration 0008).
# Titles (weight A) and the query's title side: `simple` (any script, words as written) minus the English stop
# words (migration 0004_search_stop_words), unaccented.
TITLE_SEARCH_CONFIG = "movie_title_unaccent"
# Overviews (weight B) and the query's overview side: `english` (stemmed, English stop words), unaccented.
OVERVIEW_SEARCH_CONFIG = "english_unaccent"
# Names of people and genres: `simple`, unaccented (no stop words: "Will" and "Don" are first names).
NAME_SEARCH_CONFIG = "simple_unaccent"
# unaccent() is only STABLE (its rules file could change), so no index may use it; this wrapper is IMMUTABLE.
UNACCENT_FUNCTION = "immutable_unaccent"
# A movie's title and the query text (a parameter), unaccented, as the trigram index `movie_title_trgm` and the
# ranking compare them.
FOLDED_TITLE_SQL = f"{UNACCENT_FUNCTION}(movies_movie.title)"
FOLDED_QUERY_SQL = f"{UNACCENT_FUNCTION}(%s)"
# A search ranked by relevance ranks at most this many matches: its title matches first, then others (docs/search.md).
SEARCH_CANDIDATES = 1000
# The search query: the title side without stop words (`the matrix` is `matrix`), the overview side stemmed.
SEARCH_TSQUERY_SQL = (
    f"(websearch_to_tsquery('{TITLE_SEARCH_CONFIG}'::regconfig, %s) "
    f"|| websearch_to_tsquery('{OVERVIEW_SEARCH_CONFIG}'::regconfig, %s))"
)
# A match by its title words alone (then the query text twice): the expression of the GIN index
# `movie_title_search` (migration 0005), written exactly as indexed so that the planner uses it.
TITLE_MATCH_SQL = f"to_tsvector('{TITLE_SEARCH_CONFIG}'::regconfig, movies_movie.title) @@ {SEARCH_TSQUERY_SQL}"
# The search probe, around the SQL of the title matches (`title_matches_sql`: the ids as `pk` and the search_vector
# of the movies whose TITLE_MATCH_SQL holds) and of all the matches (`matches_sql`: their ids as `pk`), with their
# parameters, then the query text twice, the candidate limit, the query text twice and the limit again. It returns
# (whether the query has a word the index can look up, the ids of up to SEARCH_CANDIDATES + 1 candidates or NULL).
# Candidates are the title matches first, then other matches up to the limit, so every title match is ranked
# whenever there are at most SEARCH_CANDIDATES of them, however many overviews also match (`detective`).
# A title match must match the whole query too (`crimson -sky` with "sky" in the overview does not): that
# is checked on the rows read, outside the title CTE, or PostgreSQL ANDs both GIN bitmaps and builds the whole
# query's (93k rows for `detective`) for nothing. The CTEs are MATERIALIZED so that each is planned for all its
# rows (a bitmap scan of a GIN index) but read only up to the limit; with a plain LIMIT, PostgreSQL expects ~1,000
# matches for words it has no statistics on and sequential-scans for the first ones (0.3-0.5 s when there are
# none). A query of stop words only, or of negations only (`-matrix`, which the index cannot serve: it would read
# all of it), is not looked up at all. Which matches come first must not change between two requests (pages would
# repeat or skip): a parallel scan returns them in the order its workers find them, so the probe runs without
# (SET LOCAL lasts until the end of this statement's implicit transaction; read the second result set).
SEARCH_PROBE_SQL = """SET LOCAL max_parallel_workers_per_gather = 0;
WITH title_matches AS MATERIALIZED ({title_matches_sql}),
matches AS MATERIALIZED ({matches_sql}),
titles AS MATERIALIZED (SELECT pk FROM title_matches WHERE search_vector @@ {tsquery} LIMIT %s),
searchable AS (SELECT querytree({tsquery}) NOT IN ('', 'T') AS ok)
SELECT ok, CASE WHEN ok THEN ARRAY(SELECT pk FROM titles) || ARRAY(
    SELECT pk FROM matches WHERE pk NOT IN (SELECT pk FROM titles) LIMIT %s - (SELECT count(*) FROM titles)
) END FROM searchable"""
# Fast path: constant search probes.
# Replaces: the search probes' source querysets, built and compiled by the ORM on every whole-catalogue search.
# Why: a two-word search ~5,100 -> ~4,000 Python calls (bf96aa6).
# Equal: movies/tests/test_discovery.py::test_search_over_the_whole_catalogue_answers_as_the_orm_path
# Off: set whole_catalogue = False in movies.search.search_movies.
# The probes' sources when the search covers the whole catalogue (no other filter), as the ORM writes them for the
# unfiltered queryset: written once here instead of built and compiled on every search. Parameters: the query text
# twice for each of the first two, once for the third.
SEARCH_TITLE_MATCHES_SQL = (
    "SELECT movies_movie.id AS pk, movies_movie.search_vector AS search_vector "  # noqa: S608 (constant)
    f"FROM movies_movie WHERE {TITLE_MATCH_SQL}"
)
SEARCH_MATCHES_SQL = (
    "SELECT movies_movie.id AS pk FROM movies_movie "  # noqa: S608 (constant)
    f"WHERE movies_movie.search_vector @@ {SEARCH_TSQUERY_SQL}"
)
# A typo match (then the query text): the title's trigrams are near those of a part of the query, accents aside:
# the expression of the GIN index `movie_title_trgm`, written as indexed.
TYPO_MATCH_SQL = f"{FOLDED_TITLE_SQL} %%> {FOLDED_QUERY_SQL}"
# What the typo probe reads of each match: the unaccented title it ranks by (computed once, with the row).
TYPO_COLUMNS_SQL = f"movies_movie.id AS pk, {FOLDED_TITLE_SQL} AS folded_title, movies_movie.rating_count"
TYPO_MATCHES_SQL = f"SELECT {TYPO_COLUMNS_SQL} FROM movies_movie WHERE {TYPO_MATCH_SQL}"  # noqa: S608 (constant)
# The typo probe: the first SEARCH_CANDIDATES trigram matches ranked (word similarity to the query, then number of
# ratings, then id), and how many matches it read (up to SEARCH_CANDIDATES + 1: more means there are more). Its
# source (`matches_sql`) gives `pk`, `folded_title` and `rating_count` (TYPO_COLUMNS_SQL); then its parameters, the
# read limit, SEARCH_CANDIDATES and the query text. Ranked here, on the rows the probe has read anyway: ranking them
# in a second statement read the same 1,000 rows again by id (~5 ms of a ~20 ms typo search). Same MATERIALIZED
# reason as above.
# Only the trigram GIN index can find them; but pg_trgm overestimates how many titles match a short word (19,087
# for `matrx`, from the sampled statistics), and once VACUUM has marked the table all-visible the planner then
# prefers reading the whole (title, id) btree index-only and filtering every title, stopping at the limit: 165 ms
# instead of 31 ms, for the API and the baseline alike, depending on the last ANALYZE. Plain and index-only scans
# are switched off for this one statement (bitmap scans, the GIN's and any filter's, stay on).
TYPO_PROBE_SQL = f"""SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_indexonlyscan = off;
WITH matches AS MATERIALIZED ({{matches_sql}}), firsts AS (SELECT * FROM matches LIMIT %s)
SELECT ARRAY(
    SELECT pk FROM (SELECT * FROM firsts LIMIT %s) ranked
    ORDER BY word_similarity({FOLDED_QUERY_SQL}, folded_title) DESC, rating_count DESC, pk ASC
), (SELECT count(*) FROM firsts)"""  # noqa: S608 (constant fragments)

# A ranked search's ids among its candidates, best first, when it covers the whole catalogue: what the ORM compiles
# for `search_movies`' ranking, written once (parameters: the candidate ids, then the query text four times).
# Unlimited here: `selectors.movie_page` adds the page's LIMIT and OFFSET.
# The rank of a full-text match (parameters: the query text four times): ts_rank (title words weigh more than
# overview words) + how near the title's trigrams are to the query's words and to the whole query, accents aside.
SEARCH_RANK_SQL = (
    f"ts_rank(movies_movie.search_vector, {SEARCH_TSQUERY_SQL}) "
    f"+ word_similarity({FOLDED_QUERY_SQL}, {FOLDED_TITLE_SQL}) + similarity({FOLDED_TITLE_SQL}, {FOLDED_QUERY_SQL})"
)
# Fast path: constant search ranking.
# Replaces: the ORM compiling search_movies' ranking queryset, then a separate rows statement.
# Why: a search's worker CPU in process 4.1-6.0 -> 3.4-5.2 ms (a783f10).
# Equal: movies/tests/test_discovery.py::test_a_ranked_search_pages_by_constant_sql_in_the_orm_order
# Off: pass page_ids=None in movies.search.search_movies.
SEARCH_RANKED_IDS_SQL = (
    "SELECT movies_movie.id FROM movies_movie WHERE movies_movie.id = ANY(%s::bigint[]) ORDER BY "  # noqa: S608 (constant)
    f"{SEARCH_RANK_SQL} DESC, movies_movie.id ASC"
)
# Ids already in their order (a typo search's, ranked by its probe); parameter: the ids.
IDS_IN_ORDER_SQL = "SELECT c.id FROM unnest(%s::bigint[]) WITH ORDINALITY AS c(id, n) ORDER BY c.n"


class MovieRow(NamedTuple):
    """A movie's representation as one row: each field's SQL expression (the `Annotated` metadata) is what
    MOVIE_COLUMNS selects, in this order and under this name. Read it by name (`row.version`); the statements that
    select MOVIE_COLUMNS are read with `movie_row`. `representation.movie_representation` turns it into JSON."""

    id: Annotated[int, "movies_movie.id"]
    title: Annotated[str, "movies_movie.title"]
    year: Annotated[int, "movies_movie.year"]
    runtime: Annotated[int | None, "movies_movie.runtime"]
    overview: Annotated[str, "movies_movie.overview"]
    imdb_id: Annotated[str | None, "movies_movie.imdb_id"]
    genres: Annotated[list[str], GENRES_SQL]
    # JSON text from PostgreSQL, or (a bare Movie's, `serializers.MovieSerializer`) the lists themselves.
    directors: Annotated[str | list[dict[str, Any]], DIRECTORS_SQL]
    cast: Annotated[str | list[dict[str, Any]], CAST_SQL]
    rating_average: Annotated[Decimal | None, "movies_movie.rating_average"]
    rating_count: Annotated[int, "movies_movie.rating_count"]
    version: Annotated[int, "movies_movie.version"]
    created_at: Annotated[datetime, "movies_movie.created_at"]
    updated_at: Annotated[datetime, "movies_movie.updated_at"]


# MovieRow's fields and their SQL, in order.
MOVIE_COLUMN_SQL: dict[str, str] = {
    name: hint.__metadata__[0] for name, hint in get_type_hints(MovieRow, include_extras=True).items()
}
# The SELECT list of a MovieRow, each expression named as its field.
MOVIE_COLUMNS = ", ".join(f'{sql} AS "{name}"' for name, sql in MOVIE_COLUMN_SQL.items())
# The columns MovieRow reads from the movie's own row (the rest come from its relations): what a write of the row
# returns for `represented_update_sql`.
MOVIE_OWN_COLUMNS = ", ".join(
    sql.removeprefix("movies_movie.") for sql in MOVIE_COLUMN_SQL.values() if re.fullmatch(r"movies_movie\.\w+", sql)
)


def movie_row(cursor: object) -> Callable[[Sequence[Any]], MovieRow]:
    """psycopg's row factory for statements that select MOVIE_COLUMNS: each row a MovieRow.

    `MovieRow._make` per row, the cheapest way there (measured per row: ~0.14 us; `class_row(MovieRow)` ~1 us, which
    builds a dict of keyword arguments; `namedtuple_row` looks the column names up again on every statement)."""
    return MovieRow._make


# The same text every time, so each is parsed and planned once per connection (a server-side prepared statement):
# one movie by id, and a page of movies by their ids in the page's order.
MOVIE_BY_ID_SQL = f"SELECT {MOVIE_COLUMNS} FROM movies_movie WHERE movies_movie.id = %s"  # noqa: S608 (constant)
MOVIES_BY_IDS_SQL = (
    f"SELECT {MOVIE_COLUMNS} FROM unnest(%s::bigint[]) WITH ORDINALITY AS page(id, n) "  # noqa: S608 (constant)
    "JOIN movies_movie ON movies_movie.id = page.id ORDER BY page.n"
)


def movies_by_id_query_sql(ids_sql: str) -> str:
    """A page of movies by a query of their ids (ordered and limited), in that order, as one statement."""
    return (
        f"SELECT {MOVIE_COLUMNS} FROM unnest(ARRAY({ids_sql})) WITH ORDINALITY AS page(id, n) "  # noqa: S608 (SQL the ORM compiled)
        "JOIN movies_movie ON movies_movie.id = page.id ORDER BY page.n"
    )


MOVIE_VERSION_SQL = "SELECT version FROM movies_movie WHERE id = %s"


def represented_update_sql(update_sql: str) -> str:
    """An UPDATE of one movie row that answers with the movie's representation row (a MovieRow) as it is after
    the update, or no row if it changed nothing. The relations are read as they are when the statement starts."""
    return (
        f"WITH updated AS ({update_sql} RETURNING {MOVIE_OWN_COLUMNS}) "  # noqa: S608 (SQL from model metadata)
        f"SELECT {MOVIE_COLUMNS} FROM updated AS movies_movie"
    )


GENRE_IDS_SQL = "SELECT slug, id FROM movies_genre WHERE slug = ANY(%s)"


# ---- the change feed (movies/changes.py, movies/feed.py; docs/change-feed.md) ---------------------------------

# The oldest transaction still in flight, cluster-wide (every transaction below it has ended): the feed serves only
# entries written below it, so nothing can still appear behind a cursor. As a bigint, like `movieversion.xid`
# (`pg_current_xact_id()::text::bigint`).
FEED_XMIN_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


class FeedEntry(NamedTuple):
    """One history entry as the feed serves it, with its feed position (xid, id)."""

    movie_id: int
    version: int
    kind: str
    at: datetime
    xid: int
    id: int


# A page of the feed in one statement, one range scan of the (xid, id) index: the entries after the cursor (xid, id)
# written by transactions below the snapshot's xmin, in (xid, id) order, up to the limit. Each row also says whether
# the purge horizon (models.FeedHorizon) lies beyond the cursor (then no entry is read: the answer is 410) and the
# xmin; an empty page is one row of those two with NULL entry columns. Parameters: the cursor's xid and id twice,
# then the limit.
FEED_PAGE_SQL = f"""WITH s AS (
    SELECT EXISTS (SELECT FROM movies_feedhorizon h WHERE (h.xid, h.entry_id) > (%s, %s)) AS gone,
           {FEED_XMIN_SQL} AS xmin
)
SELECT s.gone, s.xmin, e.movie_id, e.version, e.kind, e.at, e.xid, e.id
FROM s LEFT JOIN LATERAL (
    SELECT v.movie_id, v.version, v.kind, v.at, v.xid, v.id FROM movies_movieversion v
    WHERE NOT s.gone AND (v.xid, v.id) > (%s, %s) AND v.xid < s.xmin
    ORDER BY v.xid, v.id LIMIT %s
) AS e(movie_id, version, kind, at, xid, id) ON true
ORDER BY e.xid, e.id"""  # noqa: S608 (constant)
# The position of "now": everything below the snapshot's xmin has been written (parameter: none).
FEED_NOW_SQL = f"SELECT {FEED_XMIN_SQL}"
