"""Thin ViewSets: querysets from selectors, writes through serializers and services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from movieapi.filtersets import CachedFormMixin
from movieapi.idempotency import IdempotentCreateMixin
from movieapi.lists import PlannedListMixin
from movieapi.pagination import ListPlan, MoviePagination
from movieapi.preconditions import IF_MATCH, IF_NONE_MATCH, ConditionalRequestMixin
from movies import selectors, services
from movies.errors import VersionConflict
from movies.filters import (
    GenreFilterSet,
    MovieFilterSet,
    PagingOnlyFilterSet,
    PersonFilterSet,
    has_list_parameters,
    unfiltered,
)
from movies.history_views import conflict_problem, conflicts_explained
from movies.models import Genre, Movie, Person, Rating
from movies.representation import movie_representation
from movies.serializers import (
    GenreSerializer,
    MovieRef,
    MovieSerializer,
    MovieWriteSerializer,
    PersonDetailSerializer,
    PersonSerializer,
    RatingSerializer,
    RatingWriteSerializer,
)
from movies.sql import MovieRow
from movies.versions import Actor


class MovieFilters(CachedFormMixin, MovieFilterSet):
    """MovieFilterSet with its form class built once per process (movieapi.filtersets)."""


class PersonFilters(CachedFormMixin, PersonFilterSet):
    """PersonFilterSet with its form class built once per process."""


class GenreFilters(CachedFormMixin, GenreFilterSet):
    """GenreFilterSet with its form class built once per process."""


class PagingOnlyFilters(CachedFormMixin, PagingOnlyFilterSet):
    """PagingOnlyFilterSet with its form class built once per process."""


class MoviePages(MoviePagination):
    """Movie pages whose rows come back already represented: the page's ids, then one prepared statement."""

    def paginate_plan(self, plan: ListPlan, request: Request, view: Any = None) -> list[Any]:
        """The page, its ids' statement compiled once for the page and the count's estimate alike."""
        return super().paginate_plan(selectors.with_ids_compiled(plan), request, view)

    def page_rows(self, plan: ListPlan, offset: int, limit: int) -> list[Any]:
        """The page's movies as `movie_representation` dicts (selectors.movie_page)."""
        return [movie_representation(row) for row in selectors.movie_page(plan, offset, limit)]


class LocationOnCreateMixin:
    """201 answers carry the new resource's URL in Location."""

    basename: str

    def get_success_headers(self, data: Any) -> dict[str, str]:
        """Location of the created resource."""
        request: Request = self.request  # type: ignore[attr-defined]
        return {"Location": request.build_absolute_uri(reverse(f"{self.basename}-detail", args=[data["id"]]))}


def _movie_id(kwargs: dict[str, Any]) -> int:
    raw = str(kwargs.get("pk", ""))
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound("No such movie.")
    return int(raw)


