"""A movie's history for curators (docs/history.md): its versions with what each changed, one version as it was,
the revert, and the `changes_since` that explains a movie's 409 and 412 answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from movieapi.errors import (
    PreconditionFailed,
    PreconditionRequired,
    ProblemError,
    VersionConflictProblem,
    problem_for,
)
from movieapi.filtersets import CachedFormMixin
from movieapi.pagination import ListPlan, PageNumberPagination
from movieapi.preconditions import (
    ANY,
    ANY_NAMES_NO_VERSION,
    IF_MATCH,
    IF_NONE_MATCH,
    ConditionalRequestMixin,
    parse_entity_tags,
    representation_etag,
)
from movieapi.renderers import dumps
from movies import revert, selectors, services
from movies.errors import VersionConflict
from movies.filters import PagingOnlyFilterSet
from movies.history import VersionEntry, changes_since, history_entry, snapshot_representation
from movies.history_serializers import HistoryEntrySerializer, MovieSnapshotSerializer, RevertSerializer
from movies.models import MovieVersion
from movies.representation import movie_representation
from movies.serializers import MovieRef, MovieSerializer
from movies.sql import MovieRow
from movies.versions import Actor

# How many versions back an If-Match ETag is looked for, to say what changed since (412).
ETAG_LOOKBACK = 100

MOVIE_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The movie's id.")
VERSION = OpenApiParameter(
    "version", OpenApiTypes.INT, OpenApiParameter.PATH, description="A version of the movie (1 is its creation)."
)


def _path_int(kwargs: dict[str, Any], name: str, what: str) -> int:
    raw = str(kwargs.get(name, ""))
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"No such {what}.")
    return int(raw)


class IsCurator(BasePermission):
    """Curators only (the catalogue's change permission): anonymous callers 401, other users 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        """An authenticated user who may change movies."""
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("movies.change_movie"))


# ---- conflicts that explain themselves -------------------------------------------------------------------


def _version_named(entries: list[VersionEntry], if_match: str, current: MovieRow) -> int | None:
    """The version whose representation had an ETag that If-Match lists, when one of the entries (newest first) had:
    a representation is its snapshot with the rating of that moment, so a version is recognised only while the
    rating (and the names shown) are still what they were."""
    tags = parse_entity_tags("If-Match", if_match)
    if tags == ANY:
        return None
    wanted = {tag.opaque for tag in tags if not tag.weak}
    rating = movie_representation(current)["rating"]
    for entry in sorted(entries, key=lambda entry: entry.version, reverse=True):
        body = dumps(snapshot_representation(entry.snapshot, rating))
        if entry.kind != "deleted" and representation_etag(body) in wanted:
            return entry.version
    return None


def explain_conflict(
    problem: ProblemError, *, movie_id: int, based_on: int | None, if_match: str | None, current: MovieRow | None
) -> None:
    """Add `changes_since` to a movie's 409 or 412 problem: the changes after the version the write was based on, up
    to the current one, with who and when (one query, on this path only). A 412's version is the one its If-Match
    ETag named, found among the last ETAG_LOOKBACK versions; the body's `version` otherwise. Left out when not known."""
    current_version = problem.extra.get("current_version")
    if not isinstance(current_version, int):
        return
    if isinstance(problem, PreconditionFailed) and if_match is not None and current is not None:
        entries = selectors.movie_versions_between(
            movie_id=movie_id, first=current_version - ETAG_LOOKBACK, last=current_version
        )
        based_on = _version_named(entries, if_match, current) or based_on
    elif isinstance(problem, VersionConflictProblem) and based_on is not None and based_on < current_version:
        entries = selectors.movie_versions_between(movie_id=movie_id, first=based_on, last=current_version)
    else:
        return
    if based_on is None:
        return
    changes = changes_since(entries, based_on, current_version)
    if changes is not None:
        problem.extra["changes_since"] = changes


@contextlib.contextmanager
def conflicts_explained(
    view: Any, *, movie_id: int, based_on: int | None, current: MovieRow | None = None
) -> Iterator[None]:
    """Around a versioned write: a 409 or 412 problem raised inside leaves with `changes_since` (explain_conflict).
    The view's `locked_row` (the row its If-Match was evaluated on) gives a 412 the current rating."""
    try:
        yield
    except (VersionConflictProblem, PreconditionFailed) as problem:
        explain_conflict(
            problem,
            movie_id=movie_id,
            based_on=based_on,
            if_match=view.request.META.get("HTTP_IF_MATCH"),
            current=current or getattr(view, "locked_row", None),
        )
        raise


# ---- history ---------------------------------------------------------------------------------------------


class HistoryPagingFilters(CachedFormMixin, PagingOnlyFilterSet):
    """Paging only: any other parameter is a 400 naming it."""


class HistoryPages(PageNumberPagination):
    """History pages: each entry with its changes from the version before, which is read with the page (the row
    after the page's last), so a page is one query whatever its size."""

    def page_rows(self, plan: ListPlan, offset: int, limit: int) -> list[Any]:
        """Entries offset..offset+limit, newest first, each with its changes."""
        rows = selectors.version_entries(plan.queryset[offset : offset + limit + 1])
        return [
            history_entry(row, rows[index + 1] if index + 1 < len(rows) else None)
            for index, row in enumerate(rows[:limit])
        ]


