"""`GET changes/`: the contract (shapes, bounds, 400s, the empty page, `after=now`), what transactions still in flight
and rolled back do to it, 410 behind purged history, and its one indexed statement. Real PostgreSQL; entries are
written in real transactions on connections of their own (movies/tests/feed_writers.py)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from movies.changes import CURSOR_PATTERN, FEED_MAX_LIMIT, START, FeedPosition, decode_cursor, encode_cursor
from movies.sql import FEED_PAGE_SQL
from movies.tests.feed_writers import commit_one, connect, wait_until_ended, write

URL = "/api/v1/changes/"
committed = pytest.mark.django_db(transaction=True)


def page(client: APIClient, **params: Any) -> tuple[list[tuple[int, int, str]], str]:
    """A 200 page's (movie, version, kind) and its next cursor."""
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next"}
    return [(entry["movie"], entry["version"], entry["kind"]) for entry in body["results"]], body["next"]


def refused(client: APIClient, status: int, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


# ---- the contract -------------------------------------------------------------------------------------------------


@committed
def test_an_empty_feed_answers_an_empty_page_whose_next_is_the_cursor_sent(anon: APIClient) -> None:
    results, first = page(anon)
    assert results == []
    assert decode_cursor(first) == START
    assert page(anon, after=first) == ([], first)


@committed
def test_pages_follow_next_in_transaction_order_with_the_contracts_shape(anon: APIClient) -> None:
    last = (0, 0)
    for movie, version, kind in [(7, 1, "created"), (7, 2, "updated"), (8, 1, "created"), (7, 3, "deleted")]:
        last = commit_one(movie, version, kind)
    wait_until_ended(last[0])

    response = anon.get(URL, {"limit": "3"})
    body = response.json()
    entry = body["results"][0]
    assert set(entry) == {"movie", "version", "kind", "at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["at"])
    assert re.fullmatch(CURSOR_PATTERN, body["next"])
    seen = [(e["movie"], e["version"], e["kind"]) for e in body["results"]]
    rest, cursor = page(anon, after=body["next"], limit="3")
    assert seen + rest == [(7, 1, "created"), (7, 2, "updated"), (8, 1, "created"), (7, 3, "deleted")]
    assert decode_cursor(cursor) == FeedPosition(*last)
    assert page(anon, after=cursor) == ([], cursor)  # nothing new yet: the same cursor again
    # A change committed later comes after the cursor.
    wait_until_ended(commit_one(8, 2)[0])
    assert page(anon, after=cursor)[0] == [(8, 2, "updated")]


@committed
def test_after_now_starts_at_the_present(anon: APIClient) -> None:
    wait_until_ended(commit_one(1, 1, "created")[0])
    results, now = page(anon, after="now")
    assert results == []
    assert page(anon, after=now) == ([], now)
    wait_until_ended(commit_one(1, 2)[0])
    assert page(anon, after=now)[0] == [(1, 2, "updated")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(FEED_MAX_LIMIT + 1)}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "٣"}, "limit"),  # a digit, but not an ASCII one
        ({"limit": ["1", "2"]}, "limit"),
        ({"after": ""}, "after"),
        ({"after": "garbage"}, "after"),
        ({"after": "NOW"}, "after"),
        ({"after": encode_cursor(FeedPosition(1, 2))[:-1]}, "after"),  # cut short
        ({"after": "A" * 23}, "after"),  # the right length, an unknown format version
        ({"after": encode_cursor(FeedPosition(1, 2))[:-1] + "F"}, "after"),  # unused base64 bits set
        ({"after": [encode_cursor(START), encode_cursor(START)]}, "after"),
        ({"page": "1"}, "page"),
        ({"cursor": encode_cursor(START)}, "cursor"),
    ],
)
def test_bad_parameters_are_400_naming_them(anon: APIClient, db: None, params: dict[str, Any], field: str) -> None:
    body = refused(anon, 400, **params)
    assert body["type"] == "urn:movieapi:problem:validation-error"
    assert list(body["errors"]) == [field]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "trace"])
def test_other_methods_are_405(anon: APIClient, db: None, method: str) -> None:
    response = anon.generic(method.upper(), URL)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"


def test_the_limits_bounds_are_accepted(anon: APIClient, db: None) -> None:
    assert page(anon, limit="1")[0] == []
    assert page(anon, limit=str(FEED_MAX_LIMIT))[0] == []


def test_a_cursor_past_anything_written_is_just_an_empty_page(anon: APIClient, db: None) -> None:
    far = encode_cursor(FeedPosition(2**63 - 1, 2**63 - 1))
    assert page(anon, after=far) == ([], far)


