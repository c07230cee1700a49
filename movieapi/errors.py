"""RFC 9457 problem details: one exception handler for DRF views, and Django's 404/500 handlers.

The services raise the catalogue's own errors (movies/errors.py, no HTTP in them); `problem_for` is the one place
that says which problem answers each.
"""

from __future__ import annotations

import heapq
import logging
import sys
from collections.abc import Collection
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from movieapi.metrics import VERSION_CONFLICTS
from movieapi.renderers import dumps
from movieapi.throttles import request_decision

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:movieapi:problem:"
# How many names an error lists (unknown fields or query parameters, fields in `detail`) before "… and N more": an
# error's size follows this bound, not the request's (80,000 unknown keys once answered 5.2 MB in ~1 s of CPU).
MAX_LISTED_NAMES = 10


class ProblemError(exceptions.APIException):
    """An API error with its own problem type; subclasses set status, type and title."""

    problem_type = "about:blank"
    title = "Error"
    extra: dict[str, Any]
    headers: dict[str, str]

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.extra = extra
        self.headers = headers or {}


class VersionConflictProblem(ProblemError):
    status_code = status.HTTP_409_CONFLICT
    problem_type = PROBLEM_BASE + "version-conflict"
    title = "Version conflict"
    default_detail = "The movie was changed by someone else since the version you based this write on."


class StillReferencedProblem(ProblemError):
    status_code = status.HTTP_409_CONFLICT
    problem_type = PROBLEM_BASE + "still-referenced"
    title = "Still referenced"


