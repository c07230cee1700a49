"""A GIN index on the title words alone, the first source of a search's candidates (docs/search.md).

A search ranks at most SEARCH_CANDIDATES matches; taking them from this index first means a word that is in
many overviews (`detective`: 93k matches on 1M movies) cannot crowd the movies titled with it out of the ranking.
Its expression is the one `movies.sql.TITLE_MATCH_SQL` tests, so the planner can use it. Built CONCURRENTLY
(no lock on writes to `movies_movie` meanwhile; measured on 1,000,000 movies: see docs/search.md).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("movies", "0004_search_stop_words"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="movie",
            index=django.contrib.postgres.indexes.GinIndex(
                models.Func(
                    django.contrib.postgres.search.SearchConfig("movie_title"),
                    models.F("title"),
                    function="to_tsvector",
                    output_field=django.contrib.postgres.search.SearchVectorField(),
                ),
                name="movie_title_search",
            ),
        ),
    ]
