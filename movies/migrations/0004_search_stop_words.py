"""Search without English stop words in titles (docs/search.md): a title config, the rebuilt vector, a title index.

`the` was in a third of the generated titles, so a search for it ranked ~376,000 matches (1.1 s). Titles keep
the `simple` parser and lowercasing (any language, any script), minus the English stop words; a search made only
of stop words ("Her", "It") looks for that exact title through `movie_title_lower`.
Changing a generated column's expression drops and re-adds it, which rewrites the table and rebuilds its indexes
(measured on 1,000,000 movies: see docs/search.md).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.functions.text
from django.db import migrations, models

CREATE_CONFIG = """
CREATE TEXT SEARCH DICTIONARY simple_stop (TEMPLATE = pg_catalog.simple, STOPWORDS = english);
CREATE TEXT SEARCH CONFIGURATION movie_title (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION movie_title
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH simple_stop;
"""
DROP_CONFIG = """
DROP TEXT SEARCH CONFIGURATION movie_title;
DROP TEXT SEARCH DICTIONARY simple_stop;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0003_discovery_indexes"),
    ]

    operations = [
        migrations.RunSQL(CREATE_CONFIG, DROP_CONFIG),
        # Django cannot alter a generated column's expression: drop it (and its index), add it again.
        migrations.RemoveIndex(model_name="movie", name="movie_search"),
        migrations.RemoveField(model_name="movie", name="search_vector"),
        migrations.AddField(
            model_name="movie",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.contrib.postgres.search.CombinedSearchVector(
                    django.contrib.postgres.search.SearchVector("title", config="movie_title", weight="A"),
                    "||",
                    django.contrib.postgres.search.SearchVector("overview", config="english", weight="B"),
                    django.contrib.postgres.search.SearchConfig("movie_title"),
                ),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="movie",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="movie_search"),
        ),
        migrations.AddIndex(
            model_name="movie",
            index=models.Index(django.db.models.functions.text.Lower("title"), name="movie_title_lower"),
        ),
    ]
