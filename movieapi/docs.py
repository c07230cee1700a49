"""First contact: the index at `/` and `/api/v1/`, the OpenAPI schema, and its two docs pages, all served offline."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from movieapi.renderers import ORJSONRenderer

# The docs pages load their scripts, styles and the schema from this server and nothing from anywhere else:
# Redoc's bundle shows the Redocly logo from a CDN, which this policy blocks (Redoc then hides it). Inline
# styles are how Redoc and Swagger UI style themselves; no inline script is needed (the split Swagger view
# serves its start-up script as a file), and Redoc runs its search index in a blob: worker.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


class ProblemsInJSON(APIView):
    """Errors of a view that renders HTML or YAML (a 429, a 406) answer as problem+json like the rest of the API:
    DRF would render them with the page's own renderer, as text labelled problem+json."""

    def handle_exception(self, exc: Exception) -> Response:
        """Render the problem with the JSON renderer, whatever the page negotiated."""
        self.request.accepted_renderer = ORJSONRenderer()
        self.request.accepted_media_type = ORJSONRenderer.media_type
        return super().handle_exception(exc)


class OfflinePage(ProblemsInJSON):
    """A docs page that the browser may only complete from this server."""

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        """204 with Allow: DRF's OPTIONS metadata rendered into the page's template was a 500."""
        request.accepted_renderer = ORJSONRenderer()
        request.accepted_media_type = ORJSONRenderer.media_type
        return Response(status=204)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        """Add the Content-Security-Policy that keeps the page offline."""
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SchemaView(ProblemsInJSON, SpectacularAPIView):
    """The OpenAPI schema (YAML, or JSON by content negotiation)."""


class SwaggerView(OfflinePage, SpectacularSwaggerSplitView):
    """Swagger UI from the sidecar's files; its start-up script is a second request, so no inline script runs."""


class RedocView(OfflinePage, SpectacularRedocView):
    """Redoc from the sidecar's bundle, without drf-spectacular's Google Fonts links."""

    template_name = "docs/redoc.html"


class IndexView(APIView):
    """Where everything is: the resources, the docs and the schema, as absolute URLs."""

    permission_classes = [AllowAny]
    # Not in the OpenAPI schema, and invisible to its generator: with `/` among its paths, the generator's
    # common prefix would shrink from /api/v1/ to /, and every operationId and tag would change.
    schema = None

    def get(self, request: Request) -> Response:
        """The index (the same at `/` and `/api/v1/`)."""

        def url(name: str) -> str:
            return request.build_absolute_uri(reverse(name))

        return Response(
            {
                "title": settings.SPECTACULAR_SETTINGS["TITLE"],
                "resources": {
                    "movies": url("movie-list"),
                    "genres": url("genre-list"),
                    "people": url("person-list"),
                    "my_ratings": url("my-ratings"),
                    "changes": url("changes"),
                    "users": url("user-register"),
                    "tokens": url("token"),
                },
                "docs": {"swagger_ui": url("swagger-ui"), "redoc": url("redoc"), "schema": url("schema")},
                "authentication": (
                    "The catalogue is public to read. Writes (curators), ratings and my_ratings need a bearer token: "
                    f"register at {url('user-register')}, POST your username and password to {url('token')}, "
                    "and send `Authorization: Bearer <token>`."
                ),
            }
        )
