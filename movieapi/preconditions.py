"""RFC 9110 conditional requests: entity tags parsed and compared, and the ViewSet mixin that applies them.

The If-Match / If-None-Match lists are parsed by the grammar and compared strongly or weakly:

    If-Match      = "*" / #entity-tag            (section 13.1.1)
    If-None-Match = "*" / #entity-tag            (section 13.1.2)
    entity-tag    = [ "W/" ] DQUOTE *etagc DQUOTE
    etagc         = %x21 / %x23-7E / obs-text    (so a tag may hold commas: splitting on "," is wrong)

A header that does not follow the grammar is a 400 naming the header (docs/concurrency.md says why).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from movieapi.errors import MalformedPrecondition, PreconditionFailed, PreconditionRequired
from movieapi.renderers import ORJSONRenderer, dumps
from movieapi.replicas import primary_reads, reading_replica

# WSGI hands header values over as latin-1 text, so obs-text (bytes 0x80-0xFF) arrives as U+0080-U+00FF.
# One `#element` list item: optional whitespace, an optional tag (empty items are allowed, RFC 9110 5.6.1), optional
# whitespace, then a comma or the end. Matched item by item with possessive whitespace, so a long hostile header
# costs linear time (one pattern for the whole list backtracks polynomially on a run of blanks).
_ITEM = re.compile(r'[ \t]*+(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*+")[ \t]*+)?(,|\Z)')


# The same grammar as one ECMA-262 pattern, for the OpenAPI schema's If-Match / If-None-Match parameters (a client
# or fuzzer then knows which values are 400); test_conditional checks that it accepts exactly what the parser does.
_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
ENTITY_TAG_LIST_PATTERN = rf"^(?:[ \t]*\*[ \t]*|(?:[ \t]*(?:{_TAG}[ \t]*)?,)*[ \t]*(?:{_TAG}[ \t]*)?)$"


@dataclass(frozen=True)
class EntityTag:
    """One listed tag: its opaque part with the quotes, and whether it was marked weak."""

    opaque: str
    weak: bool


ANY: Literal["*"] = "*"


def parse_entity_tags(header_name: str, value: str) -> list[EntityTag] | Literal["*"]:
    """The tags a conditional header lists, or `*`; MalformedPrecondition (400) if it is neither."""
    if value.strip(" \t") == ANY:
        return ANY
    tags: list[EntityTag] = []
    position = 0
    while True:
        item = _ITEM.match(value, position)
        if item is None:
            raise MalformedPrecondition(
                f"{header_name} is neither `*` nor a comma-separated list of entity tags. An entity tag is quoted, "
                'optionally marked weak: "abc" or W/"abc". Send the ETag header\'s value exactly as the server gave it.'
            )
        weak, opaque, separator = item.groups()
        if opaque is not None:
            tags.append(EntityTag(opaque=opaque, weak=weak is not None))
        if not separator:
            return tags
        position = item.end()


def strong_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """If-Match's comparison: `*`, or the same opaque tag with neither side weak (our ETags are all strong)."""
    return tags == ANY or any(not tag.weak and tag.opaque == etag for tag in tags)


def weak_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """If-None-Match's comparison: `*`, or the same opaque tag whether or not either side is weak."""
    return tags == ANY or any(tag.opaque == etag for tag in tags)


def only_weak_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """The tag is listed, but only as weak: the likely mistake behind an If-Match that fails (worth saying so)."""
    return tags != ANY and not strong_match(tags, etag) and weak_match(tags, etag)


# ---- conditional requests on a versioned resource ----------------------------------------------

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


def representation_etag(body: bytes) -> str:
    """A strong ETag: a digest of the JSON body, so it changes whenever the body does."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


class Versioned(Protocol):
    """A resource's current state as the mixin below reads it: whatever its serializer shows, with its version."""

    @property
    def version(self) -> int: ...


