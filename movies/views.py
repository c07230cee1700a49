"""Thin ViewSets: querysets from selectors, writes through serializers and services."""

from __future__ import annotations

import hashlib
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

from movieapi.errors import PreconditionFailed, PreconditionRequired, VersionConflict
from movieapi.filtersets import CachedFormMixin
from movieapi.pagination import MoviePagination
from movieapi.preconditions import (
    ANY,
    ENTITY_TAG_LIST_PATTERN,
    only_weak_match,
    parse_entity_tags,
    strong_match,
    weak_match,
)
from movieapi.renderers import ORJSONRenderer, dumps
from movies import selectors, services
from movies.filters import (
    GenreFilterSet,
    MovieFilterSet,
    PagingOnlyFilterSet,
    PersonFilterSet,
    has_list_parameters,
    unfiltered,
)
from movies.models import Genre, Movie, Person, Rating
from movies.serializers import (
    GenreSerializer,
    MovieSerializer,
    MovieWriteSerializer,
    PersonDetailSerializer,
    PersonSerializer,
    RatingSerializer,
    RatingWriteSerializer,
    movie_representation,
)
from movies.sql import MovieRow

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    pattern=ENTITY_TAG_LIST_PATTERN,
    description=(
        "The movie's ETag, or a comma-separated list of them (RFC 9110, strong comparison: a W/ tag never matches); "
        "the request is carried out only if one is current, else 412 with the current ETag. `*` names no version: "
        "on PUT and PATCH it is 428 unless the body has `version`. A value that is not an entity-tag list is 400."
    ),
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    pattern=ENTITY_TAG_LIST_PATTERN,
    description=(
        'ETags you hold (RFC 9110, weak comparison: W/"x" matches "x"; `*` matches any): 304 if one is '
        "current. A value that is not an entity-tag list is 400."
    ),
)
ETAG_HEADER = {"ETag": OpenApiResponse(description="Strong ETag of this representation.")}


def representation_etag(body: bytes) -> str:
    """A strong ETag: a digest of the JSON body, so it changes whenever the body does."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def rendered_response(body: bytes, status_code: int, headers: dict[str, str]) -> Response:
    """A DRF Response whose JSON body is already encoded: setting `content` marks it rendered, so DRF's renderer
    (which would only encode it again) is skipped. Content negotiation has run as for any response."""
    response = Response(status=status_code, headers={"Content-Type": ORJSONRenderer.media_type, **headers})
    response.content = body
    return response


class MovieFilters(CachedFormMixin, MovieFilterSet):
    """MovieFilterSet with its form class built once per process (movieapi.filtersets)."""


class PersonFilters(CachedFormMixin, PersonFilterSet):
    """PersonFilterSet with its form class built once per process."""


class GenreFilters(CachedFormMixin, GenreFilterSet):
    """GenreFilterSet with its form class built once per process."""


class PagingOnlyFilters(CachedFormMixin, PagingOnlyFilterSet):
    """PagingOnlyFilterSet with its form class built once per process."""


class ListParametersMixin:
    """A list's query parameters (its FilterSet's) apply to the list only: a detail, PATCH or DELETE names its
    object by id, and a `search` there would turn it into a 404."""

    action: str

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The FilterSet's work on the list; the queryset as it is otherwise."""
        if self.action != "list":
            return queryset
        filtered: QuerySet[Any] = super().filter_queryset(queryset)  # type: ignore[misc]
        return filtered


class MoviePages(MoviePagination):
    """Movie pages whose rows come back already represented: the page's ids, then one prepared statement."""

    def page_rows(self, queryset: QuerySet[Any], offset: int, limit: int) -> list[Any]:
        """The page's movies as `movie_representation` dicts (selectors.movie_page)."""
        return [movie_representation(row) for row in selectors.movie_page(queryset, offset, limit)]


def _movie_id(kwargs: dict[str, Any]) -> int:
    raw = str(kwargs.get("pk", ""))
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound("No such movie.")
    return int(raw)


