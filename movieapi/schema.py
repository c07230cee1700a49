"""OpenAPI generation: every operation documents the problem answers it can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from movieapi.errors import PROBLEM_CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="A URI naming the kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="What went wrong and what to do next.")
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors: field path -> messages.",
    )
    current_version = serializers.IntegerField(required=False, help_text="With 409: the movie's current version.")


_DESCRIPTIONS = {
    "400": "Invalid input (problem details with `errors`).",
    "401": "No or bad credentials (`WWW-Authenticate: Bearer`).",
    "403": "Authenticated but not allowed.",
    "404": "No such resource.",
    "409": "Version conflict: `version` is not the current version (`current_version` says which is).",
    "412": "If-Match does not match the current ETag.",
    "413": "Body over 1 MiB.",
    "415": "Body is not JSON.",
    "428": "Neither `version` nor If-Match was sent.",
    "429": "Rate limit exceeded (`Retry-After`).",
    "503": "Database unavailable; retry.",
}


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the problem responses of each operation."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._problem_codes():
            if code not in responses:
                response = self._get_response_for_code(ProblemSerializer, code, [PROBLEM_CONTENT_TYPE], direction)
                response["description"] = _DESCRIPTIONS[code]
                responses[code] = response
        return responses

    def _problem_codes(self) -> list[str]:
        """The error statuses this operation can answer with."""
        method = self.method.upper()
        codes = {"429", "503"}
        is_detail = "{" in self.path
        protected = self._requires_auth()
        if method in {"POST", "PUT", "PATCH"}:
            codes |= {"400", "413", "415"}
        if method == "GET" and not is_detail:
            codes.add("400")
        if protected or method not in {"GET", "HEAD", "OPTIONS"}:
            codes |= {"401", "403"}
        if is_detail:
            codes.add("404")
        codes |= set(getattr(self.view, "extra_problem_codes", {}).get(method, ()))
        return sorted(codes)

    def _requires_auth(self) -> bool:
        from rest_framework.permissions import AllowAny, DjangoModelPermissionsOrAnonReadOnly

        permission_classes = getattr(self.view, "permission_classes", [])
        return not all(issubclass(cls, (AllowAny, DjangoModelPermissionsOrAnonReadOnly)) for cls in permission_classes)


class BearerTokenScheme(KnoxTokenScheme):
    """The bearer-token security scheme for movieapi.authentication.TokenAuthentication (knox's, subclassed)."""

    target_class = "movieapi.authentication.TokenAuthentication"