class ConditionalRequestMixin:
    """Strong ETags and RFC 9110 conditional requests (If-Match, If-None-Match) for a ViewSet of versioned resources.

    Every representation it answers (retrieve, create, update) carries its ETag, the digest of its body. A GET or
    HEAD answers 304 when If-None-Match holds a current ETag and 412 when If-Match holds none; a PUT or PATCH must
    say which version it is based on (`version` in the body, or If-Match: 428 otherwise); the conditions of a write
    are evaluated with the resource locked until the write (`check_preconditions`, 412). A 412 carries the current
    ETag and version, so the client can retry without another GET.

    The view provides `get_locked_object(instance)`: the resource as it is now, locked for the transaction.
    """

    # The field of a write's body that says which version it is based on.
    version_field = "version"
    etag_actions = frozenset({"retrieve", "create", "update", "partial_update"})

    # GenericViewSet's.
    request: Any  # DRF's Request (django-stubs and DRF's stubs disagree on the type)
    action: str
    get_object: Callable[[], Any]
    get_serializer: Callable[..., BaseSerializer[Any]]

    def get_locked_object(self, instance: Any) -> Versioned:
        """The resource as it is now, its row locked until the transaction ends (404 if it is gone)."""
        raise NotImplementedError

    def request_preconditions(self) -> tuple[str | None, str | None]:
        """The request's If-Match and If-None-Match, None when absent."""
        meta = self.request.META  # request.headers would build the whole header map
        return meta.get("HTTP_IF_MATCH"), meta.get("HTTP_IF_NONE_MATCH")

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """RetrieveModelMixin.retrieve, then the request's conditions on the answer's ETag: 304 or 412.

        Overridden because the conditions need the ETag, hence the encoded body, before the answer is returned.
        """
        instance = self.get_object()
        serializer = self.get_serializer(instance)
        response = Response(serializer.data)
        if_match, if_none_match = self.request_preconditions()
        if if_match is None and if_none_match is None:
            return response
        etag = self.with_etag(response)
        if reading_replica() and not names_representation(if_match, if_none_match, etag):
            # The client holds a tag this replica's copy does not have: perhaps a newer one (from the primary, or
            # another replica). Never answer it with older data: the primary reads it again, and decides.
            with primary_reads():
                return self.retrieve(request, *args, **kwargs)
        if evaluate_preconditions(if_match, if_none_match, etag, instance.version, safe=True):
            # RFC 9110 15.4.5: the ETag the 200 would carry; Content-Length, if any, must be the 200's (not 0, which
            # is what Django's CommonMiddleware would add to an empty answer). No Content-Type: a 304 has no content.
            return Response(
                status=status.HTTP_304_NOT_MODIFIED,
                headers={"ETag": etag, "Content-Length": str(len(response.content))},
            )
        return response

    def check_object_permissions(self, request: Request, obj: Any) -> None:
        """DRF's object permissions (get_object asks them); then a PUT or PATCH that names no version is refused (428),
        before its body is validated. `*` in If-Match names none: it matches whatever the resource has become."""
        super().check_object_permissions(request, obj)  # type: ignore[misc]
        if self.action not in {"update", "partial_update"}:
            return
        if_match = request.META.get("HTTP_IF_MATCH")
        if self.version_field not in request.data and (if_match is None or if_match.strip(" \t") == ANY):
            raise PreconditionRequired(None if if_match is None else ANY_NAMES_NO_VERSION)

    def check_preconditions(self, instance: Any) -> int:
        """A write's If-Match / If-None-Match, evaluated on the resource's current ETag with it locked until the
        transaction ends (412 if one fails): the version they passed on, still current when the write runs."""
        current = self.get_locked_object(instance)
        if_match, if_none_match = self.request_preconditions()
        evaluate_preconditions(if_match, if_none_match, self.etag_of(current), current.version, safe=False)
        return current.version

    def etag_of(self, instance: Any) -> str:
        """The ETag of the resource's representation."""
        return representation_etag(dumps(self.get_serializer(instance).data))

    # Fast path: pre-rendered detail.
    # Replaces: DRF's renderer encoding response.data again after the ETag's encoding.
    # Why: one encoding per movie instead of two (figure: none recorded alone; in detail 0.38 -> 0.47, 6e3ad8f).
    # Equal: movies/tests/test_read_path.py::test_detail_and_list_answer_what_the_declared_fields_give
    # Off: leave `content` unset here and let the renderer encode the data (the ETag then needs its own encoding).
    def with_etag(self, response: Response) -> str:
        """Encode the answer's data now, once, as its body (setting `content` marks it rendered: DRF's renderer, which
        would encode the same JSON again, is skipped) and set its ETag, the digest of these very bytes."""
        body = dumps(response.data)
        response.content = body
        response["Content-Type"] = ORJSONRenderer.media_type
        response["ETag"] = etag = representation_etag(body)
        return etag

    def finalize_response(self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any) -> Any:
        """A representation (retrieve, create, update) leaves with its ETag (`with_etag`)."""
        if (
            self.action in self.etag_actions
            and isinstance(response, Response)
            and response.data is not None
            and status.is_success(response.status_code)
            and "ETag" not in response
        ):
            self.with_etag(response)
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


def names_representation(if_match: str | None, if_none_match: str | None, etag: str) -> bool:
    """True if each condition present lists this ETag (weakly) or `*`: the client asks about this representation, not
    another one (an older or a newer)."""
    return all(
        value is None or weak_match(parse_entity_tags(name, value), etag)
        for name, value in (("If-Match", if_match), ("If-None-Match", if_none_match))
    )


def evaluate_preconditions(
    if_match: str | None, if_none_match: str | None, etag: str, version: int, *, safe: bool
) -> bool:
    """RFC 9110 13.2.2 steps 1 and 3 on the current ETag: True means 304 (a safe method only).

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


ANY_NAMES_NO_VERSION = (
    "If-Match: * matches every version of the movie, so it cannot protect this write from overwriting a change you "
    "have not seen. Send the movie's ETag in If-Match, or `version` in the body."
)
WEAK_IF_MATCH = (
    "If-Match lists the current ETag only as weak (W/...): If-Match compares strongly, so a weak tag never matches. "
    "Send the ETag exactly as this answer's ETag header gives it."
)
NONE_MATCH_ON_WRITE = (
    "If-None-Match matches the current ETag (or is `*` and the movie exists), so the write was refused. "
    "This answer's ETag header and `current_version` say what the movie is now."
)
