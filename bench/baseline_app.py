"""The physical limit of this stack: a bare WSGI app (no Django) answering the bench's requests.

It sends the same SQL statements as the API does for each scenario (movies/selectors.py, movies/filters.py,
movies/search.py, movieapi/pagination.py: deferred join, cheap count, one statement per page with the related data
as JSON), over one persistent psycopg connection per worker, and shapes each movie with the API's own Django-free
movies.representation before writing the same JSON with orjson. Only what the
bench asks is implemented: movie detail, the movie list with page, page_size, search, genre, year_min, year_max and
ordering, a page of the change feed (`after`, `limit`: movies/changes.py and FEED_PAGE_SQL), and a curator's PATCH
of `runtime` with `version` (bearer token, the same token and conditional UPDATE statements as the API, no rate
limit). Served with the same gunicorn settings:
`gunicorn bench.baseline_app:application -c gunicorn.conf.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
import psycopg
from psycopg.types.numeric import Int8

from movies.changes import FEED_DEFAULT_LIMIT, START, FeedPosition, decode_cursor, encode_cursor, entry_json, feed_page
from movies.representation import movie_representation  # Django-free, as the API shapes a movie
from movies.sql import (
    FEED_PAGE_SQL,
    MOVIE_BY_ID_SQL,
    MOVIE_COLUMNS,
    MOVIE_VERSION_SQL,
    MOVIES_BY_IDS_SQL,
    SEARCH_CANDIDATES,
    SEARCH_PROBE_SQL,
    SEARCH_RANK_SQL,
    SEARCH_TSQUERY_SQL,
    TITLE_MATCH_SQL,
    TYPO_COLUMNS_SQL,
    TYPO_MATCH_SQL,
    TYPO_PROBE_SQL,
    MovieRow,
    movie_row,
    represented_update_sql,
)

# As in movieapi/pagination.py (not imported: it needs Django).
EXACT_COUNT_LIMIT = 1000
ESTIMATE_TTL_SECONDS = 10.0

ORDERING = {
    "": "movies_movie.id ASC",
    "-rating": "movies_movie.rating_average DESC NULLS LAST, movies_movie.id DESC",
    "rating": "movies_movie.rating_average ASC NULLS LAST, movies_movie.id ASC",
    "-year": "movies_movie.year DESC, movies_movie.id DESC",
    "year": "movies_movie.year ASC, movies_movie.id ASC",
}

# A curator's PATCH sends the API's two statements (written out here: the API builds them from Django's model
# metadata; movies/tests/test_bench_baseline.py checks they are the same text): the bearer token's rows with
# their user and the user's permissions (movieapi/authentication.py `_token_query(True)`), then the versioned
# UPDATE that answers with the movie's representation row (movies/services.py `_conditional_update`).
TOKEN_SQL = """SELECT t."digest", t."token_key", t."user_id", t."created", t."expiry", u."id", u."password", \
u."last_login", u."is_superuser", u."username", u."first_name", u."last_name", u."email", u."is_staff", \
u."is_active", u."date_joined", ARRAY(
SELECT ct.app_label || '.' || p.codename
FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
WHERE u.is_superuser
   OR p.id IN (SELECT up.permission_id FROM auth_user_user_permissions up WHERE up.user_id = u."id")
   OR p.id IN (SELECT gp.permission_id FROM auth_group_permissions gp
               JOIN auth_user_groups ug ON ug.group_id = gp.group_id WHERE ug.user_id = u."id")
) FROM "knox_authtoken" t JOIN "auth_user" u ON u."id" = t."user_id" WHERE t.token_key = %s"""  # noqa: S105 (SQL, not a password)
TOKEN_DIGEST, TOKEN_EXPIRY, USER_ID, USER_NAME, USER_IS_ACTIVE, USER_PERMISSIONS = 0, 4, 5, 9, 14, 16
TOKEN_KEY_LENGTH = 15  # knox CONSTANTS.TOKEN_KEY_LENGTH
RUNTIME_UPDATE_SQL = represented_update_sql(
    'UPDATE "movies_movie" SET "runtime" = %s, field_sources = field_sources || \'{"runtime": "curator"}\'::jsonb, '
    "version = version + 1, updated_at = statement_timestamp() WHERE id = %s AND version = %s"
    " AND set_config('movieapi.actor', %s, true) IS NOT NULL"  # the writer, for the history (docs/history.md)
)
MAX_RUNTIME = 60000  # movies.models.MAX_RUNTIME

_connection: psycopg.Connection[Any] | None = None
_estimate: tuple[float, int] = (0.0, -1)


def db() -> psycopg.Connection[Any]:
    """One persistent connection per worker (gunicorn forks first: opened lazily in the worker)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _connection