class RevertImpossibleProblem(ProblemError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem_type = PROBLEM_BASE + "revert-impossible"
    title = "Unprocessable content"


class PreconditionFailed(ProblemError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    problem_type = PROBLEM_BASE + "precondition-failed"
    title = "Precondition failed"
    default_detail = (
        "If-Match does not match the current ETag: reapply your change to the movie as it is now (its ETag is in "
        "this answer's ETag header, its version in `current_version`) and retry with that ETag."
    )


class MalformedPrecondition(ProblemError):
    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = PROBLEM_BASE + "malformed-precondition"
    title = "Bad request"
    default_detail = "If-Match or If-None-Match is neither `*` nor a list of quoted entity tags."


class PreconditionRequired(ProblemError):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    problem_type = PROBLEM_BASE + "precondition-required"
    title = "Precondition required"
    default_detail = (
        "Say which version this write is based on: send `version` in the body or the movie's ETag in If-Match."
    )


class MalformedIdempotencyKey(ProblemError):
    status_code = status.HTTP_400_BAD_REQUEST
    problem_type = PROBLEM_BASE + "malformed-idempotency-key"
    title = "Bad request"


class IdempotencyKeyInFlight(ProblemError):
    status_code = status.HTTP_409_CONFLICT
    problem_type = PROBLEM_BASE + "idempotency-key-in-flight"
    title = "Request in progress"
    default_detail = (
        "A request with this Idempotency-Key is still being processed. Retry it unchanged after Retry-After seconds: "
        "you will get its answer, and nothing will be created twice."
    )


class IdempotencyKeyReused(ProblemError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem_type = PROBLEM_BASE + "idempotency-key-reused"
    title = "Idempotency key reused"
    default_detail = (
        "This Idempotency-Key was used in the last 24 hours for another request (another body or URL). To retry "
        "that request, resend it byte for byte; for a new request, send a new key."
    )


class HistoryGone(ProblemError):
    status_code = status.HTTP_410_GONE
    problem_type = PROBLEM_BASE + "history-gone"
    title = "Gone"


class PayloadTooLarge(ProblemError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    problem_type = PROBLEM_BASE + "payload-too-large"
    title = "Payload too large"
    default_detail = "The request body is larger than 1 MiB."


class ServiceUnavailable(ProblemError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    problem_type = PROBLEM_BASE + "service-unavailable"
    title = "Service unavailable"
    default_detail = "The database is unavailable right now; nothing was changed. Retry in a moment."


# Problem types for DRF's own exceptions, by class; the title is the HTTP reason phrase.
_DRF_TYPES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "validation-error",
    exceptions.ParseError: "malformed-request",
    exceptions.UnsupportedMediaType: "unsupported-media-type",
    exceptions.NotAuthenticated: "not-authenticated",
    exceptions.AuthenticationFailed: "authentication-failed",
    exceptions.PermissionDenied: "permission-denied",
    exceptions.NotFound: "not-found",
    exceptions.MethodNotAllowed: "method-not-allowed",
    exceptions.NotAcceptable: "not-acceptable",
    exceptions.Throttled: "rate-limited",
}

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Payload too large",
    410: "Gone",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status_code: int, detail: str, *, problem_type: str | None = None, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Build a problem details body."""
    body: dict[str, Any] = {
        "type": problem_type or "about:blank",
        "title": title or _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    body.update(extra)
    return body


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"field.sub.0.name": ["message", …]}."""
    errors: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key == "non_field_errors" and not prefix else f"{prefix}{key}"
            for sub, messages in flatten_errors(value, f"{name}.").items():
                errors.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        for index, value in enumerate(detail):
            for sub, messages in flatten_errors(value, f"{prefix}{index}.").items():
                errors.setdefault(sub, []).extend(messages)
    else:
        items = detail if isinstance(detail, list) else [detail]
        errors[prefix.rstrip(".") or "non_field_errors"] = [str(item) for item in items]
    return errors


def listed_names(names: Collection[str]) -> str:
    """The first MAX_LISTED_NAMES names in sorted order, then "… and N more" (no sort of all of them)."""
    listed = ", ".join(heapq.nsmallest(MAX_LISTED_NAMES, names))
    more = len(names) - MAX_LISTED_NAMES
    return f"{listed} … and {more:,} more" if more > 0 else listed


def unknown_names_errors(unknown: Collection[str], message: str, *, what: str) -> dict[str, list[str]]:
    """`message` for each of the first MAX_LISTED_NAMES unknown names (sorted), and the count of the rest as a
    non-field error: a validation error's `errors` for names the request should not have sent."""
    errors = {name: [message] for name in heapq.nsmallest(MAX_LISTED_NAMES, unknown)}
    if len(unknown) > len(errors):
        errors[api_settings.NON_FIELD_ERRORS_KEY] = [
            f"… and {len(unknown) - len(errors):,} more unknown {what}; only the first {MAX_LISTED_NAMES} are listed."
        ]
    return errors


def _validation_detail(errors: dict[str, list[str]]) -> str:
    general = " ".join(errors.get(api_settings.NON_FIELD_ERRORS_KEY, []))
    fields = [name for name in errors if name != api_settings.NON_FIELD_ERRORS_KEY]
    if not fields:
        return general  # about the body as a whole: the message says it best
    return " ".join(
        filter(
            None,
            [f"The request has invalid values in: {listed_names(fields)}.", general, "See `errors` for what to fix."],
        )
    )


def _is_write(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and request.method not in {"GET", "HEAD", "OPTIONS"}


def problem_for(error: Exception) -> exceptions.APIException | None:
    """The API error that answers a catalogue error (movies/errors.py), or None for any other exception."""
    # Imported on the first error answer, not with this module: movieapi sits below the apps it serves.
    from movies import errors as catalogue

    if not isinstance(error, catalogue.CatalogueError):
        return None
    if isinstance(error, catalogue.MovieNotFound | catalogue.RatingNotFound):
        return exceptions.NotFound(error.message)
    if isinstance(error, catalogue.VersionConflict):
        return VersionConflictProblem(error.message, current_version=error.current_version)
    if isinstance(error, catalogue.StillReferenced):
        return StillReferencedProblem(error.message)
    if isinstance(error, catalogue.RevertImpossible):
        return RevertImpossibleProblem(error.message, errors=error.errors)
    if isinstance(error, catalogue.ImdbIdTaken):
        return exceptions.ValidationError({error.field: [error.message]})
    if isinstance(error, catalogue.FeedHistoryGone):
        return HistoryGone(error.message)
    if isinstance(error, catalogue.AccountGone):
        return exceptions.AuthenticationFailed(error.message)
    return ProblemError(error.message)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every exception a DRF view raises with problem+json (DRF's EXCEPTION_HANDLER hook)."""
    exc = problem_for(exc) or exc
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable: %s", exc)
        exc = ServiceUnavailable()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(
            "No such resource." if not str(exc) or "matches the given query" in str(exc) else str(exc)
        )
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc = _counted_unauthenticated(exc, context)

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response

    extra: dict[str, Any] = {}
    if isinstance(exc, ProblemError):
        problem_type, title, extra = exc.problem_type, exc.title, exc.extra
        detail = str(exc.detail)
        for name, value in exc.headers.items():
            response[name] = value
    else:
        slug = next((slug for cls, slug in _DRF_TYPES.items() if isinstance(exc, cls)), None)
        problem_type = PROBLEM_BASE + slug if slug else "about:blank"
        title = None
        if isinstance(exc, exceptions.ValidationError):
            extra["errors"] = flatten_errors(exc.detail)
            detail = _validation_detail(extra["errors"])
        elif isinstance(exc.detail, dict | list):
            detail = "; ".join(f"{k}: {v}" for k, v in flatten_errors(exc.detail).items())
        else:
            detail = str(exc.detail)
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = "1"
    elif isinstance(exc, VersionConflictProblem | PreconditionFailed) and _is_write(context):
        # The metric counts refused writes; a GET's failing If-Match is a read that changed nothing.
        VERSION_CONFLICTS.labels(str(response.status_code)).inc()
    response.data = problem(response.status_code, detail, problem_type=problem_type, title=title, **extra)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _counted_unauthenticated(exc: exceptions.APIException, context: dict[str, Any]) -> exceptions.APIException:
    """A 401, counted by the view's throttles as the anonymous request it is (or a 429 once they refuse it).

    DRF authenticates before it throttles, so without this a flood of bad tokens was never counted. A request
    refused later (a wrong password at tokens/) was counted already: its decision is made once per request."""
    view, request = context.get("view"), context.get("request")
    if view is None or request is None:
        return exc
    decision = request_decision(request, view)
    if decision is not None and not decision.allowed:
        return exceptions.Throttled(wait=decision.retry_after)
    return exc


def _problem_response(request: HttpRequest, status_code: int, detail: str) -> HttpResponse:
    body = problem(status_code, detail, instance=request.path)
    return HttpResponse(dumps(body), status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 for URLs no view matched, as a problem."""
    return _problem_response(request, 404, f"There is nothing at {request.path}. GET /api/v1/ lists what there is.")


def handler500(request: HttpRequest) -> HttpResponse:
    """Django's 500, as a problem without any internals; a database outage outside DRF views is a 503."""
    # Django calls this inside its `except` block, so the exception is still at hand: the
    # session, auth or admin code failing on a lost database answers like the API does.
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        body = problem(
            503, ServiceUnavailable.default_detail, problem_type=ServiceUnavailable.problem_type, instance=request.path
        )
        response = HttpResponse(dumps(body), status=503, content_type=PROBLEM_CONTENT_TYPE)
        response["Retry-After"] = "1"
        return response
    return _problem_response(request, 500, "The server failed to answer this request. It has been logged.")


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (bad Host header and similar), as a problem."""
    return _problem_response(request, 400, "The request could not be understood.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 403 (CSRF and similar), as a problem."""
    return _problem_response(request, 403, "You are not allowed to do this.")
