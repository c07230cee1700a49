"""IMDb ids stay unique through a UniqueConstraint instead of unique=True, which also made a varchar_pattern_ops
index (for LIKE, which nothing asks) that every insert and every non-HOT update of a movie had to write.

The old constraint goes first: Django finds the one unique constraint on the column to drop it. The migration is
one transaction, so no other session ever sees the column without a unique index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0006_drop_redundant_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="movie",
            name="imdb_id",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AlterField(
            model_name="person",
            name="imdb_id",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AddConstraint(
            model_name="movie",
            constraint=models.UniqueConstraint(fields=("imdb_id",), name="movie_imdb_id_unique"),
        ),
        migrations.AddConstraint(
            model_name="person",
            constraint=models.UniqueConstraint(fields=("imdb_id",), name="person_imdb_id_unique"),
        ),
    ]