def test_a_page_is_one_statement(anon: APIClient, db: None, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        page(anon, limit="1000")


# ---- transactions in flight, rolled back, savepoints -------------------------------------------------------------


@committed
def test_a_change_waits_for_every_older_transaction_and_rolled_back_ones_never_show(anon: APIClient) -> None:
    slow, rolled_back = connect(), connect()
    try:
        write(slow, 1, 1, "created")  # the older transaction, still open
        write(rolled_back, 2, 1, "created")
        quick = commit_one(3, 1, "created")  # committed first, by a younger transaction
        results, cursor = page(anon)
        assert results == []  # served only once the older transactions have ended
        rolled_back.rollback()
        assert page(anon) == ([], cursor)
        slow.commit()
        wait_until_ended(quick[0])
        # A feed by id or by xid without the cutoff would have served (3, 1) above and skipped (1, 1) for good.
        assert page(anon)[0] == [(1, 1, "created"), (3, 1, "created")]
    finally:
        slow.close()
        rolled_back.close()


@committed
def test_a_transaction_that_only_took_an_xid_holds_the_feed_back_until_it_ends(anon: APIClient) -> None:
    idle = connect()
    try:
        idle.execute("SELECT pg_current_xact_id()")  # an xid, and no write at all
        quick = commit_one(5, 1, "created")
        assert page(anon)[0] == []
        idle.rollback()
        wait_until_ended(quick[0])
        assert page(anon)[0] == [(5, 1, "created")]
    finally:
        idle.close()


@committed
def test_entries_of_a_rolled_back_savepoint_never_show_and_the_rest_carry_the_top_transactions_xid(
    anon: APIClient,
) -> None:
    with connect() as conn:
        top = write(conn, 4, 1, "created")
        conn.execute("SAVEPOINT s")
        write(conn, 4, 2)
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("SAVEPOINT t")
        inner = write(conn, 4, 3)
        conn.execute("RELEASE SAVEPOINT t")
    assert inner[0] == top[0]
    wait_until_ended(top[0])
    assert page(anon)[0] == [(4, 1, "created"), (4, 3, "updated")]


# ---- retention: 410 behind purged history ------------------------------------------------------------------------


@committed
def test_a_cursor_behind_purged_history_is_410_and_one_past_it_is_not(anon: APIClient) -> None:
    positions = [commit_one(9, version) for version in (1, 2, 3)]
    wait_until_ended(positions[-1][0])
    _, after_first = page(anon, limit="1")
    _, after_second = page(anon, limit="2")

    with connection.cursor() as cursor:  # a purge of the second entry (the first stays)
        cursor.execute("DELETE FROM movies_movieversion WHERE id = %s", [positions[1][1]])

    body = refused(anon, 410, after=after_first)  # (9, 2) was never served to this consumer, and is gone
    assert body["type"] == "urn:movieapi:problem:history-gone"
    assert "after=now" in body["detail"]
    assert refused(anon, 410)["status"] == 410  # from the beginning: the beginning is gone
    assert page(anon, after=after_second)[0] == [(9, 3, "updated")]  # served everything purged: nothing missed
    assert page(anon, after="now")[0] == []

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE movies_movieversion")
    refused(anon, 410, after=after_second)
    assert page(anon, after=encode_cursor(FeedPosition(*positions[-1])))[0] == []


# ---- one indexed range scan ---------------------------------------------------------------------------------------


def test_a_page_is_one_range_scan_of_the_feed_index(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid) "
            "SELECT n, 1, 'created', now(), '{}', '{}', 1000 + n / 100 FROM generate_series(1, 50000) n"
        )
        cursor.execute("ANALYZE movies_movieversion")
        cursor.execute("EXPLAIN " + FEED_PAGE_SQL, [1200, 0, 1200, 0, 100])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Index Scan using movieversion_feed on movies_movieversion" in plan, plan
    assert "Seq Scan on movies_movieversion" not in plan, plan
    # The cursor and the cutoff bound the scan itself: no entry outside the page's range is read and filtered.
    scan = plan.split("Index Scan using movieversion_feed", 1)[1]
    index_cond = re.search(r"Index Cond: (.*)", scan)
    assert index_cond, plan
    assert "(ROW(xid, id) > ROW(1200, 0))" in index_cond.group(1), plan
    assert "(xid < ((pg_snapshot_xmin(pg_current_snapshot()))" in index_cond.group(1), plan


# ---- the schema ---------------------------------------------------------------------------------------------------


def test_the_schema_states_the_feeds_parameters_and_answers(db: None) -> None:
    import io

    import yaml
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    get = yaml.safe_load(out.getvalue())["paths"]["/api/v1/changes/"]["get"]
    assert {} in get["security"]  # anyone
    assert {"200", "400", "410", "429"} <= set(get["responses"])
    assert "application/problem+json" in get["responses"]["410"]["content"]
    parameters = {parameter["name"]: parameter for parameter in get["parameters"]}
    assert set(parameters) == {"after", "limit"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    pattern = parameters["after"]["schema"]["pattern"]
    for cursor in ("now", encode_cursor(START), encode_cursor(FeedPosition(2**63 - 1, 2**63 - 1))):
        assert re.fullmatch(pattern, cursor)
    assert not re.fullmatch(pattern, "")
    page_schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert page_schema == {"$ref": "#/components/schemas/FeedPage"}


# ---- end to end: the versions PostgreSQL records (movies/history_sql.py) are the feed --------------------------------


@committed
def test_the_apis_own_writes_come_through_the_feed_as_recorded(anon: APIClient, curator_client: APIClient) -> None:
    _, now = page(anon, after="now")
    created = curator_client.post("/api/v1/movies/", {"title": "Fed", "year": 2001}, format="json")
    assert created.status_code == 201
    movie = created.json()["id"]
    path = f"/api/v1/movies/{movie}/"
    assert curator_client.patch(path, {"runtime": 90, "version": 1}, format="json").status_code == 200
    assert curator_client.delete(path).status_code == 204
    # Served once every older transaction on the server has ended (another database's too): wait for that.
    deadline = time.monotonic() + 30
    while len(page(anon, after=now)[0]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    results, cursor = page(anon, after=now)
    assert results == [(movie, 1, "created"), (movie, 2, "updated"), (movie, 3, "deleted")]
    assert page(anon, after=cursor) == ([], cursor)