@extend_schema(
    summary="A movie's history (curators)",
    description=(
        "The movie's versions, newest first: who wrote each (`by`), when (`at`) and what it changed from the version "
        "before (`changes`; version 1's are the values it was created with). A deleted movie's history stays, ending "
        "with a `deleted` entry; 404 when the movie has no recorded version."
    ),
    parameters=[MOVIE_ID],
)
class MovieHistoryView(generics.ListAPIView):
    """A movie's versions, newest first, each with what it changed."""

    permission_classes = [IsCurator]
    serializer_class = HistoryEntrySerializer
    pagination_class = HistoryPages
    filterset_class = HistoryPagingFilters
    extra_problem_codes = {"GET": ("403",)}

    def get_queryset(self) -> Any:
        """The movie's recorded versions, newest first."""
        if getattr(self, "swagger_fake_view", False):
            return MovieVersion.objects.none()
        return selectors.movie_history(movie_id=_path_int(self.kwargs, "pk", "movie"))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of entries; 404 when the movie has none."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        if not page:
            raise NotFound("No history for this movie: no version of it is recorded.")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MovieVersionView(generics.GenericAPIView):
    """One version of a movie, as it was."""

    permission_classes = [IsCurator]
    serializer_class = MovieSnapshotSerializer
    extra_problem_codes = {"GET": ("403",)}

    @extend_schema(
        summary="A movie as it was at one version (curators)",
        description="The Movie shape without `rating`, as recorded at that version; 404 for a version not recorded.",
        parameters=[MOVIE_ID, VERSION],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The snapshot of that version."""
        movie_id = _path_int(kwargs, "pk", "movie")
        version = _path_int(kwargs, "version", "version")
        snapshot = selectors.movie_version_snapshot(movie_id=movie_id, version=version)
        if snapshot is None:
            raise NotFound(f"No version {version} is recorded. Its history/ lists the versions there are.")
        return Response(snapshot_representation(snapshot))


class MovieRevertView(ConditionalRequestMixin, generics.GenericAPIView):
    """Revert a movie to an earlier version: a new version equal to that one (a versioned write)."""

    permission_classes = [IsCurator]
    serializer_class = MovieSerializer  # the answer's, and what its ETag digests
    action = "revert"
    etag_actions = frozenset({"revert"})
    extra_problem_codes = {"POST": ("403", "409", "412", "422", "428")}
    locked_row: MovieRow | None = None

    def get_serializer_context(self) -> dict[str, Any]:
        """Nothing: the movie serializer reads neither the request nor the view."""
        return {}

    def get_locked_object(self, instance: MovieRef) -> MovieRow:
        """The movie as it is now, its row locked until the transaction ends (404 if it is gone)."""
        services.movie_lock(movie_id=instance.id)
        row = selectors.movie_detail(movie_id=instance.id)
        assert row is not None  # locked above
        self.locked_row = row
        return row

    @extend_schema(
        summary="Revert a movie to an earlier version (curators; needs `version` or If-Match)",
        description=(
            "Writes a new version equal to `to_version` (title, year, runtime, overview, imdb_id, genres, directors, "
            "cast), based on `version` or If-Match as a PATCH is: 428 without either, 409 / 412 (with "
            "`changes_since`) when stale. 422 when `to_version` is not recorded or names genres or people deleted "
            "since (`errors` names them)."
        ),
        parameters=[MOVIE_ID, IF_MATCH, IF_NONE_MATCH],
        request=RevertSerializer,
        responses={200: MovieSerializer},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Revert through `revert.movie_revert` (services.movie_update); 200 with the movie and its new ETag."""
        movie_id = _path_int(kwargs, "pk", "movie")
        body = RevertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        to_version: int = body.validated_data["to_version"]
        version: int | None = body.validated_data.get("version")
        if_match, if_none_match = self.request_preconditions()
        if version is None and (if_match is None or if_match.strip(" \t") == ANY):
            raise PreconditionRequired(None if if_match is None else ANY_NAMES_NO_VERSION)
        with conflicts_explained(self, movie_id=movie_id, based_on=version), transaction.atomic():
            expected = version
            if if_match is not None or if_none_match is not None:
                locked = self.check_preconditions(MovieRef(id=movie_id))
                expected = locked if expected is None else expected
            assert expected is not None
            try:
                written = revert.movie_revert(
                    movie_id=movie_id,
                    to_version=to_version,
                    expected_version=expected,
                    actor=Actor.user(request.user),
                )
            except VersionConflict as conflict:
                raise conflict_problem(conflict, self) from conflict
        row = written.row or selectors.movie_detail(movie_id=movie_id)
        if row is None:
            raise NotFound("No such movie: it may have been deleted.")
        response = Response(movie_representation(row))
        self.with_etag(response)
        return response


def conflict_problem(conflict: VersionConflict, view: ConditionalRequestMixin) -> ProblemError:
    """A VersionConflict as the API's 409, with the current ETag beside the current version."""
    problem = problem_for(conflict)
    assert isinstance(problem, ProblemError)
    if conflict.current_row is not None:
        problem.headers["ETag"] = view.etag_of(conflict.current_row)
    return problem
