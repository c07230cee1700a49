"""A GiST trigram index on titles for typo search ordered by word-similarity distance (KNN, see README)."""

import django.contrib.postgres.indexes
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0003_discovery_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="movie",
            index=django.contrib.postgres.indexes.GistIndex(
                fields=["title"], name="movie_title_trgm_knn", opclasses=["gist_trgm_ops(siglen=256)"]
            ),
        ),
    ]
