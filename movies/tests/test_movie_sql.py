"""The raw SQL of movies/sql.py and movies/write_sql.py names the models' own tables and columns, and the movie row
reads as MovieRow.

Both modules are written without Django (bench/baseline_app.py sends the read path's SQL too), so nothing ties their
table and column names to the models but this: a model's renamed table or column fails here, not in production.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps

from movieapi.postgres.prepared import prepared_cursor
from movies import selectors, services, sql, write_sql
from movies.models import Movie

# What may qualify a column besides a table: an alias of one (FROM movies_genre g), or a relation the statement
# makes with its own column names (unnest(...) WITH ORDINALITY AS page(id, n)).
_ALIAS = re.compile(r"\b(?:FROM|JOIN)\s+(movies_\w+)\s+(?:AS\s+)?(?!(?:ON|WHERE|JOIN|ORDER|LIMIT)\b)(\w+)")
_MADE_RELATION = re.compile(r"\bAS (\w+)\(")
# A common table expression: a relation the statement makes too (WITH gone AS (DELETE ...), per_movie AS (...)).
_CTE = re.compile(r"\b(\w+) AS (?:MATERIALIZED )?\(")
_INSERT = re.compile(r"\bINSERT INTO (movies_\w+) \(([\w, ]+)\)")
_QUALIFIED = re.compile(r'\b([A-Za-z_]\w*)\.(?:"(\w+)"|(\w+))')
_SIMPLE_SELECT = re.compile(r"SELECT ([\w, ]+) FROM (movies_\w+) WHERE (\w+) = ")


def model_tables() -> dict[str, set[str]]:
    """Each table of the movies app, the many-to-many ones Django makes included, with its columns."""
    return {
        model._meta.db_table: {field.column for field in model._meta.concrete_fields}
        for model in apps.get_app_config("movies").get_models(include_auto_created=True)
    }


def movie_sql() -> dict[str, str]:
    """Every SQL text of movies/sql.py, the functions' with a stand-in argument."""
    texts = {name: value for name, value in vars(sql).items() if name.isupper() and isinstance(value, str)}
    texts["movies_by_id_query_sql"] = sql.movies_by_id_query_sql("SELECT 1")
    texts["represented_update_sql"] = sql.represented_update_sql("UPDATE movies_movie SET id = id")
    texts |= {f"write_sql.{name}": value for name, value in vars(write_sql).items() if name.endswith("_SQL")}
    # The versioned writes services build with versioned_update_sql: one movie's and an import batch's.
    texts["services._conditional_update_sql"] = services._conditional_update_sql(("runtime", "title"), ("title",))
    texts["services._import_update_sql"] = services._import_update_sql()
    return texts


def unknown_names(text: str, tables: dict[str, set[str]]) -> list[str]:
    """The tables and `table.column` / `alias.column` references of the text that the models do not have (string
    literals are not names: `set_config('movieapi.actor', …)`)."""
    text = re.sub(r"'[^']*'", "''", text)
    unknown = [table for table in re.findall(r"\bmovies_\w+", text) if table not in tables]
    aliases = {alias: table for table, alias in _ALIAS.findall(text)}
    made = set(_MADE_RELATION.findall(text)) | set(_CTE.findall(text))
    for qualifier, quoted, plain in _QUALIFIED.findall(text):
        table = aliases.get(qualifier, qualifier)
        if table in made:
            continue
        if (quoted or plain) not in tables.get(table, ()):
            unknown.append(f"{qualifier}.{quoted or plain}")
    for columns, table, key in _SIMPLE_SELECT.findall(text):
        names = [name.strip() for name in columns.split(",")] + [key]
        unknown += [f"{table}.{name}" for name in names if name not in tables.get(table, ())]
    for table, columns in _INSERT.findall(text):
        names = [name.strip() for name in columns.split(",")]
        unknown += [f"{table}.{name}" for name in names if name not in tables.get(table, ())]
    return unknown


@pytest.mark.parametrize(("name", "text"), movie_sql().items(), ids=list(movie_sql()))
def test_the_sql_names_only_the_models_tables_and_columns(name: str, text: str) -> None:
    assert unknown_names(text, model_tables()) == []


def test_the_row_a_write_returns_is_the_movies_own_columns() -> None:
    own = [column.strip() for column in sql.MOVIE_OWN_COLUMNS.split(",")]
    assert own
    assert set(own) <= model_tables()[Movie._meta.db_table]


@pytest.mark.parametrize(
    ("table", "column", "reported"),
    [
        ("movies_movie", "title", "movies_movie.title"),
        ("movies_genre", "slug", "g.slug"),
        ("movies_cast", "order", "c.order"),
        ("movies_movie", "version", "movies_movie.version"),
    ],
)
def test_a_renamed_column_is_caught(table: str, column: str, reported: str) -> None:
    tables = model_tables()
    tables[table].discard(column)
    assert reported in unknown_names(sql.MOVIE_BY_ID_SQL + sql.MOVIE_VERSION_SQL, tables)


def test_a_renamed_column_is_caught_in_the_writes() -> None:
    tables = model_tables()
    tables["movies_movie"].discard("rating_sum")
    tables["movies_movie"].discard("imdb_id")
    unknown = unknown_names(write_sql.RATINGS_DELETE_FOR_USER_SQL + write_sql.IMPORT_INSERT_SQL, tables)
    assert unknown == ["movies_movie.rating_sum", "movies_movie.imdb_id", "movies_movie.rating_sum"]


def test_a_renamed_table_is_caught() -> None:
    tables = model_tables()
    del tables["movies_movie_directors"]
    assert "movies_movie_directors" in unknown_names(sql.MOVIE_COLUMNS, tables)


@pytest.mark.django_db
def test_the_movie_statements_answer_columns_named_as_movierow() -> None:
    with prepared_cursor() as cursor:
        cursor.execute(sql.MOVIE_BY_ID_SQL, [0])
        assert tuple(column.name for column in cursor.description) == sql.MovieRow._fields
    # Every field but the relations' is the Movie field of that name.
    own = {field.name for field in Movie._meta.concrete_fields}
    assert set(sql.MovieRow._fields) - own == {"genres", "directors", "cast"}
    assert selectors.movie_detail(movie_id=0) is None
