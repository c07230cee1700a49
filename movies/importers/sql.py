"""The importers' raw SQL beside the versioned write (services.movie_import_batch), and the cursor it is sent on."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def raw_cursor() -> psycopg.Cursor[Any]:
    """A server-side-binding psycopg cursor on Django's connection (inside Django's transactions)."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


# The matched movie's row as locked: these columns, in this order.
MATCHED_MOVIE_COLUMNS = "id, version, title, year, runtime, overview, imdb_id, field_sources"
# A movie's directors as match keys: their nm ids and their normalised names.
DIRECTOR_KEYS_SQL = (
    "ARRAY(SELECT unnest(ARRAY[p.imdb_id, movies_match_key(p.name)]) FROM movies_movie_directors d"
    " JOIN movies_person p ON p.id = d.person_id WHERE d.movie_id = m.id)"
)


# ---- IMDb: the side files, staged in temporary tables of each writer's session (ImdbSource) ----------

STAGING_TABLES_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS imp_directors (tconst text, ord int, nconst text);"
    "CREATE TEMP TABLE IF NOT EXISTS imp_cast (tconst text, ord int, nconst text, character text);"
    "CREATE TEMP TABLE IF NOT EXISTS imp_names (nconst text, name text);"
    # A batch's credits whose person is not in the catalogue yet, written last (see write_credits).
    "CREATE TEMP TABLE IF NOT EXISTS imp_new_people (nconst text, name text);"
    "CREATE TEMP TABLE IF NOT EXISTS imp_new_directors (movie_id bigint, nconst text);"
    "CREATE TEMP TABLE IF NOT EXISTS imp_new_cast (movie_id bigint, nconst text, character text, ord int);"
    "TRUNCATE imp_directors, imp_cast, imp_names, imp_new_people, imp_new_directors, imp_new_cast"
)
DROP_STAGING_SQL = (
    "DROP TABLE IF EXISTS imp_directors, imp_cast, imp_names, imp_new_people, imp_new_directors, imp_new_cast"
)

# A person's name: name.basics, else the catalogue's; a credit for a nameless person is dropped.
STAGED_NAME_SQL = (
    "coalesce((SELECT n.name FROM imp_names n WHERE n.nconst = c.nconst ORDER BY n.name LIMIT 1),"
    " (SELECT p.name FROM movies_person p WHERE p.imdb_id = c.nconst))"
)


