"""The change feed under concurrent writers, read over HTTP from a real gunicorn (4 workers) while they write.

Writer threads, each on its own connection, write history entries in transactions of random length (some take
their xid first and hold it, some stay open long while others commit, some roll back); a reader follows `next`
from no cursor throughout. At the end the reader holds exactly the committed (movie, version) pairs: none missing,
none twice, none rolled back, each movie's versions in order. The same storm read by the two naive feeds the
design rules out (ORDER BY id; ORDER BY xid, id without the xmin cutoff) misses committed entries: the check bites.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest

from conftest import LiveServer
from movies.tests.feed_writers import connect, wait_until_ended, write

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WRITERS = 6
SECONDS = 6.0
MOVIES_PER_WRITER = 5

Pair = tuple[int, int]
# A reader of one page: (cursor or None, limit) -> the page's (movie, version) pairs and the next cursor.
PageReader = Callable[[Any, int], tuple[list[Pair], Any]]


@dataclass
class Storm:
    committed: set[Pair] = field(default_factory=set)
    rolled_back: set[Pair] = field(default_factory=set)
    read: list[Pair] = field(default_factory=list)
    max_xid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(storm: Storm, number: int, deadline: float) -> None:
    """Transactions until the deadline: 1-3 entries each, some holding their xid or staying open, 20% rolled back."""
    rng = random.Random(number)
    versions = Counter[int]()
    with connect() as conn:
        while time.monotonic() < deadline:
            pairs: list[Pair] = []
            if rng.random() < 0.3:
                conn.execute("SELECT pg_current_xact_id()")  # the xid first, the writes later
                time.sleep(rng.uniform(0, 0.2))
            xid = 0
            for _ in range(rng.randint(1, 3)):
                movie = number * 1000 + rng.randrange(MOVIES_PER_WRITER)
                versions[movie] += 1  # never reused, even when rolled back: each pair names one attempt
                xid, _ = write(conn, movie, versions[movie])
                pairs.append((movie, versions[movie]))
                time.sleep(rng.uniform(0, 0.02))
            time.sleep(rng.uniform(0.3, 1.0) if rng.random() < 0.15 else rng.uniform(0, 0.03))
            if rng.random() < 0.2:
                conn.rollback()
                with storm.lock:
                    storm.rolled_back.update(pairs)
            else:
                conn.commit()
                with storm.lock:
                    storm.committed.update(pairs)
                    storm.max_xid = max(storm.max_xid, xid)


def run_storm(read_page: PageReader) -> Storm:
    """The writers and, throughout, a reader following the feed; then the reader drains what was committed."""
    storm = Storm()
    deadline = time.monotonic() + SECONDS
    writers = [threading.Thread(target=writer, args=(storm, n, deadline)) for n in range(1, WRITERS + 1)]
    done = threading.Event()
    failure: list[BaseException] = []

    def reader() -> None:
        rng = random.Random(0)
        cursor: Any = None
        try:
            while True:
                finished = done.is_set()  # read before the page: a page read after it holds everything
                pairs, cursor = read_page(cursor, rng.randint(1, 50))
                storm.read.extend(pairs)
                if not pairs:
                    if finished:
                        return
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the test
            failure.append(exc)

    reading = threading.Thread(target=reader)
    reading.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    wait_until_ended(storm.max_xid)  # every writer's transaction has ended: the feed can serve them all
    done.set()
    reading.join(120)
    assert not failure, failure
    return storm


def problems(storm: Storm) -> dict[str, Any]:
    """What the reader got wrong: missing, duplicated, rolled-back entries, versions of a movie out of order."""
    counts = Counter(storm.read)
    last: dict[int, int] = {}
    out_of_order = []
    for movie, version in storm.read:
        if version < last.get(movie, 0):
            out_of_order.append((movie, version))
        last[movie] = version
    found = {
        "missing": sorted(storm.committed - counts.keys()),
        "twice": sorted(pair for pair, count in counts.items() if count > 1),
        "rolled_back": sorted(storm.rolled_back & counts.keys()),
        "out_of_order": out_of_order,
    }
    return {name: pairs for name, pairs in found.items() if pairs}


def http_reader(server: LiveServer) -> PageReader:
    def read_page(cursor: str | None, limit: int) -> tuple[list[Pair], str]:
        query: dict[str, Any] = {"limit": limit, **({"after": cursor} if cursor else {})}
        with urllib.request.urlopen(f"{server.url}/api/v1/changes/?{urlencode(query)}", timeout=30) as response:
            body = json.loads(response.read())
        return [(entry["movie"], entry["version"]) for entry in body["results"]], body["next"]

    return read_page


def test_a_reader_following_the_feed_over_http_gets_every_committed_change_once(live_gunicorn: LiveServer) -> None:
    storm = run_storm(http_reader(live_gunicorn))
    print(f"committed {len(storm.committed)}, rolled back {len(storm.rolled_back)}, read {len(storm.read)}")
    assert len(storm.committed) > 100  # a storm,
    assert storm.rolled_back  # with rollbacks
    assert problems(storm) == {}
    assert set(storm.read) == storm.committed


# The feeds the design rules out, each read straight from the table (cursor: the last position read).
NAIVE_FEEDS = {
    "by id": "SELECT movie_id, version, id FROM movies_movieversion WHERE id > %s ORDER BY id LIMIT %s",
    "by xid without the cutoff": (
        "SELECT movie_id, version, xid, id FROM movies_movieversion WHERE (xid, id) > (%s, %s) "
        "ORDER BY xid, id LIMIT %s"
    ),
}


@pytest.mark.parametrize("name", list(NAIVE_FEEDS))
def test_the_storm_catches_a_naive_feed_missing_late_commits(name: str) -> None:
    sql = NAIVE_FEEDS[name]
    with connect(autocommit=True) as conn:

        def read_page(cursor: tuple[int, ...] | None, limit: int) -> tuple[list[Pair], tuple[int, ...] | None]:
            position = cursor or ((0,) if name == "by id" else (0, 0))
            rows = conn.execute(sql, [*position, limit]).fetchall()
            return [(row[0], row[1]) for row in rows], tuple(rows[-1][2:]) if rows else cursor

        storm = run_storm(read_page)
    found = problems(storm)
    print(f"{name}: committed {len(storm.committed)}, " + ", ".join(f"{k} {len(v)}" for k, v in found.items()))
    assert "missing" in found
