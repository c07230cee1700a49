"""Writers of history entries for the change-feed tests: each on its own connection, in real transactions, each
entry stamped with its transaction's id exactly as the history triggers stamp it."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from conftest import live_database_url

INSERT_SQL = (
    "INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid) "
    "VALUES (%s, %s, %s, statement_timestamp(), '{\"kind\": \"database\"}', '{}', "
    "pg_current_xact_id()::text::bigint) RETURNING xid, id"
)
XMIN_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def connect(*, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection of its own to the test database (not autocommit: a transaction starts with its first write)."""
    return psycopg.connect(live_database_url(), autocommit=autocommit)


def write(conn: psycopg.Connection[Any], movie: int, version: int, kind: str = "updated") -> tuple[int, int]:
    """Insert one entry in the connection's transaction; its (xid, id)."""
    row = conn.execute(INSERT_SQL, [movie, version, kind]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def commit_one(movie: int, version: int, kind: str = "updated") -> tuple[int, int]:
    """One entry in a transaction of its own, committed."""
    with connect() as conn:
        return write(conn, movie, version, kind)


def wait_until_ended(xid: int, timeout: float = 120) -> None:
    """Wait until every transaction up to xid has ended (other sessions of the server may hold the horizon back)."""
    deadline = time.monotonic() + timeout
    with connect(autocommit=True) as conn:
        while True:
            row = conn.execute(XMIN_SQL).fetchone()
            assert row is not None
            if int(row[0]) > xid:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"a transaction below {xid + 1} is still in flight after {timeout}s")
            time.sleep(0.02)
