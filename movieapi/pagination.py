"""Page-number pagination that refuses bad paging parameters and stays cheap on a million rows.

Three decisions (docs/search.md, "Paging and counts"):

- Rows: the page is found by a *deferred join*: `WHERE id IN (SELECT id ... ORDER BY ... LIMIT n OFFSET o)`.
  The inner query walks only an index (an index-only scan on the `(key, id)` btree), so a deep page skips
  index entries rather than whole rows, and the expensive per-row work (genres, cast, …) is done for the
  page's rows only. With filters the ids are fetched first and the rows by primary key, so the filters are
  never evaluated twice over the whole table.
- `next`: one row more than the page is fetched, so `next` is exact even when `count` is an estimate.
- `count`: exact whenever it is free (the last page tells it) or cheap (at most EXACT_COUNT_LIMIT matches:
  counted with a LIMIT); otherwise PostgreSQL's estimate (`pg_class.reltuples` for an unfiltered list, the
  planner's row estimate for a filtered one) and `"count_is_estimate": true`. Movie lists ask the planner
  first (`MoviePagination`), see `cheap_count`.

What the list's filter step learned travels to the paginator as a `ListPlan` value (the queryset, a known count,
whether it is an estimate, whether only an estimate is cheap, the ids' SQL): the view's `list` hands it to
`paginate_plan` (movieapi/filtersets.py draws the flow). DRF's `paginate_queryset` still takes a bare queryset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import QuerySet, Subquery
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_PAGE_SIZE = 100
# `page` and `page_size` have at most 9 digits: a bound that no int conversion or OFFSET overflows.
MAX_PAGE_NUMBER = 999_999_999
# Up to this many matches, `count` is exact (a LIMITed count costs well under a millisecond).
EXACT_COUNT_LIMIT = 1000
# Table-size estimates are reused for this long within a worker: they drift slowly and are flagged anyway.
ESTIMATE_TTL_SECONDS = 10.0

_table_estimates: dict[tuple[str, str], tuple[float, int]] = {}
# The planner's estimates of filtered lists, reused for as long and keyed by the statement and its parameters:
# every page of one filter asks the same question. Bounded: the oldest half goes when it is full.
_planner_estimates: dict[tuple[str, str, str], tuple[float, int]] = {}
PLANNER_ESTIMATES_KEPT = 1024


@dataclass(frozen=True, slots=True)
class ListPlan:
    """A list's filtered, ordered queryset and what the filter step learned about it, for the paginator.

    The filter step (a FilterSet's `filter_plan`, through `ListPlanFilterBackend`) builds it; the view's `list`
    hands it to `paginate_plan`. A value, not marks on the queryset: a clone of the queryset carries none of it.
    """

    queryset: QuerySet[Any]
    # Constant SQL (and its parameters) that gives the queryset's ids in its order, unlimited: a page can be sent as
    # one prepared statement around it instead of compiling the queryset (a ranked search's candidates).
    page_ids_sql: tuple[str, list[Any]] | None = None
    # The queryset's ids statement (ordered or not, unlimited) as compiled already, for `planner_estimate` to
    # explain instead of compiling the queryset again.
    ids_sql: tuple[str, Any] | None = None
    # The number of matches when the filter step found it (a search's probe): no count is run.
    known_count: int | None = None
    # The known count is of the candidates that are ranked, fewer than the matches: `count_is_estimate`, even on the
    # last page.
    known_count_is_estimate: bool = False
    # Counting exactly is never cheap, however few the matches (every match costs a recheck: a trigram title
    # search, where counting even 68 matches of `crimsn moon` walks the trigram index, 30-70 ms on a million
    # movies, more than the page): a page that is not the last gives the planner's estimate.
    count_by_estimate: bool = False


def _positive_int(request: Request, name: str) -> int | None:
    """Read a query parameter that must be a whole number from 1 to MAX_PAGE_NUMBER; 400 naming it otherwise."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValidationError({name: ["Given more than once; send it once."]})
    raw = values[0]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise ValidationError({name: [f"Must be a whole number between 1 and {MAX_PAGE_NUMBER}, got {raw!r}."]})
    return int(raw)


def _reused(cache: dict[Any, tuple[float, int]], key: Any, ask: Callable[[], int], *, kept: int | None = None) -> int:
    """The cached estimate for key if younger than ESTIMATE_TTL_SECONDS, else ask() again and keep its answer
    (with `kept`, the oldest half of the cache goes first once it holds that many)."""
    now = time.monotonic()
    cached = cache.get(key)
    if cached is not None and now - cached[0] < ESTIMATE_TTL_SECONDS:
        return cached[1]
    estimate = ask()
    if kept is not None and len(cache) >= kept:
        for old_key in list(cache)[: kept // 2]:  # insertion order: oldest first
            del cache[old_key]
    cache[key] = (now, estimate)
    return estimate


def table_estimate(queryset: QuerySet[Any]) -> int:
    """PostgreSQL's row estimate for the queryset's table (-1 if never analysed), cached briefly per worker."""
    table = queryset.model._meta.db_table

    def ask() -> int:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
            row = cursor.fetchone()
        return int(row[0]) if row else -1

    return _reused(_table_estimates, (queryset.db, table), ask)


def planner_estimate(plan: ListPlan) -> int:
    """The planner's estimate of how many rows the plan's queryset matches (EXPLAIN, nothing is executed), cached
    briefly per worker by statement and parameters. The plan's `ids_sql`, when it has one, is explained as it is
    instead of compiling the queryset again: an ORDER BY changes the plan, not its row estimate."""
    queryset = plan.queryset
    sql, params = plan.ids_sql or queryset.order_by().values("pk").query.sql_with_params()

    def ask() -> int:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan_json = cursor.fetchone()[0]
        if isinstance(plan_json, str | bytes):
            plan_json = json.loads(plan_json)
        return int(plan_json[0]["Plan"]["Plan Rows"])

    return _reused(_planner_estimates, (queryset.db, sql, repr(params)), ask, kept=PLANNER_ESTIMATES_KEPT)


def cheap_count(plan: ListPlan, *, at_least: int, estimate_first: bool = False) -> tuple[int, bool]:
    """(count, is_estimate): exact up to EXACT_COUNT_LIMIT, PostgreSQL's estimate (never below at_least) above.

    A count the plan knows is taken as it is. With estimate_first, a filtered queryset asks the planner first:
    counting even 1,000 matches of a broad movie filter costs 10-30 ms on a million movies, more than the page; a
    low estimate is then checked by an exact count that stops at the limit. Without it (small filtered sets, like
    one user's ratings) the capped count comes first and the planner is asked only above the limit.
    """
    if plan.known_count is not None:
        return max(plan.known_count, at_least), plan.known_count_is_estimate
    queryset = plan.queryset
    if not queryset.query.where:
        estimate = table_estimate(queryset)
        if estimate > EXACT_COUNT_LIMIT:
            return max(estimate, at_least), True
    if plan.count_by_estimate:
        return max(planner_estimate(plan), at_least), True
    estimate = planner_estimate(plan) if queryset.query.where and estimate_first else -1
    if estimate <= EXACT_COUNT_LIMIT:
        exact = queryset.order_by().values("pk")[: EXACT_COUNT_LIMIT + 1].count()
        if exact <= EXACT_COUNT_LIMIT:
            return exact, False
        if not estimate_first and queryset.query.where:
            estimate = planner_estimate(plan)
        estimate = max(estimate, exact)
    return max(estimate, at_least), True


def page_rows(queryset: QuerySet[Any], offset: int, limit: int) -> list[Any]:
    """Rows offset..offset+limit of the ordered queryset, found through an index-only deferred join."""
    ids = queryset.values("pk")[offset : offset + limit]
    if not queryset.query.where:
        return list(queryset.filter(pk__in=Subquery(ids)))
    # Filtered: fetch the ids first, then the rows by primary key; the filters run once, in the first query.
    id_list = [row["pk"] for row in ids]
    if not id_list:
        return []
    return list(queryset.filter(pk__in=id_list))


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's `count/next/previous/results` pages plus `count_is_estimate`; `page` >= 1, `page_size` 1..100."""

    page_size = 20
    page_size_query_param = "page_size"
    page_query_description = "A page number; a page past the last page of results is 404."
    page_size_query_description = f"Results per page, 1 to {MAX_PAGE_SIZE} (default 20)."
    max_page_size = MAX_PAGE_SIZE
    # See cheap_count: True for lists whose filters can match a large share of a big table.
    estimate_first = False

    number: int
    count: int
    count_is_estimate: bool
    has_next: bool

    def get_page_size(self, request: Request) -> int:
        """Return the requested page size, refusing values over the maximum."""
        size = _positive_int(request, self.page_size_query_param)
        if size is None:
            return self.page_size
        if size > self.max_page_size:
            raise ValidationError({"page_size": [f"Must be at most {self.max_page_size}, got {size}."]})
        return size

    def page_rows(self, plan: ListPlan, offset: int, limit: int) -> list[Any]:
        """Rows offset..offset+limit of the plan's ordered queryset (a subclass may return them already represented)."""
        return page_rows(plan.queryset, offset, limit)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        """DRF's hook, for a list whose filter step learned nothing beside its queryset (`paginate_plan`)."""
        return self.paginate_plan(ListPlan(queryset), request, view)

    def paginate_plan(self, plan: ListPlan, request: Request, view: Any = None) -> list[Any]:
        """One page by deferred join, with a cheap count; a page past the end is a 404."""
        self.request = request
        size = self.get_page_size(request)
        self.number = _positive_int(request, self.page_query_param) or 1
        offset = (self.number - 1) * size
        rows = self.page_rows(plan, offset, size + 1)
        self.has_next = len(rows) > size
        rows = rows[:size]
        if not rows and self.number > 1:
            raise NotFound("That page is past the last page of results.")
        if not self.has_next:
            # The last page tells the count, unless the rows are a bounded part of the matches (a broad search).
            self.count, self.count_is_estimate = offset + len(rows), plan.known_count_is_estimate
        else:
            self.count, self.count_is_estimate = cheap_count(
                plan, at_least=offset + len(rows) + 1, estimate_first=self.estimate_first
            )
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        """The page with `count`, `count_is_estimate`, `next` and `previous`."""
        return Response(
            {
                "count": self.count,
                "count_is_estimate": self.count_is_estimate,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_next_link(self) -> str | None:
        """The next page's URL, exact even when the count is an estimate (one extra row was fetched)."""
        if not self.has_next or self.request is None:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.page_query_param, self.number + 1)

    def get_previous_link(self) -> str | None:
        """The previous page's URL; page 1 is linked without a `page` parameter."""
        if self.number <= 1 or self.request is None:
            return None
        url = self.request.build_absolute_uri()
        if self.number == 2:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, self.number - 1)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """DRF's `page` and `page_size` parameters with the bounds `_positive_int` and `get_page_size` check."""
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {self.page_query_param: MAX_PAGE_NUMBER, self.page_size_query_param: self.max_page_size}
        for parameter in parameters:
            parameter["schema"].update(minimum=1, maximum=bounds[parameter["name"]])
        return parameters

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """DRF's page schema plus `count_is_estimate`."""
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["count_is_estimate"] = {
            "type": "boolean",
            "description": (
                "True when `count` is not the exact number of matches: PostgreSQL's estimate (more than 1000 "
                "matches), or a ranked search that matches more than 1000 movies and returns its first 1000."
            ),
            "example": False,
        }
        paginated["required"] = [*paginated.get("required", ["count", "results"]), "count_is_estimate"]
        return paginated


class MoviePagination(PageNumberPagination):
    """Movie lists: broad filters over a million movies, so the planner's estimate is asked first."""

    estimate_first = True
