"""Django's PostgreSQL backend, with a per-request health check that costs no round trip while the connection is
quiet, and timestamps parsed by psycopg's C loader (TimestamptzLoader below).

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request: a whole round trip,
and on a movie detail about a sixth of the request's cost (measured with wrk against gunicorn). Between requests
a healthy persistent connection is idle and the server has nothing to say, so its socket has nothing to read.
A connection the server ended (restart, `pg_terminate_backend`, idle timeout) has: an error message, then
end-of-file. So the check polls the socket first (no wait) and sends `SELECT 1` only when there is something to
read, or when psycopg or libpq already know the connection is not idle; a failing check closes the connection
and Django opens a new one, as before. The check after a database error is Django's own (`SELECT 1`).
"""

from __future__ import annotations

import datetime
import functools
import os
import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import adapt, pq
from psycopg.abc import AdaptContext
from psycopg.postgres import types


class TimestamptzLoader(adapt.Loader):
    """Fast path: C timestamp loader.

    Replaces: Django's timestamptz loader, which parses each value with a regular expression in Python (~5 us a value).
    Why: ~0.5 us a value; a list page's worker CPU in process 1,680-1,870 -> 1,410-1,470 us.
    Equal: movies/tests/test_read_path.py::test_timestamps_load_as_djangos_loader_loads_them
    Off: delete the `params["context"] = _adapters(...)` line of DatabaseWrapper.get_connection_params.

    Django's timestamptz loader (the value in the session's time zone, stamped with Django's), parsing with
    psycopg's own loader: its C implementation when psycopg runs on it (about 0.5 us a value, where Django's loader
    parses with a regular expression in Python, about 5 us; a list page of 20 movies holds 40 timestamps).

    Same values as Django's: Django sets the session's time zone to its own, and both stamp the result with it."""

    timezone: datetime.tzinfo | None = None  # Django's create_cursor compares it with the connection's

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._parse = psycopg.adapters.get_loader(oid, pq.Format.TEXT)(oid, context).load  # type: ignore[misc]

    def load(self, data: Any) -> datetime.datetime:
        """The timestamp, stamped with Django's time zone (None: naive) as Django's loader does."""
        value: datetime.datetime = self._parse(data)
        return value.replace(tzinfo=self.timezone)


@functools.lru_cache
def _adapters(template: adapt.AdaptersMap, zone: datetime.tzinfo | None) -> adapt.AdaptersMap:
    """Django's adapters for connections, with our timestamptz loader for Django's time zone."""

    class ZoneTimestamptzLoader(TimestamptzLoader):
        timezone = zone

    adapters = adapt.AdaptersMap(template)
    adapters.register_loader(types["timestamptz"].oid, ZoneTimestamptzLoader)
    return adapters


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        """Django's, with the faster timestamptz loader in the connection's adapters, and the connecting process's pid
        in `application_name` (settings may be imported before gunicorn forks its workers)."""
        params: dict[str, Any] = super().get_connection_params()
        params["context"] = _adapters(params["context"], self.timezone)
        name = params.get("application_name")
        if isinstance(name, str) and "{pid}" in name:
            params["application_name"] = name.replace("{pid}", str(os.getpid()))
        return params

    def close_if_health_check_failed(self) -> None:
        """Fast path: quiet health check.

        Replaces: Django's CONN_HEALTH_CHECKS round trip (`SELECT 1`) before each request's first query.
        Why: +6-22% detail req/s.
        Equal: movies/tests/test_read_path.py::test_health_check_asks_the_server_only_when_the_connection_is_not_quiet
        Off: delete this method (Django's check runs again).

        Pass the check without a round trip when the connection is idle and its socket quiet."""
        state: Any = self  # django-stubs do not declare these attributes
        if (
            self.connection is not None
            and state.health_check_enabled
            and not state.health_check_done
            and not state.pool
            and not self.connection.closed
            and not self.connection.broken
            and _quiet(self.connection.pgconn)
        ):
            state.health_check_done = True
            return
        super().close_if_health_check_failed()


def _quiet(pgconn: pq.abc.PGconn) -> bool:
    """True if libpq sees an idle, open connection and the server has sent nothing (no message, no end of file)."""
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    return not poller.poll(0)
