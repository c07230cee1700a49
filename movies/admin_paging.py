"""Constant-cost admin changelists on large tables: estimated counts instead of an exact COUNT(*)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

ESTIMATE_ABOVE = 10_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ESTIMATE_ABOVE rows; beyond that, the planner's estimate for the table.

    An exact count(*) over a million movies costs tens of milliseconds on every changelist page.
    """

    @cached_property
    def count(self) -> int:
        """Exact when small, estimated when large."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        capped = queryset.order_by()[: ESTIMATE_ABOVE + 1].count()
        if capped <= ESTIMATE_ABOVE or queryset.query.where:
            return capped
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
            )
            row = cursor.fetchone()
        return max(capped, int(row[0]) if row else 0)


# Fast path: admin estimated counts.
# Replaces: the changelist's exact COUNT(*) over the table (estimated above 10,000 rows: not equal by design).
# Why: figure: none recorded.
# Equal: movies/tests/test_admin.py::test_changelist_queries_do_not_grow_with_the_page
# Off: drop FastListMixin from the admins' bases.
class FastListMixin:
    """Constant-cost changelists on large tables."""

    paginator: type[Paginator] = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
