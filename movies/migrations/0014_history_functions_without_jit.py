"""The history's functions installed again (movies/history_sql.py), now with `jit = off`: with the planner's
index-only settings a snapshot's plan could cost more than jit_above_cost, and each call compiled its statements
first (a 1,000,000-movie bulk load's recording did not end in 17 minutes). The entries stay as they are.

Reversing leaves the functions as they are now: the earlier ones differ only in that setting.
"""

from django.db import migrations

from movies import history_sql


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0013_history_triggers"),
    ]

    operations = [
        migrations.RunSQL(history_sql.UNINSTALL_SQL + history_sql.INSTALL_SQL, reverse_sql=migrations.RunSQL.noop),
    ]