def movies(sql: str, params: list[Any]) -> list[MovieRow]:
    """The MovieRows a statement selecting MOVIE_COLUMNS returns."""
    return db().cursor(row_factory=movie_row).execute(sql, params).fetchall()


def detail(movie_id: int) -> tuple[str, bytes, list[tuple[str, str]]]:
    rows = movies(MOVIE_BY_ID_SQL, [movie_id])
    if not rows:
        return "404 Not Found", b'{"status":404}', []
    return represented(rows[0])


def represented(row: MovieRow) -> tuple[str, bytes, list[tuple[str, str]]]:
    """200 with the movie's JSON and its strong ETag, as the API answers."""
    body = orjson.dumps(movie_representation(row), option=orjson.OPT_UTC_Z)
    return "200 OK", body, [("ETag", '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')]


def answer(status: str, problem: str) -> tuple[str, bytes, list[tuple[str, str]]]:
    return status, orjson.dumps({"status": int(status[:3]), "detail": problem}), []


def curator(environ: dict[str, Any]) -> tuple[str | None, str]:
    """(None, the writer as the history records it) if the bearer token is a live token of an active user holding
    `movies.change_movie`, else (the refusal's status, "") (knox's checks: the key prefix finds the rows, the SHA-512
    digest must match, expired is refused)."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "401 Unauthorized", ""
    digest = hashlib.sha512(token.encode()).hexdigest()
    for row in db().execute(TOKEN_SQL, [token[:TOKEN_KEY_LENGTH]]).fetchall():
        expiry = row[TOKEN_EXPIRY]
        if hmac.compare_digest(digest, row[TOKEN_DIGEST]) and (expiry is None or expiry >= datetime.now(UTC)):
            if not row[USER_IS_ACTIVE]:
                return "401 Unauthorized", ""
            if "movies.change_movie" not in row[USER_PERMISSIONS]:
                return "403 Forbidden", ""
            return None, json.dumps({"kind": "user", "id": row[USER_ID], "username": row[USER_NAME]})
    return "401 Unauthorized", ""


def patch(movie_id: int, environ: dict[str, Any]) -> tuple[str, bytes, list[tuple[str, str]]]:
    """A curator's PATCH of `runtime` based on `version`: 200 with the new representation, 409 if stale."""
    refused, actor = curator(environ)
    if refused:
        return answer(refused, "Not allowed.")
    try:
        data = orjson.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    except (orjson.JSONDecodeError, ValueError):
        return answer("400 Bad Request", "The body is not JSON.")
    if not isinstance(data, dict):
        return answer("400 Bad Request", "Send a JSON object.")
    runtime, version = data.get("runtime"), data.get("version")
    if (
        data.keys() != {"runtime", "version"}
        or not (runtime is None or (type(runtime) is int and 1 <= runtime <= MAX_RUNTIME))
        or type(version) is not int
        or version < 1
    ):
        return answer("400 Bad Request", "Send runtime (1-60000 or null) and version.")
    rows = movies(RUNTIME_UPDATE_SQL, [runtime, movie_id, version, actor])
    if not rows:
        current = db().execute(MOVIE_VERSION_SQL, [movie_id]).fetchone()
        return answer("409 Conflict" if current else "404 Not Found", "Stale version." if current else "No such movie.")
    return represented(rows[0])


def table_estimate() -> int:
    global _estimate
    now = time.monotonic()
    if now - _estimate[0] >= ESTIMATE_TTL_SECONDS:
        row = db().execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", ["movies_movie"])
        _estimate = (now, int(row.fetchone()[0]))  # type: ignore[index]
    return _estimate[1]


_planner_estimates: dict[tuple[str, str], tuple[float, int]] = {}


def planner_estimate(sql: str, params: list[Any]) -> int:
    """EXPLAIN's row estimate, reused for ESTIMATE_TTL_SECONDS per statement and parameters, as the API does."""
    key = (sql, repr(params))
    now = time.monotonic()
    cached = _planner_estimates.get(key)
    if cached is not None and now - cached[0] < ESTIMATE_TTL_SECONDS:
        return cached[1]
    plan = db().execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0]  # type: ignore[index]
    _planner_estimates[key] = (now, int(plan[0]["Plan"]["Plan Rows"]))
    return _planner_estimates[key][1]


