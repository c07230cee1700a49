"""Page-number pagination that refuses bad paging parameters instead of guessing."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request

MAX_PAGE_SIZE = 100


def _positive_int(request: Request, name: str) -> int | None:
    """Read a query parameter that must be a whole number >= 1; 400 naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValidationError({name: [f"Must be a whole number of at least 1, got {raw!r}."]})
    return int(raw)


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's `count/next/previous/results` pages; `page` >= 1, `page_size` 1..100."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        """Return the requested page size, refusing values over the maximum."""
        size = _positive_int(request, self.page_size_query_param)
        if size is None:
            return self.page_size
        if size > self.max_page_size:
            raise ValidationError({"page_size": [f"Must be at most {self.max_page_size}, got {size}."]})
        return size

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        """Validate `page` before paginating; a page past the end is a 404."""
        _positive_int(request, self.page_query_param)
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise NotFound("That page is past the last page of results.") from exc
