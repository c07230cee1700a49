"""Cross-cutting HTTP middleware."""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from corsheaders import middleware as cors_middleware
from corsheaders.conf import conf as cors_conf
from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

from movieapi.errors import PROBLEM_CONTENT_TYPE, PayloadTooLarge, problem
from movieapi.filtersets import REQUEST_FILTERSETS_ATTR, release_filterset
from movieapi.renderers import dumps
from movieapi.request_id import request_id_var

# Set on a request whose chunked body went past the upload limit (ChunkedBodyReader); BodySizeLimitMiddleware
# refuses it.
CHUNKED_BODY_TOO_LARGE = "movieapi.chunked_body_too_large"
_READ_SIZE = 64 * 1024


class ChunkedBodyReader:
    """WSGI middleware: hand Django a chunked request body as if it had come with a Content-Length.

    Django's WSGIRequest reads CONTENT_LENGTH bytes of wsgi.input and no more, so a body sent with
    `Transfer-Encoding: chunked` (no Content-Length) was read as empty: a POST lost its fields, and a PATCH with
    If-Match answered 200, bumped the version and applied nothing. gunicorn de-chunks wsgi.input (and sets
    wsgi.input_terminated); this reads it whole, up to the same limit as any body (DATA_UPLOAD_MAX_MEMORY_SIZE),
    and sets CONTENT_LENGTH, so that everything after it (BodySizeLimitMiddleware, the parsers, the admin's forms)
    sees one kind of request. A body over the limit is cut at limit + 1 bytes and declared so: it can only be
    refused (413), never read short. Bodies are held in memory, as Django holds any body it parses.

    A server that leaves the chunk framing in wsgi.input, or cannot say where the body ends (no
    wsgi.input_terminated: runserver's wsgiref), gets 411: reading there could return the framing or block.
    """

    def __init__(self, application: Callable[..., Any]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_TRANSFER_ENCODING") and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                detail = "This server reads request bodies with a Content-Length only: send one."
                body = dumps(problem(411, detail, title="Length required"))
                start_response(
                    "411 Length Required",
                    [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(body)))],
                )
                return [body]
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = bytearray()
            stream = environ["wsgi.input"]
            while len(body) <= limit:
                chunk = stream.read(min(_READ_SIZE, limit + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            if len(body) > limit:
                environ[CHUNKED_BODY_TOO_LARGE] = True
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


class BodySizeLimitMiddleware:
    """Refuse a body over the upload limit (declared, or chunked and read up to it) with 413 before anything
    reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length.isdigit() and int(length) > limit:
            if request.META.get(CHUNKED_BODY_TOO_LARGE):
                detail = f"The chunked request body is over the limit of {limit} bytes."
            else:
                detail = f"The request body is {length} bytes; the limit is {limit}."
            body = problem(413, detail, problem_type=PayloadTooLarge.problem_type)
            return HttpResponse(dumps(body), status=413, content_type=PROBLEM_CONTENT_TYPE)
        return self.get_response(request)


@functools.cache
def _cors_origins_configured() -> bool:
    """Whether any origin may call cross-origin: read once (three settings lookups were ~10 us of every request),
    again after a CORS setting changes (tests)."""
    return bool(
        cors_conf.CORS_ALLOWED_ORIGINS or cors_conf.CORS_ALLOWED_ORIGIN_REGEXES or cors_conf.CORS_ALLOW_ALL_ORIGINS
    )


@receiver(setting_changed)
def _forget_cors_settings(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CORS_"):
        _cors_origins_configured.cache_clear()


class CorsMiddleware(cors_middleware.CorsMiddleware):
    """Fast path: CORS idle.

    Replaces: django-cors-headers' middleware on every request while no origin is configured.
    Why: ~2.8% of a detail's worker time, and ~10 us of settings lookups (~2%; 71c5436).
    Equal: movieapi/tests/test_fast_path_equality.py::test_cors_answers_as_django_cors_headers
    Off: MIDDLEWARE: corsheaders.middleware.CorsMiddleware.

    django-cors-headers' middleware, idle while no origin may call cross-origin (CORS_ALLOWED_ORIGINS unset).

    Without origins it adds nothing but `Vary: Origin`, which only matters when an Origin changes the answer; and
    reading the Origin header builds Django's map of all request headers, on every request."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _cors_origins_configured() or check_request_enabled.has_listeners():
            response: HttpResponse = super().__call__(request)  # type: ignore[assignment]
            return response
        passed: HttpResponse = self.get_response(request)  # type: ignore[assignment]
        return passed


# ---- what a DRF request leaves behind ----------------------------------------------------------


class ReleaseViewMiddleware:
    """Fast path: release view cycles.

    Replaces: the cycle collector freeing each request's view, request, response, FilterSets and serializer context.
    Why: ~170 us of collection per list request, and ~60 ms full collections now and then (a p99 spike).
    Equal: movieapi/tests/test_fast_path_equality.py::test_no_drf_objects_are_left_for_the_cycle_collector
    Off: remove movieapi.middleware.ReleaseViewMiddleware from MIDDLEWARE.

    Cut the reference cycles a DRF view leaves, once its response is rendered, so that reference counting frees
    the request, the view, the response and its data at once instead of the cycle collector, later.

    A ViewSet keeps bound methods of itself as attributes (`get` -> `retrieve`), the request's parser context holds
    the view, and the response's renderer context holds the view and the request: each request was one cyclic
    garbage graph (about 230 objects for a list page). Collecting those cost ~170 us of a list request's CPU, and
    every so often a full collection held a worker for ~60 ms (the p99 of whatever request it fell on). Nothing
    reads these links after rendering, which Django does before the response leaves the middleware below this one.
    The request's FilterSets (movieapi.filtersets) and the context of the serializer behind the data are let go too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        context = getattr(response, "renderer_context", None)
        if context:
            view, drf_request = context.get("view"), context.get("request")
            if drf_request is not None:
                drf_request.parser_context = None
                for filterset in vars(drf_request).pop(REQUEST_FILTERSETS_ATTR, ()):
                    release_filterset(filterset)
            for method in getattr(view, "action_map", None) or ():
                view.__dict__.pop(method, None)
            response.renderer_context = None  # type: ignore[attr-defined]
            _release_serializer(getattr(response, "data", None))
        return response


def _release_serializer(data: Any) -> None:
    """Empty the context (request and view) of the serializer that made this data, found through DRF's backlink
    (`ReturnList.serializer`, also under a page's `results`). A serializer and its fields point at each other, so
    it is a cycle of its own; without its context that cycle holds no more than the serializer."""
    if isinstance(data, dict) and not hasattr(data, "serializer"):
        data = data.get("results")
    serializer = getattr(data, "serializer", None)
    if serializer is not None and getattr(serializer, "_context", None):
        serializer._context.clear()  # the dict the view made: the serializer, its child and their kwargs share it


# ---- request ids and access logs --------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's (or the proxy's) id is kept if it is a plain token; anything else is replaced, so
# that log lines never carry arbitrary client text.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
access_logger = logging.getLogger("movieapi.access")


class RequestIdMiddleware:
    """Take X-Request-ID from the request (or make one), return it, and log one access line."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID_PATTERN.fullmatch(incoming) else os.urandom(16).hex()  # as uuid4().hex
        # Not reset on the way out: Django logs a 4xx/5xx ("django.request") after the middleware
        # returned, and that line should carry the id too. The next request sets its own.
        request_id_var.set(request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        access_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response


# ---- caching and content policy ----------------------------------------------------------------


class PrivateWhenCredentialedMiddleware:
    """`Cache-Control: private` on every answer to a request that carried credentials: a bearer token
    (`Authorization`), or a session cookie outside the API (the admin: the API is stateless and answers a session
    cookie as it answers no cookie, see _SiteOnly).

    Such an answer is one caller's (their tokens, their ratings, a 401 for their token), so no shared cache may
    store it; `Vary` names the header that carried the credentials, so that the caller's own cache does not hand
    it out for another token or session either. Anonymous answers stay as they were: the same for everyone.
    The ETag and 304 paths are untouched: a 304 passes through here too and carries the same header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        meta = request.META
        if "HTTP_AUTHORIZATION" in meta:
            patch_cache_control(response, private=True)
            patch_vary_headers(response, ("Authorization",))
        if (
            "HTTP_COOKIE" in meta
            and not request.path_info.startswith(API_PATH_PREFIX)
            and settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            patch_cache_control(response, private=True)
            patch_vary_headers(response, ("Cookie",))
        return response


# The admin loads its scripts and styles from this server (static files through whitenoise), with no inline script
# or style in Django 5.2's templates (its scripts set styles through the DOM, which a policy does not block); its
# forms post to itself. movies/tests/test_admin_browser.py checks that the browser's console reports no refusal.
ADMIN_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
ADMIN_PATH_PREFIX = "/admin/"


class AdminContentSecurityPolicyMiddleware:
    """The admin's pages (every answer under /admin/, its log-in page too) carry ADMIN_CONTENT_SECURITY_POLICY:
    an injected script could act with a curator's session. The docs pages set their own (movieapi/docs.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(ADMIN_PATH_PREFIX):
            response.headers.setdefault("Content-Security-Policy", ADMIN_CONTENT_SECURITY_POLICY)
        return response


# ---- the admin's middleware, which the API does not need ---------------------------------------

API_PATH_PREFIX = "/api/"


class _SiteOnly:
    """Fast path: site-only sessions.

    Replaces: Django's session, session-user and message middlewares on /api/ requests.
    Why: ~12 -> ~5 us of an API request's middleware time in process (timeit, measured for the ledger).
    Equal: movieapi/tests/test_fast_path_equality.py::test_the_admin_keeps_its_sessions_as_djangos_middleware_does
    Off: MIDDLEWARE: django.contrib's SessionMiddleware, AuthenticationMiddleware and MessageMiddleware.

    Skip this middleware for the API: it is stateless (bearer tokens), so sessions, the session user and
    messages serve only the admin. Subclasses of Django's own, so the admin's checks still see them. (CSRF
    stays Django's own, which `check --deploy` asks for; the API's views are exempt from it.)"""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PATH_PREFIX):
            passed: HttpResponse = self.get_response(request)  # type: ignore[attr-defined]
            return passed
        response: HttpResponse = super().__call__(request)  # type: ignore[misc]
        return response


class SessionMiddleware(_SiteOnly, sessions_middleware.SessionMiddleware):
    """Django's SessionMiddleware, for everything but the API."""


class AuthenticationMiddleware(_SiteOnly, auth_middleware.AuthenticationMiddleware):
    """Django's AuthenticationMiddleware (the session's user), for everything but the API."""


class MessageMiddleware(_SiteOnly, messages_middleware.MessageMiddleware):
    """Django's MessageMiddleware, for everything but the API."""