def probe(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """A search probe (its SET LOCALs, then the query: client-side binding, as Django's cursor; the row is in the
    last result)."""
    cursor = psycopg.ClientCursor(db())
    cursor.execute(sql, params)
    while cursor.nextset():
        pass
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def listing(query: dict[str, list[str]], url: str) -> tuple[str, bytes, list[tuple[str, str]]]:
    page = int(query.get("page", ["1"])[0])
    size = int(query.get("page_size", ["20"])[0])
    offset = (page - 1) * size
    where: list[str] = []
    params: list[Any] = []
    order = ORDERING[query.get("ordering", [""])[0]]
    rank_sql, rank_params = "", []
    if "genre" in query:
        slugs = [slug for value in query["genre"] for slug in value.split(",")]
        genre_ids = dict(db().execute("SELECT slug, id FROM movies_genre WHERE slug = ANY(%s)", [slugs]).fetchall())
        for slug in slugs:
            where.append(
                "EXISTS(SELECT 1 FROM movies_movie_genres U0 WHERE U0.genre_id = %s AND U0.movie_id = movies_movie.id)"
            )
            params.append(genre_ids[slug])
    for name, op in (("year_min", ">="), ("year_max", "<=")):
        if name in query:
            where.append(f"movies_movie.year {op} %s")
            params.append(int(query[name][0]))
    known: tuple[int, bool] | None = None  # a count the search probe told (as in movies/search.py)
    page_ids: list[int] | None = None  # the page's ids when the search ranked them already (a typo)
    if "search" in query:
        text = query["search"][0].strip()
        ranked = "ordering" not in query
        condition = " AND ".join([*where, f"movies_movie.search_vector @@ {SEARCH_TSQUERY_SQL}"])
        matches_sql = f"SELECT movies_movie.id AS pk FROM movies_movie WHERE {condition}"
        title_condition = " AND ".join([*where, TITLE_MATCH_SQL])
        title_matches_sql = (
            f"SELECT movies_movie.id AS pk, movies_movie.search_vector FROM movies_movie WHERE {title_condition}"
        )
        limit = SEARCH_CANDIDATES + 1
        searchable, candidates = probe(
            SEARCH_PROBE_SQL.format(
                title_matches_sql=title_matches_sql, matches_sql=matches_sql, tsquery=SEARCH_TSQUERY_SQL
            ),
            [*params, text, text, *params, text, text, text, text, limit, text, text, limit],
        )
        candidates = candidates or []
        if not searchable:
            where.append("lower(movies_movie.title) = %s")
            params.append(" ".join(text.lower().split()))
            order = "movies_movie.rating_count DESC, movies_movie.id ASC"
        elif candidates and not ranked:
            where.append(f"movies_movie.search_vector @@ {SEARCH_TSQUERY_SQL}")
            params += [text, text]
            known = None if len(candidates) > SEARCH_CANDIDATES else (len(candidates), False)
        elif candidates:
            where.append("movies_movie.id = ANY(%s)")
            params.append(candidates[:SEARCH_CANDIDATES])
            rank_sql = f"({SEARCH_RANK_SQL})"
            rank_params = [text, text, text, text]
            order = f"{rank_sql} DESC, movies_movie.id ASC"
            known = (min(len(candidates), SEARCH_CANDIDATES), len(candidates) > SEARCH_CANDIDATES)
        else:
            typo_sql = " AND ".join([*where, TYPO_MATCH_SQL])
            matches_sql = f"SELECT {TYPO_COLUMNS_SQL} FROM movies_movie WHERE {typo_sql}"
            # The probe ranks its candidates (as movies/search.py): a ranked page is a slice of its answer.
            ranked_ids, read = probe(
                TYPO_PROBE_SQL.format(matches_sql=matches_sql),
                [*params, text, SEARCH_CANDIDATES + 1, SEARCH_CANDIDATES, text],
            )
            where.append("movies_movie.id = ANY(%s)")
            params.append(ranked_ids)
            if ranked:
                page_ids = ranked_ids[offset : offset + size + 1]
            known = (min(read, SEARCH_CANDIDATES), read > SEARCH_CANDIDATES)
        if not ranked:
            rank_sql, rank_params = "", []
            order = ORDERING[query["ordering"][0]]
    order_params = rank_params if "ordering" not in query and rank_sql else []
    rows: list[MovieRow]
    if page_ids is not None:
        rows = movies(MOVIES_BY_IDS_SQL, [page_ids])
    elif not where:
        rows = movies(
            f"SELECT {MOVIE_COLUMNS} FROM movies_movie WHERE movies_movie.id IN "
            f"(SELECT movies_movie.id FROM movies_movie ORDER BY {order} LIMIT %s OFFSET %s) ORDER BY {order}",
            [size + 1, offset],
        )
    else:
        condition = " AND ".join(where)
        ids = [
            row[0]
            for row in db().execute(
                f"SELECT movies_movie.id FROM movies_movie WHERE {condition} ORDER BY {order} LIMIT %s OFFSET %s",
                [*params, *order_params, size + 1, offset],
            )
        ]
        rows = (
            movies(
                f"SELECT {MOVIE_COLUMNS} FROM movies_movie WHERE {condition} AND movies_movie.id = ANY(%s) "
                f"ORDER BY {order}",
                [*params, ids, *order_params],
            )
            if ids
            else []
        )
    has_next = len(rows) > size
    rows = rows[:size]
    estimated = False
    if not has_next:
        count = offset + len(rows)
    elif known is not None:
        count, estimated = max(known[0], offset + size + 1), known[1]
    elif not where and table_estimate() > EXACT_COUNT_LIMIT:
        count, estimated = max(table_estimate(), offset + size + 1), True
    else:
        condition = " AND ".join(where) or "TRUE"
        estimate = planner_estimate(f"SELECT movies_movie.id FROM movies_movie WHERE {condition}", params)
        count, estimated = max(estimate, offset + size + 1), True
    if known is None and estimated and where and estimate <= EXACT_COUNT_LIMIT:
        count = (
            db()
            .execute(
                f"SELECT count(*) FROM (SELECT movies_movie.id FROM movies_movie WHERE {condition} LIMIT %s) s",
                [*params, EXACT_COUNT_LIMIT + 1],
            )
            .fetchone()[0]  # type: ignore[index]
        )
        estimated = count > EXACT_COUNT_LIMIT
        if estimated:
            count = max(estimate, count, offset + size + 1)
    base = url.split("?")[0]
    body = {
        "count": count,
        "count_is_estimate": estimated,
        "next": f"{base}?page={page + 1}&page_size={size}" if has_next else None,
        "previous": f"{base}?page={page - 1}&page_size={size}" if page > 1 else None,
        "results": [movie_representation(row) for row in rows],
    }
    return "200 OK", orjson.dumps(body, option=orjson.OPT_UTC_Z), []


def changes(query: dict[str, list[str]]) -> tuple[str, bytes, list[tuple[str, str]]]:
    """A page of the change feed, in the API's one statement; 410 behind purged history."""
    try:
        after: FeedPosition = decode_cursor(query["after"][0]) if "after" in query else START
        limit = int(query.get("limit", [str(FEED_DEFAULT_LIMIT)])[0])
    except ValueError:
        return answer("400 Bad Request", "Not a cursor or a limit.")
    xid, entry_id = Int8(after.xid), Int8(after.id)
    page = feed_page(after, db().execute(FEED_PAGE_SQL, [xid, entry_id, xid, entry_id, Int8(limit)]).fetchall())
    if page.gone:
        return answer("410 Gone", "History after this cursor was purged.")
    body = {"results": [entry_json(entry) for entry in page.entries], "next": encode_cursor(page.next)}
    return "200 OK", orjson.dumps(body, option=orjson.OPT_UTC_Z), []


DETAIL = re.compile(r"^/api/v1/movies/([0-9]+)/$")


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Route the bench's paths."""
    path = environ.get("PATH_INFO", "")
    headers: list[tuple[str, str]]
    if path == "/healthz":
        status, body, headers = "200 OK", b'{"status":"ok"}', []
    elif (match := DETAIL.match(path)) and environ.get("REQUEST_METHOD") == "PATCH":
        status, body, headers = patch(int(match.group(1)), environ)
    elif match:
        status, body, headers = detail(int(match.group(1)))
    elif path == "/api/v1/movies/":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        url = f"http://{environ.get('HTTP_HOST', 'localhost')}{path}"
        status, body, headers = listing(query, url)
    elif path == "/api/v1/changes/":
        status, body, headers = changes(parse_qs(environ.get("QUERY_STRING", "")))
    else:
        status, body, headers = "404 Not Found", b'{"status":404}', []
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]