# The operations' descriptions are the API's (the OpenAPI schema): the hooks' docstrings are for developers.
@extend_schema_view(
    list=extend_schema(summary="List movies"),
    retrieve=extend_schema(
        summary="A movie",
        description=(
            "One movie with a strong ETag; If-None-Match with it gives 304, a failing If-Match 412 (GET and HEAD)."
        ),
        parameters=[IF_MATCH, IF_NONE_MATCH],
        responses={200: MovieSerializer, 304: OpenApiResponse(description="Not modified")},
    ),
    create=extend_schema(
        summary="Create a movie (curators)",
        description="Create a movie; 201 with Location and ETag. Safe to retry with an Idempotency-Key.",
        request=MovieWriteSerializer,
        responses={201: MovieSerializer},
    ),
    update=extend_schema(
        summary="Replace a movie (curators; needs `version` or If-Match)",
        description="PUT or PATCH based on `version` or If-Match: 428 without either, 409 / 412 when stale.",
        parameters=[IF_MATCH, IF_NONE_MATCH],
        request=MovieWriteSerializer,
        responses={200: MovieSerializer},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a movie (curators; needs `version` or If-Match)",
        parameters=[IF_MATCH, IF_NONE_MATCH],
        request=MovieWriteSerializer,
        responses={200: MovieSerializer},
    ),
    destroy=extend_schema(
        summary="Delete a movie (curators; If-Match optional)",
        description="Delete a movie; If-Match (`*`: whatever its version) or If-None-Match make it conditional.",
        parameters=[IF_MATCH, IF_NONE_MATCH],
    ),
)
class MovieViewSet(
    IdempotentCreateMixin, PlannedListMixin, ConditionalRequestMixin, LocationOnCreateMixin, viewsets.ModelViewSet
):
    """Movies: anyone reads, curators write; PUT and PATCH are versioned (optimistic concurrency)."""

    # (The docstring above is the API's: OPTIONS and the OpenAPI schema show it.) DRF's actions run on DRF's hooks:
    # `get_object` gives a read the movie's representation row and a write its id (`MovieRef`); `perform_update`
    # saves with `expected_version` when If-Match names one; the write serializer returns the written row, which its
    # `to_representation` shows. ETags and conditions: ConditionalRequestMixin (movieapi/preconditions.py).

    queryset = Movie.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = MovieSerializer
    filterset_class = MovieFilters
    locked_row: MovieRow | None = None  # the row a write's If-Match was evaluated on (get_locked_object)
    pagination_class = MoviePages
    # A conditional GET (the detail; keyed by method, so the list is said to answer them too) answers 400 for a
    # malformed If-Match / If-None-Match and 412 for a failing If-Match; a DELETE 400 for a malformed one.
    extra_problem_codes = {
        "GET": ("400", "412"),
        "POST": ("409", "422"),
        "PUT": ("409", "412", "428"),
        "PATCH": ("409", "412", "428"),
        "DELETE": ("400", "409", "412"),
    }

    # No get_queryset: filters and pages need plain movies (their ids); representations come from the selectors'
    # prepared statements, so nothing builds the annotated queryset (DRF's permission check asks for it too).

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        """Writes take the write serializer; everything answers with the read serializer."""
        if self.action in {"create", "update", "partial_update"}:
            return MovieWriteSerializer
        return MovieSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        """Nothing: the movie serializers read neither the request nor the view. A serializer is a reference cycle with
        its fields, and holding them it would keep the whole request alive until the cycle collector ran (see
        movieapi.middleware.ReleaseViewMiddleware)."""
        return {}

    def get_object(self) -> MovieRow | MovieRef:
        """A read's representation row (404 if there is none); a write's movie by its id alone: its conditional
        statement finds out whether the movie exists, so a valid write is one round trip, not a read and a write."""
        if self.action not in {"retrieve", "update", "partial_update", "destroy"}:
            return super().get_object()  # OPTIONS: DRF's metadata describes PUT only for a movie that exists
        movie_id = _movie_id(self.kwargs)
        movie: MovieRow | MovieRef | None = MovieRef(id=movie_id)
        if self.action == "retrieve":
            movie = selectors.movie_detail(movie_id=movie_id)
        if movie is None:
            raise NotFound("No such movie: it may have been deleted.")
        self.check_object_permissions(self.request, movie)
        return movie

    def get_locked_object(self, instance: MovieRef) -> MovieRow:
        """The movie as it is now, its row locked until the transaction ends (404 if it is gone)."""
        services.movie_lock(movie_id=instance.id)
        row = selectors.movie_detail(movie_id=instance.id)
        assert row is not None  # locked above
        self.locked_row = row  # a 412's changes_since reads its rating
        return row

    def filter_plan(self, queryset: QuerySet[Any]) -> ListPlan:
        """The FilterSet's plan, skipped when the query has only paging parameters (nothing to validate)."""
        if not has_list_parameters(self.request.query_params):
            return ListPlan(unfiltered(queryset))
        return super().filter_plan(queryset)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of movies; `MoviePages` returns them already represented."""
        plan = self.filter_plan(self.get_queryset())
        return self.get_paginated_response(self.list_paginator.paginate_plan(plan, request, view=self))

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        """Save as the caller (the history records who wrote each version)."""
        serializer.save(actor=Actor.user(self.request.user))

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        """Save as the caller, based on the body's `version` (movie_update checks it: 409) or on the version If-Match
        names, checked with the movie locked until the write (412); a `version` in the body still wins."""
        if_match, if_none_match = self.request_preconditions()
        actor = Actor.user(self.request.user)
        movie = serializer.instance
        assert isinstance(movie, MovieRef)  # get_object's, for a write
        with conflicts_explained(self, movie_id=movie.id, based_on=serializer.validated_data.get("version")):
            try:
                if if_match is None and if_none_match is None:
                    serializer.save(actor=actor)
                else:
                    with transaction.atomic():
                        serializer.save(expected_version=self.check_preconditions(serializer.instance), actor=actor)
            except VersionConflict as conflict:
                raise conflict_problem(conflict, self) from conflict

    def perform_destroy(self, instance: MovieRef) -> None:
        """Delete through the service; If-Match (`*`: whatever its version) or If-None-Match make it conditional."""
        if_match, if_none_match = self.request_preconditions()
        with conflicts_explained(self, movie_id=instance.id, based_on=None), transaction.atomic():
            expected = None
            if if_match is not None or if_none_match is not None:
                # The row stays locked until the delete: the version the preconditions passed on is still current.
                expected = self.check_preconditions(instance)
            services.movie_delete(movie_id=instance.id, expected_version=expected, actor=Actor.user(self.request.user))

    def handle_exception(self, exc: Exception) -> Response:
        """A refused write body on a missing movie is 404, as DRF's get_object would have answered before validating.
        A write's get_object does not read the movie (its conditional UPDATE answers 404 or 409 when it changes
        nothing), so only a refused body pays for this read."""
        if (
            isinstance(exc, ValidationError)
            and self.action in {"update", "partial_update"}
            and selectors.movie_version(movie_id=_movie_id(self.kwargs)) is None
        ):
            exc = NotFound("No such movie.")
        return super().handle_exception(exc)


class GenreViewSet(IdempotentCreateMixin, PlannedListMixin, LocationOnCreateMixin, viewsets.ModelViewSet):
    """Genres: anyone reads (and searches), curators write; a genre in use cannot be deleted (409)."""

    queryset = Genre.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = GenreSerializer
    filterset_class = GenreFilters
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    extra_problem_codes = {"POST": ("409", "422"), "DELETE": ("409",)}

    def get_queryset(self) -> Any:
        """Genres by slug."""
        return selectors.genre_queryset()

    def perform_destroy(self, instance: Genre) -> None:
        """Delete through the service, which refuses genres still in use."""
        services.genre_delete(genre=instance)


@extend_schema_view(retrieve=extend_schema(responses={200: PersonDetailSerializer}))
class PersonViewSet(IdempotentCreateMixin, PlannedListMixin, LocationOnCreateMixin, viewsets.ModelViewSet):
    """People: anyone reads and searches (the detail lists their films), curators write."""

    queryset = Person.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = PersonSerializer
    filterset_class = PersonFilters
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    extra_problem_codes = {"POST": ("409", "422"), "DELETE": ("409",)}

    def get_queryset(self) -> Any:
        """The detail prefetches films; the list does not need them."""
        if self.action == "retrieve":
            return selectors.person_with_films()
        return selectors.person_queryset()

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        """The detail shows films."""
        return PersonDetailSerializer if self.action == "retrieve" else PersonSerializer

    def perform_destroy(self, instance: Person) -> None:
        """Delete through the service, which refuses people still credited."""
        services.person_delete(person=instance)


def _caller(request: Request) -> AbstractBaseUser:
    """The authenticated user; IsAuthenticated has already refused anonymous requests."""
    user = request.user
    assert isinstance(user, AbstractBaseUser)
    return user


MOVIE_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The movie's id.")


class RatingView(APIView):
    """The caller's own rating of one movie: there is no URL for anyone else's."""

    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Your rating of a movie", parameters=[MOVIE_ID], responses={200: RatingSerializer})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The caller's rating; 404 if they have not rated the movie (or it does not exist)."""
        movie_id = _movie_id(kwargs)
        rating = selectors.rating_queryset(user_id=_caller(request).pk).filter(movie_id=movie_id).first()
        if rating is None:
            if not Movie.objects.filter(pk=movie_id).exists():
                raise NotFound("No such movie.")
            raise NotFound('You have not rated this movie. PUT {"score": 1..10} here to rate it.')
        return Response(RatingSerializer(rating).data)

    @extend_schema(
        summary="Rate a movie, or change your rating",
        parameters=[MOVIE_ID],
        request=RatingWriteSerializer,
        responses={200: RatingSerializer, 201: RatingSerializer},
    )
    def put(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Set the caller's score: 201 when it creates the rating, 200 when it changes (or repeats) it."""
        movie_id = _movie_id(kwargs)
        serializer = RatingWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rating, created = services.rating_set(
            user=_caller(request), movie_id=movie_id, score=serializer.validated_data["score"]
        )
        if created:
            return Response(
                RatingSerializer(rating).data,
                status=status.HTTP_201_CREATED,
                headers={"Location": request.build_absolute_uri(request.path)},
            )
        return Response(RatingSerializer(rating).data)

    @extend_schema(
        summary="Withdraw your rating",
        parameters=[MOVIE_ID],
        responses={204: OpenApiResponse(description="Rating deleted")},
    )
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the caller's rating; 404 if there is none."""
        services.rating_delete(user=_caller(request), movie_id=_movie_id(kwargs))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(get=extend_schema(summary="Your ratings, most recently set first"))
class MyRatingsView(generics.ListAPIView):
    """The caller's ratings, paginated, each with its movie's id and title."""

    permission_classes = [IsAuthenticated]
    serializer_class = RatingSerializer
    filterset_class = PagingOnlyFilters  # nothing to filter by, but an unknown parameter is a 400

    def get_queryset(self) -> Any:
        """Only the caller's own ratings (none while the schema is generated: there is no caller then)."""
        if getattr(self, "swagger_fake_view", False):
            return Rating.objects.none()
        return selectors.rating_queryset(user_id=_caller(self.request).pk)
