"""Each bench command's own database on the DATABASE_URL server (or the embedded one, as `make run` uses).

DATABASE_URL names the server only: the database it names need not exist, and no bench writes to it (it may be
someone's catalogue). `make bench` uses movieapi_bench (BENCH_DATABASE), `make bench-throttle`
movieapi_bench_throttle (BENCH_THROTTLE_DATABASE), `make bench-import` movieapi_bench_import (--database): each is
created when missing and reused, except the import bench's, which starts empty every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def server_url() -> str:
    """DATABASE_URL, else the embedded PostgreSQL's URL (started if need be)."""
    base = os.environ.get("DATABASE_URL", "")
    if base:
        return base
    sys.path.insert(0, str(ROOT))
    from movieapi.embedded_db import embedded_database_url

    return embedded_database_url(ROOT / ".data" / "postgres")


def with_db(url: str, name: str) -> str:
    """The URL with its database replaced by name."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def own_database(name: str, *, fresh: bool = False) -> str:
    """The URL of the bench database `name` on the server, created when missing (fresh: dropped and created anew)."""
    server = server_url()
    # The maintenance database: the one DATABASE_URL names need not exist.
    with psycopg.connect(with_db(server, "postgres"), autocommit=True) as conn:
        database = sql.Identifier(name)
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
    return with_db(server, name)


def history_size(url: str) -> tuple[int, float]:
    """The versions `movies_movieversion` holds and its bytes per version, indexes and TOAST included."""
    with psycopg.connect(url) as conn:
        entries, size = conn.execute(  # type: ignore[misc]
            "SELECT count(*), pg_total_relation_size('movies_movieversion') FROM movies_movieversion"
        ).fetchone()
    return entries, size / max(entries, 1)


def set_history(url: str, *, on: bool) -> None:
    """Install (on) or drop the history's triggers, as migration 0013 does (movies/history_sql.py)."""
    sys.path.insert(0, str(ROOT))
    from movies.history_sql import INSTALL_SQL, UNINSTALL_SQL  # Django-free

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UNINSTALL_SQL + (INSTALL_SQL if on else ""))


def migrate(env: dict[str, str]) -> None:
    """`manage.py migrate` on env's DATABASE_URL (a bench database)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
