"""Print `EXPLAIN (ANALYZE, BUFFERS)` of every SQL statement the API sends for the given request paths.

Run by bench/run.py against the bench database: `python bench/explain.py '/api/v1/movies/?page=500' ...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"


def main(paths: list[str]) -> None:
    import django

    django.setup()
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    for path in paths:
        client.get(path)  # warm: the first request of a process pays for imports and caches
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        print(f"==== GET {path} -> {status}, {len(captured.captured_queries)} queries")
        for query in captured.captured_queries:
            sql = query["sql"]
            print(f"\n-- {sql}\n")
            settings = []  # a search probe's plan settings (movies/sql.py): kept for the plan
            while sql.startswith("SET LOCAL "):
                setting, sql = sql.split(";\n", 1)
                settings.append(setting)
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                for setting in settings:
                    cursor.execute(setting)
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
                for (line,) in cursor.fetchall():
                    print("   ", line)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