@extend_schema_view(
    list=extend_schema(summary="List movies"),
    retrieve=extend_schema(
        summary="A movie",
        parameters=[IF_MATCH, IF_NONE_MATCH],
        responses={200: MovieSerializer, 304: OpenApiResponse(description="Not modified")},
    ),
    create=extend_schema(
        summary="Create a movie (curators)", request=MovieWriteSerializer, responses={201: MovieSerializer}
    ),
    update=extend_schema(
        summary="Replace a movie (curators; needs `version` or If-Match)",
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
    destroy=extend_schema(summary="Delete a movie (curators; If-Match optional)", parameters=[IF_MATCH, IF_NONE_MATCH]),
)
class MovieViewSet(viewsets.ModelViewSet):
    """Movies: anyone reads, curators write; PUT and PATCH are versioned (optimistic concurrency)."""

    queryset = Movie.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = MovieSerializer
    filterset_class = MovieFilters
    pagination_class = MoviePages
    # A conditional GET (the detail; keyed by method, so the list is said to answer them too) answers 400 for a
    # malformed If-Match / If-None-Match and 412 for a failing If-Match; a DELETE 400 for a malformed one.
    extra_problem_codes = {
        "GET": ("400", "412"),
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

    def _represent(
        self, movie_id: int, status_code: int = status.HTTP_200_OK, row: MovieRow | None = None, **headers: str
    ) -> Response:
        """The movie's representation (row: one already read, e.g. by the write itself) with its ETag."""
        if row is None:
            row = selectors.movie_detail(movie_id=movie_id)
        if row is None:
            raise NotFound("No such movie: it may have been deleted.")
        # Encoded once, here: the ETag is the digest of these bytes, and they are the body as they are.
        body = dumps(movie_representation(row))
        return rendered_response(body, status_code, {"ETag": representation_etag(body), **headers})

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The FilterSet's work, skipped when the query has only paging parameters (nothing to validate)."""
        if not has_list_parameters(self.request.query_params):
            return unfiltered(queryset)
        filtered: QuerySet[Any] = super().filter_queryset(queryset)
        return filtered

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of movies; `MoviePages` returns them already represented."""
        queryset = self.filter_queryset(self.get_queryset())
        return self.get_paginated_response(self.paginate_queryset(queryset))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One movie with a strong ETag; If-None-Match with it gives 304, a failing If-Match 412 (GET and HEAD)."""
        movie_id = _movie_id(kwargs)
        row = selectors.movie_detail(movie_id=movie_id)
        if row is None:
            raise NotFound("No such movie: it may have been deleted.")
        response = self._represent(movie_id, row=row)
        meta = request.META  # request.headers would build the whole header map
        if_match, if_none_match = meta.get("HTTP_IF_MATCH"), meta.get("HTTP_IF_NONE_MATCH")
        if if_match is None and if_none_match is None:
            return response
        etag = response["ETag"]
        if evaluate_preconditions(if_match, if_none_match, etag, row.version, safe=True):
            # RFC 9110 15.4.5: the ETag the 200 would carry; Content-Length, if any, must be the 200's (not 0, which
            # is what Django's CommonMiddleware would add to an empty answer). No Content-Type: a 304 has no content.
            return Response(
                status=status.HTTP_304_NOT_MODIFIED,
                headers={"ETag": etag, "Content-Length": str(len(response.content))},
            )
        return response

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a movie; 201 with Location and ETag."""
        serializer = MovieWriteSerializer(data=request.data, context={})  # see update() on the empty context
        serializer.is_valid(raise_exception=True)
        movie = serializer.save()
        location = request.build_absolute_uri(reverse("movie-detail", args=[movie.pk]))
        return self._represent(movie.pk, status.HTTP_201_CREATED, Location=location)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """PUT or PATCH based on `version` or If-Match: 428 without either, 409 / 412 when stale."""
        movie_id = _movie_id(kwargs)
        data = request.data
        meta = request.META
        if_match, if_none_match = meta.get("HTTP_IF_MATCH"), meta.get("HTTP_IF_NONE_MATCH")
        if "version" not in data and (if_match is None or if_match.strip(" \t") == ANY):
            raise PreconditionRequired(None if if_match is None else ANY_NAMES_NO_VERSION)
        # No request or view in the context: the write serializer reads neither, and a serializer is a reference cycle
        # with its fields, which would hold the whole request until the cycle collector ran (ReleaseViewMiddleware).
        serializer = MovieWriteSerializer(
            Movie(pk=movie_id), data=data, partial=kwargs.get("partial", False), context={}
        )
        if not serializer.is_valid():
            # A missing movie is 404 whatever was sent. Only a refused body pays for this read: a valid write
            # learns it from its conditional UPDATE, which answers 404 or 409 when it changes nothing.
            if selectors.movie_version(movie_id=movie_id) is None:
                raise NotFound("No such movie.")
            raise ValidationError(serializer.errors)
        try:
            if if_match is None and if_none_match is None:
                serializer.save()  # the version in the body: movie_update's conditional UPDATE checks it
            else:
                with transaction.atomic():
                    serializer.context["expected_version"] = self._check_preconditions(
                        movie_id, if_match, if_none_match
                    )
                    serializer.save()  # a `version` in the body still wins: movie_update checks it (409)
        except VersionConflict as conflict:
            if conflict.current_row is not None:  # the row the failed write read: the ETag beside its version
                conflict.headers["ETag"] = row_etag(conflict.current_row)
            raise
        return self._represent(movie_id, row=serializer.written_row)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete a movie; If-Match (`*`: whatever its version) or If-None-Match make it conditional."""
        movie_id = _movie_id(kwargs)
        meta = request.META
        if_match, if_none_match = meta.get("HTTP_IF_MATCH"), meta.get("HTTP_IF_NONE_MATCH")
        with transaction.atomic():
            expected = None
            if if_match is not None or if_none_match is not None:
                # The row stays locked until the delete: the version the preconditions passed on is still current.
                expected = self._check_preconditions(movie_id, if_match, if_none_match)
            services.movie_delete(movie_id=movie_id, expected_version=expected)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _check_preconditions(self, movie_id: int, if_match: str | None, if_none_match: str | None) -> int:
        """Lock the movie and evaluate If-Match / If-None-Match on its current ETag (412 if one fails); its version."""
        services.movie_lock(movie_id=movie_id)
        row = selectors.movie_detail(movie_id=movie_id)
        assert row is not None  # locked above
        version: int = row.version
        evaluate_preconditions(if_match, if_none_match, row_etag(row), version, safe=False)
        return version


ANY_NAMES_NO_VERSION = (
    "If-Match: * matches every version of the movie, so it cannot protect this write from overwriting a change you "
    "have not seen. Send the movie's ETag in If-Match, or `version` in the body."
)


def row_etag(row: MovieRow) -> str:
    """The ETag of the representation of a `selectors.movie_detail` row."""
    return representation_etag(dumps(movie_representation(row)))


def evaluate_preconditions(
    if_match: str | None, if_none_match: str | None, etag: str, version: int, *, safe: bool
) -> bool:
    """RFC 9110 13.2.2 steps 1 and 3 on the movie's current ETag: True means 304 (a safe method only).

    If-Match compares strongly and fails with 412; If-None-Match compares weakly and, when it matches, gives 304 to
    GET and HEAD and 412 to a write. The date conditions are ignored: movies send no Last-Modified (13.1.3, 13.1.4).
    A 412 carries the current ETag and version, so the client can retry without another GET.
    """
    if if_match is not None:
        tags = parse_entity_tags("If-Match", if_match)
        if not strong_match(tags, etag):
            detail = WEAK_IF_MATCH if only_weak_match(tags, etag) else None
            raise PreconditionFailed(detail, current_version=version, headers={"ETag": etag})
    if if_none_match is not None and weak_match(parse_entity_tags("If-None-Match", if_none_match), etag):
        if safe:
            return True
        raise PreconditionFailed(NONE_MATCH_ON_WRITE, current_version=version, headers={"ETag": etag})
    return False


WEAK_IF_MATCH = (
    "If-Match lists the current ETag only as weak (W/...): If-Match compares strongly, so a weak tag never matches. "
    "Send the ETag exactly as this answer's ETag header gives it."
)
NONE_MATCH_ON_WRITE = (
    "If-None-Match matches the current ETag (or is `*` and the movie exists), so the write was refused. "
    "This answer's ETag header and `current_version` say what the movie is now."
)


class LocationOnCreateMixin:
    """201 answers carry the new resource's URL in Location."""

    basename: str

    def get_success_headers(self, data: Any) -> dict[str, str]:
        """Location of the created resource."""
        request: Request = self.request  # type: ignore[attr-defined]
        return {"Location": request.build_absolute_uri(reverse(f"{self.basename}-detail", args=[data["id"]]))}


class GenreViewSet(ListParametersMixin, LocationOnCreateMixin, viewsets.ModelViewSet):
    """Genres: anyone reads (and searches), curators write; a genre in use cannot be deleted (409)."""

    queryset = Genre.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = GenreSerializer
    filterset_class = GenreFilters
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    extra_problem_codes = {"DELETE": ("409",)}

    def get_queryset(self) -> Any:
        """Genres by slug."""
        return selectors.genre_queryset()

    def perform_destroy(self, instance: Genre) -> None:
        """Delete through the service, which refuses genres still in use."""
        services.genre_delete(genre=instance)


@extend_schema_view(retrieve=extend_schema(responses={200: PersonDetailSerializer}))
class PersonViewSet(ListParametersMixin, LocationOnCreateMixin, viewsets.ModelViewSet):
    """People: anyone reads and searches (the detail lists their films), curators write."""

    queryset = Person.objects.all()
    lookup_value_regex = "[0-9]+"
    serializer_class = PersonSerializer
    filterset_class = PersonFilters
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    extra_problem_codes = {"DELETE": ("409",)}

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
