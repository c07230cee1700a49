"""`GET changes/`: the change feed, every committed change of a movie exactly once (docs/change-feed.md).

A plain APIView: no queryset, no paginator, no FilterSet. The page is one statement (selectors.change_feed_page);
positions and cursors are movies/changes.py.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from movieapi.errors import unknown_names_errors
from movies import selectors
from movies.changes import (
    CURSOR_PATTERN,
    FEED_DEFAULT_LIMIT,
    FEED_MAX_LIMIT,
    NOW,
    START,
    FeedPosition,
    decode_cursor,
    encode_cursor,
    entry_json,
)
from movies.models import MovieVersion

FEED_PARAMETERS = ("after", "limit")
BAD_CURSOR = "Not a cursor of this feed: send a `next` from an earlier answer unchanged, `now`, or no `after` at all."


class FeedChangeSerializer(serializers.Serializer):
    """One change: the movie, the version it reached, and how."""

    movie = serializers.IntegerField(help_text="The movie's id (it may since have been deleted).")
    version = serializers.IntegerField(min_value=1, help_text="The movie's version this change made.")
    kind = serializers.ChoiceField(choices=MovieVersion.Kind.choices)
    at = serializers.DateTimeField(help_text="When the change was written.")


class FeedPageSerializer(serializers.Serializer):
    """A page of the feed and the cursor after it."""

    results = FeedChangeSerializer(many=True)
    next = serializers.CharField(
        help_text="Send it as `after` for the next page; on an empty page, the cursor that was sent (call again later)."
    )


AFTER = OpenApiParameter(
    "after",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    pattern=f"^({NOW}|{CURSOR_PATTERN.strip('^$')})$",
    allow_blank=False,
    description=(
        "The `next` of the previous page (opaque), or `now` for the feed's present (start after a full read of the "
        "catalogue). Without it the feed starts at its beginning. A cursor behind purged history is 410."
    ),
)
LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": FEED_MAX_LIMIT, "default": FEED_DEFAULT_LIMIT},
    OpenApiParameter.QUERY,
    description=f"Changes per page, 1 to {FEED_MAX_LIMIT} (default {FEED_DEFAULT_LIMIT}).",
)


class ChangeFeedView(APIView):
    """The change feed: every committed change of a movie, once, in the order of the transactions that wrote it."""

    # Public, and no model to ask permissions of: the default (model permissions for writes) would fail on any other
    # method instead of answering 405.
    permission_classes = [AllowAny]
    extra_problem_codes = {"GET": ("410",)}

    @extend_schema(
        summary="Changes to movies, in order (follow `next`)",
        description=(
            "Every committed change exactly once, never a rolled-back one; a change is served once every transaction "
            "that started before it has ended, so a long transaction delays the feed. An empty page: nothing new "
            "yet, call again with the same cursor. 410: history after the cursor was purged; re-sync."
        ),
        parameters=[AFTER, LIMIT],
        responses={200: FeedPageSerializer},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One page after `after` (or the present's cursor for `after=now`)."""
        after, limit = _feed_query(request)
        if after is None:
            return Response({"results": [], "next": encode_cursor(selectors.change_feed_now())})
        page = selectors.change_feed_page(after=after, limit=limit)
        return Response({"results": [entry_json(entry) for entry in page.entries], "next": encode_cursor(page.next)})


def _feed_query(request: Request) -> tuple[FeedPosition | None, int]:
    """The position to read after (None: `now`) and the limit; 400 naming every bad parameter."""
    params = request.query_params
    errors: dict[str, list[str]] = {}
    unknown = [name for name in params if name not in FEED_PARAMETERS]
    if unknown:
        message = f"Unknown query parameter. Known: {', '.join(FEED_PARAMETERS)}."
        errors.update(unknown_names_errors(unknown, message, what="query parameters"))
    for name in FEED_PARAMETERS:
        if len(params.getlist(name)) > 1:
            errors[name] = ["Given more than once; send it once."]
    limit = FEED_DEFAULT_LIMIT
    raw_limit = params.get("limit")
    if raw_limit is not None and "limit" not in errors:
        digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= len(str(FEED_MAX_LIMIT))
        if digits and 1 <= int(raw_limit) <= FEED_MAX_LIMIT:
            limit = int(raw_limit)
        else:
            errors["limit"] = [f"Must be a whole number from 1 to {FEED_MAX_LIMIT}, got {raw_limit!r}."]
    after: FeedPosition | None = START
    raw_after = params.get("after")
    if raw_after is not None and "after" not in errors:
        if raw_after == NOW:
            after = None
        else:
            try:
                after = decode_cursor(raw_after)
            except ValueError:
                errors["after"] = [BAD_CURSOR]
    if errors:
        raise ValidationError(errors)
    return after, limit
