"""Server-side prepared statements for the hot read paths (settings: DB_PREPARED_STATEMENTS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg.rows import RowFactory, tuple_row


class _PreparingCursor(psycopg.Cursor[Any]):
    """Binds server-side and asks psycopg to prepare every statement on its first execution."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        """Execute as a prepared statement (unless prepared statements are off, see settings)."""
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)


class _PreparedDebugCursor(CursorDebugWrapper):
    """Django's query log (DEBUG, tests, bench/explain.py) with each prepared statement composed with its
    parameters: psycopg keeps no composed query for a statement bound server-side, so Django would log None."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        """Run the statement, logging it as the SQL it amounts to."""
        with self.debug_sql(_composed(self.db, sql, params), None):
            return CursorWrapper.execute(self, sql, params)


def _composed(connection: Any, sql: str, params: Any) -> str:
    if params is None:
        return sql
    try:
        return str(connection.ops.compose_sql(sql, params))
    except psycopg.DataError:
        return sql


@contextmanager
def prepared_cursor(alias: str = DEFAULT_DB_ALIAS, row_factory: RowFactory[Any] = tuple_row) -> Iterator[CursorWrapper]:
    """Fast path: prepared statements.

    Replaces: Django's cursors, which bind client-side and never prepare: PostgreSQL parses and plans every statement
        again.
    Why: preparing alone ~+25% detail req/s; one cursor per connection: detail worker CPU 780-844 -> 731-742 us.
    Equal: movies/tests/test_read_path.py::test_detail_and_list_answer_what_the_declared_fields_give
    Off: DB_PREPARED_STATEMENTS=0 (bound server-side, never prepared).

    A Django cursor (health check, error wrapping, query log) whose statements are prepared server-side.

    Django's own cursors bind parameters client-side and never prepare, so PostgreSQL parses and plans every
    statement again: a movie's statement (three correlated subqueries) costs more to plan than to run. This one
    prepares each statement on the connection once and then only binds and runs it (settings:
    DB_PREPARED_STATEMENTS). For constant SQL texts only: psycopg keeps 100 prepared statements per connection.

    The psycopg cursor under it is the connection's one prepared cursor, kept open across requests: a new cursor
    copies the connection's adapters map, and psycopg keeps a cursor's loaders and dumpers while it runs the same
    statement again (a movie detail, request after request). Its last result stays in memory until the next one,
    and two uses share it: fetch what a statement returned before running the next (every caller does).
    Each use says how its rows come (psycopg's `row_factory`: tuples unless told, `sql.movie_row` for movies).
    """
    connection = connections[alias]
    # What `connection.cursor()` does, with our cursor class instead of the client-side one.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw: Any = _raw_cursor(connection)  # django-stubs type make_cursor's argument as a CursorWrapper
    if raw.row_factory is not row_factory:
        raw.row_factory = row_factory
    cursor = _PreparedDebugCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    try:
        yield cursor
    except NotSupportedError as exc:
        # A prepared statement outlives schema changes: once a column it returns changes type, PostgreSQL
        # refuses it ("cached plan must not change result type") for the rest of the session. Replace the
        # connection when this request ends (not now: the request may be inside a transaction).
        if isinstance(exc.__cause__, psycopg.errors.FeatureNotSupported):
            connection.close_at = time.monotonic()
        raise


_CURSOR_ATTR = "_movieapi_prepared_cursor"


def _raw_cursor(connection: Any) -> _PreparingCursor:
    """The open connection's prepared cursor, made on first use (again after Django replaced the connection)."""
    raw: _PreparingCursor | None = getattr(connection, _CURSOR_ATTR, None)
    if raw is None or raw.closed or raw.connection is not connection.connection:
        with connection.wrap_database_errors:
            raw = _PreparingCursor(connection.connection)
        setattr(connection, _CURSOR_ATTR, raw)
    return raw
