"""Accent-blind search (docs/search.md): `unaccent` in the text search configurations and on the trigram path.

- The `unaccent` extension (a trusted extension since PostgreSQL 13: the database owner may create it).
- `immutable_unaccent(text)`: unaccent() is only STABLE (its rules file could change), so no index may use it.
  The wrapper is unaccent's own C entry point declared IMMUTABLE (0.2 µs a call); creating a C function needs a
  superuser, so without that privilege it is a SQL function calling unaccent() (about 3 µs a call: PostgreSQL
  cannot inline an IMMUTABLE function around a STABLE one). Same name and answers either way.
- Three configurations, each a copy of one in use with the `unaccent` dictionary before its own for the token
  types that can hold accents (ASCII words have none): `movie_title_unaccent` (titles: `movie_title` of 0004),
  `english_unaccent` (overviews: `english`), `simple_unaccent` (names of people and genres).
- `movies_movie.search_vector` rebuilt with them (a generated column's expression cannot be altered: dropped and
  added again, which rewrites the table and rebuilds its indexes), `movie_title_search` rebuilt on the new title
  configuration, and the trigram indexes of titles and names on `immutable_unaccent(...)`.
- People's names get a word index (`person_name_search`) for their search.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import UnaccentExtension
from django.db import migrations, models

# The default parser's token types that can hold non-ASCII letters: words, hyphenated words and their parts (then
# `numword`, letters with digits, which every configuration here maps to `simple`).
ACCENTED_WORDS = "word, hword, hword_part"

CREATE_FUNCTION = """
DO $$
BEGIN
    CREATE FUNCTION immutable_unaccent(text) RETURNS text
        LANGUAGE c IMMUTABLE PARALLEL SAFE STRICT AS '$libdir/unaccent', 'unaccent_dict';
EXCEPTION WHEN insufficient_privilege THEN
    CREATE FUNCTION immutable_unaccent(text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT RETURN unaccent('unaccent'::regdictionary, $1);
END
$$;
"""
CREATE_CONFIGS = f"""
CREATE TEXT SEARCH CONFIGURATION movie_title_unaccent (COPY = movie_title);
ALTER TEXT SEARCH CONFIGURATION movie_title_unaccent ALTER MAPPING FOR {ACCENTED_WORDS} WITH unaccent, simple_stop;
ALTER TEXT SEARCH CONFIGURATION movie_title_unaccent ALTER MAPPING FOR numword WITH unaccent, simple;
CREATE TEXT SEARCH CONFIGURATION english_unaccent (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION english_unaccent ALTER MAPPING FOR {ACCENTED_WORDS} WITH unaccent, english_stem;
ALTER TEXT SEARCH CONFIGURATION english_unaccent ALTER MAPPING FOR numword WITH unaccent, simple;
CREATE TEXT SEARCH CONFIGURATION simple_unaccent (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION simple_unaccent ALTER MAPPING FOR {ACCENTED_WORDS}, numword WITH unaccent, simple;
"""
DROP_CONFIGS = """
DROP TEXT SEARCH CONFIGURATION simple_unaccent;
DROP TEXT SEARCH CONFIGURATION english_unaccent;
DROP TEXT SEARCH CONFIGURATION movie_title_unaccent;
"""
DROP_FUNCTION = "DROP FUNCTION immutable_unaccent(text);"


def unaccented(field: str) -> models.Func:
    return models.Func(models.F(field), function="immutable_unaccent", output_field=models.TextField())


def words_of(field: str, config: str) -> models.Func:
    return models.Func(
        django.contrib.postgres.search.SearchConfig(config),
        models.F(field),
        function="to_tsvector",
        output_field=django.contrib.postgres.search.SearchVectorField(),
    )


def trigrams_of(field: str, name: str) -> django.contrib.postgres.indexes.GinIndex:
    return django.contrib.postgres.indexes.GinIndex(
        django.contrib.postgres.indexes.OpClass(unaccented(field), name="gin_trgm_ops"), name=name
    )


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0007_imdb_id_unique_constraints"),
    ]

    operations = [
        UnaccentExtension(),
        migrations.RunSQL(CREATE_FUNCTION, DROP_FUNCTION),
        migrations.RunSQL(CREATE_CONFIGS, DROP_CONFIGS),
        # Django cannot alter a generated column's expression: drop it (and its index), add it again.
        migrations.RemoveIndex(model_name="movie", name="movie_search"),
        migrations.RemoveField(model_name="movie", name="search_vector"),
        migrations.AddField(
            model_name="movie",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.contrib.postgres.search.CombinedSearchVector(
                    django.contrib.postgres.search.SearchVector("title", config="movie_title_unaccent", weight="A"),
                    "||",
                    django.contrib.postgres.search.SearchVector("overview", config="english_unaccent", weight="B"),
                    django.contrib.postgres.search.SearchConfig("movie_title_unaccent"),
                ),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="movie",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="movie_search"),
        ),
        migrations.RemoveIndex(model_name="movie", name="movie_title_search"),
        migrations.AddIndex(
            model_name="movie",
            index=django.contrib.postgres.indexes.GinIndex(
                words_of("title", "movie_title_unaccent"), name="movie_title_search"
            ),
        ),
        migrations.RemoveIndex(model_name="movie", name="movie_title_trgm"),
        migrations.AddIndex(model_name="movie", index=trigrams_of("title", "movie_title_trgm")),
        migrations.RemoveIndex(model_name="person", name="person_name_trgm"),
        migrations.AddIndex(model_name="person", index=trigrams_of("name", "person_name_trgm")),
        migrations.AddIndex(
            model_name="person",
            index=django.contrib.postgres.indexes.GinIndex(
                words_of("name", "simple_unaccent"), name="person_name_search"
            ),
        ),
    ]
