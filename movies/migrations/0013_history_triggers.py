"""PostgreSQL records every version of a movie aggregate (docs/history.md): the functions and triggers of
movies/history_sql.py, then each existing movie's current version as the first entry of its history.

The SQL lives in movies/history_sql.py (pinned to the models by movies/tests/test_history.py); a later change to it
needs a migration of its own that drops and installs it again.
"""

from django.db import migrations

from movies import history_sql


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0012_feed_horizon"),
    ]

    operations = [
        migrations.RunSQL(history_sql.INSTALL_SQL, reverse_sql=history_sql.UNINSTALL_SQL),
        migrations.RunSQL(history_sql.HISTORY_BACKFILL_SQL, reverse_sql="DELETE FROM movies_movieversion"),
    ]
