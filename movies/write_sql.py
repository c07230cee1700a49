"""The SQL of the catalogue's writes, which `services` sends: the versioned UPDATE of one movie or of an import's
batch, an import's INSERT of new movies, and the removal of a user's ratings from their movies' aggregates.

No Django imports, like movies/sql.py (the read path's): `services` names the columns from the models, and
movies/tests/test_movie_sql.py pins every table and column named here to them.
"""

from collections.abc import Sequence

from movies.history_sql import ACTOR_CONDITION_SQL

MOVIE_TABLE = "movies_movie"
# The time a versioned write records in `updated_at`.
WRITE_TIME_SQL = "statement_timestamp()"


def quoted(name: str) -> str:
    """An identifier quoted as PostgreSQL (and Django's `quote_name`) quotes it."""
    return f'"{name}"'


def versioned_update_sql(
    values: Sequence[tuple[str, str]],
    *,
    field_sources: str | None,
    bump: str | None = None,
    rows: str = "",
    actor: bool = False,
) -> str:
    """`UPDATE movies_movie SET <values>, field_sources, version + 1, updated_at WHERE id AND version`: the text of
    every versioned write, of one movie or of an import's batch, so that the rules of its SET clause live here once.

    values pairs each column with the SQL of its new value; field_sources is the SQL of the new provenance (None: left
    as it is). One movie (rows empty): the parameters are the values', then the id and the expected version, and the
    version goes up; with actor, one more parameter, the writer as JSON, which the statement itself sets for its
    transaction (the history's triggers read it at the commit: docs/history.md). A batch: rows is a FROM item `v` with
    the columns `id` and `expected_version`, and bump the SQL of each row's 1 or 0 (0: the row records provenance
    only, so neither the version nor updated_at moves).
    """
    table = quoted(MOVIE_TABLE)
    sets = [f"{quoted(column)} = {value}" for column, value in values]
    if field_sources is not None:
        sets.append(f"field_sources = {field_sources}")
    if bump is None:
        sets += ["version = version + 1", f"updated_at = {WRITE_TIME_SQL}"]
    else:
        sets += [
            f"version = version + {bump}",
            f"updated_at = CASE WHEN {bump} = 1 THEN {WRITE_TIME_SQL} ELSE updated_at END",
        ]
    if not rows:
        named = f" AND {ACTOR_CONDITION_SQL}" if actor else ""
        return f"UPDATE {table} SET {', '.join(sets)} WHERE id = %s AND version = %s{named}"  # noqa: S608 (column names only)
    return (
        f"UPDATE {table} SET {', '.join(sets)} FROM {rows}"  # noqa: S608 (column names and the caller's constant SQL)
        f" WHERE {table}.id = v.id AND {table}.version = v.expected_version"
    )


# An import's new movies at version 1, from arrays (binary parameters: titles, years, runtimes, overviews, IMDb ids,
# provenance as JSON text), their ids returned in the arrays' order.
IMPORT_INSERT_SQL = (
    "INSERT INTO movies_movie (title, year, runtime, overview, imdb_id, field_sources, version,"
    " rating_count, rating_sum, created_at, updated_at)"
    " SELECT t, y, r, o, i, s::jsonb, 1, 0, 0, now(), now()"
    " FROM unnest(%b::text[], %b::int[], %b::int[], %b::text[], %b::text[], %b::text[])"
    " WITH ORDINALITY AS v(t, y, r, o, i, s, n) ORDER BY n RETURNING id"
)

# Delete a user's ratings (parameter: the user id) and subtract from each movie's aggregate exactly what went.
RATINGS_DELETE_FOR_USER_SQL = """
WITH gone AS (DELETE FROM movies_rating WHERE user_id = %s RETURNING movie_id, score),
     per_movie AS (SELECT movie_id, count(*) AS n, sum(score) AS total FROM gone GROUP BY movie_id)
UPDATE movies_movie
   SET rating_count = movies_movie.rating_count - per_movie.n,
       rating_sum = movies_movie.rating_sum - per_movie.total
  FROM per_movie
 WHERE movies_movie.id = per_movie.movie_id
"""