def staged_credits_sql(*, link: bool) -> str:
    """The first statement of ImdbSource.write_credits (link: a person without an nm id may learn it)."""
    # Each lookup is a LATERAL subquery (with a LIMIT where it could otherwise be flattened into a join), so
    # an index probe per movie and per person: the planner would otherwise hash whole tables, which would make
    # each batch cost as much as the file or the catalogue.
    return (
        "WITH credit AS MATERIALIZED ("  # noqa: S608 (constant SQL, one of two texts)
        "  SELECT b.movie_id, c.director, c.ord, c.nconst, c.character"
        "  FROM unnest(%(ids)b::bigint[], %(tconsts)b::text[]) AS b(movie_id, tconst) CROSS JOIN LATERAL ("
        "   SELECT true AS director, ord, nconst, NULL AS character FROM imp_directors WHERE tconst = b.tconst"
        "   UNION ALL SELECT false, ord, nconst, character FROM imp_cast WHERE tconst = b.tconst) AS c),"
        # Each person once: the catalogue's id and name, and the name name.basics gives.
        # A person not in the catalogue by nm id is the one person without an id whose normalised name is the
        # same, when there is exactly one (and link: only one writer, so no two batches link the same person).
        " person AS MATERIALIZED ("
        "  SELECT c.nconst, coalesce(p.id, l.id) AS id, p.id IS NULL AND l.id IS NOT NULL AS linked,"
        "   coalesce(p.name, l.name) AS current, n.name AS staged"
        "  FROM (SELECT DISTINCT nconst FROM credit) AS c"
        "  LEFT JOIN LATERAL (SELECT id, name FROM movies_person WHERE imdb_id = c.nconst LIMIT 1) AS p ON true"
        "  LEFT JOIN LATERAL ("
        "   SELECT name FROM imp_names WHERE nconst = c.nconst ORDER BY name LIMIT 1) AS n ON true"
        + (
            "  LEFT JOIN LATERAL (SELECT min(x.id) AS id, min(x.name) AS name FROM ("
            "   SELECT id, name FROM movies_person WHERE p.id IS NULL"
            "   AND movies_match_key(name) = movies_match_key(n.name) AND imdb_id IS NULL LIMIT 2) AS x"
            "   HAVING count(*) = 1) AS l ON true),"
            if link
            else "  CROSS JOIN (SELECT NULL::bigint AS id, NULL::text AS name) AS l),"
        )
        +
        # An existing person is renamed only where name.basics differs, and given the nm id when linked (the row
        # is locked until the commit; the foreign key checks of other transactions' credits take a lock that
        # does not conflict with it).
        " renamed AS (UPDATE movies_person AS p"
        "  SET name = coalesce(r.staged, p.name), imdb_id = CASE WHEN r.linked THEN r.nconst ELSE p.imdb_id END,"
        "  updated_at = now()"
        "  FROM person AS r WHERE p.id = r.id AND (r.linked OR r.staged <> r.current)),"
        # A credit is kept when its person is in the catalogue or named by name.basics; else it is dropped.
        " kept AS MATERIALIZED ("
        "  SELECT c.movie_id, c.director, c.ord, c.nconst, c.character, r.id AS person_id, r.staged"
        "  FROM credit AS c JOIN person AS r USING (nconst) WHERE r.id IS NOT NULL OR r.staged IS NOT NULL),"
        " directors AS MATERIALIZED ("
        "  SELECT movie_id, nconst, person_id, staged FROM ("
        "   SELECT movie_id, nconst, person_id, staged,"
        "    row_number() OVER (PARTITION BY movie_id ORDER BY min(ord), nconst) AS rank"
        "   FROM kept WHERE director GROUP BY movie_id, nconst, person_id, staged) AS d"
        "  WHERE rank <= %(max_directors)s),"
        " casting AS MATERIALIZED ("
        '  SELECT movie_id, nconst, person_id, staged, character, rank - 1 AS "order" FROM ('
        "   SELECT movie_id, nconst, person_id, staged, character,"
        "    row_number() OVER (PARTITION BY movie_id ORDER BY ord) AS rank"
        "   FROM kept WHERE NOT director) AS c"
        "  WHERE rank <= %(max_cast)s),"
        " directors_now AS (INSERT INTO movies_movie_directors (movie_id, person_id)"
        "  SELECT movie_id, person_id FROM directors WHERE person_id IS NOT NULL),"
        ' cast_now AS (INSERT INTO movies_cast (movie_id, person_id, "character", "order")'
        '  SELECT movie_id, person_id, character, "order" FROM casting WHERE person_id IS NOT NULL),'
        " directors_later AS (INSERT INTO imp_new_directors (movie_id, nconst)"
        "  SELECT movie_id, nconst FROM directors WHERE person_id IS NULL),"
        " cast_later AS (INSERT INTO imp_new_cast (movie_id, nconst, character, ord)"
        '  SELECT movie_id, nconst, character, "order" FROM casting WHERE person_id IS NULL)'
        " INSERT INTO imp_new_people (nconst, name)"
        "  SELECT nconst, staged FROM directors WHERE person_id IS NULL"
        "  UNION SELECT nconst, staged FROM casting WHERE person_id IS NULL"
    )


# In nconst order, so that concurrent importers wait for each other in the same order (no deadlock).
# ON CONFLICT: another transaction may have created some since the first statement (or be creating
# them: this waits for it to end).
NEW_PEOPLE_SQL = (
    "WITH s AS (DELETE FROM imp_new_people RETURNING nconst, name)"
    " INSERT INTO movies_person (name, imdb_id, created_at, updated_at)"
    "  SELECT name, nconst, now(), now() FROM s ORDER BY nconst ON CONFLICT (imdb_id) DO NOTHING;"
    "WITH s AS (DELETE FROM imp_new_directors RETURNING movie_id, nconst)"
    " INSERT INTO movies_movie_directors (movie_id, person_id)"
    "  SELECT s.movie_id, p.id FROM s"
    "  CROSS JOIN LATERAL (SELECT id FROM movies_person WHERE imdb_id = s.nconst LIMIT 1) AS p;"
    "WITH s AS (DELETE FROM imp_new_cast RETURNING movie_id, nconst, character, ord)"
    ' INSERT INTO movies_cast (movie_id, person_id, "character", "order")'
    "  SELECT s.movie_id, p.id, s.character, s.ord FROM s"
    "  CROSS JOIN LATERAL (SELECT id FROM movies_person WHERE imdb_id = s.nconst LIMIT 1) AS p"
)
