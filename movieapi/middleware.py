"""Cross-cutting HTTP middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from movieapi.errors import PROBLEM_CONTENT_TYPE, PayloadTooLarge, problem
from movieapi.renderers import dumps


class BodySizeLimitMiddleware:
    """Refuse a declared body over the upload limit with 413 before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            body = problem(
                413,
                f"The request body is {length} bytes; the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}.",
                problem_type=PayloadTooLarge.problem_type,
            )
            return HttpResponse(dumps(body), status=413, content_type=PROBLEM_CONTENT_TYPE)
        return self.get_response(request)
