"""OpenAPI generation: the schema states what the server enforces (docs/openapi.md).

drf-spectacular's own mechanisms, each where the rule lives:

- `ProblemAutoSchema` (the DEFAULT_SCHEMA_CLASS): every status an operation can answer, each problem with the
  problem+json schema; anonymous access (`{}` in `security`) where the permissions let anonymous callers in;
  request bodies of strict serializers closed (`additionalProperties: false`), with the read-only keys they
  accept and ignore.
- `StrictCharFieldExtension`: what `movieapi.fields.StrictCharField` refuses (NUL, blank after trimming) as a
  pattern.
- `BoundedFilterExtension`: the bounds each filter's form field checks (min, max, length, NUL) on its parameter.
- `PageNumberPagination.get_schema_operation_parameters` (movieapi.pagination): the paging parameters' bounds.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core import validators
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance, is_patched_serializer
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, AllowAny, DjangoModelPermissionsOrAnonReadOnly

from movieapi.errors import PROBLEM_CONTENT_TYPE
from movieapi.fields import PY_WHITESPACE, StrictCharField, StrictSerializerMixin

# A string without NUL (PostgreSQL cannot store it; StrictCharField and Django's form fields refuse it).
NO_NUL_PATTERN = r"^[^\u0000]*$"
# ... that also has a character left after trimming (a CharField without allow_blank refuses "   ").
NOT_BLANK_PATTERN = rf"^[^\u0000]*[^\u0000{PY_WHITESPACE}][^\u0000]*$"


@extend_schema_field({"$ref": "#/components/schemas/HistoryEntry"})
class HistoryEntryRef(serializers.DictField):
    """A movie's history entry (the `HistoryEntry` component, movies/history_serializers.py)."""


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="A URI naming the kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="What went wrong and what to do next.")
    instance = serializers.CharField(required=False, help_text="The request path, on answers outside the API views.")
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors: field path -> messages.",
    )
    current_version = serializers.IntegerField(required=False, help_text="With 409: the movie's current version.")
    changes_since = serializers.ListField(
        child=HistoryEntryRef(),
        required=False,
        help_text=(
            "With a movie's 409 or 412: what changed after the version the write was based on (the body's `version`; "
            "for 412 the version If-Match's ETag named, when known), one history entry per version, oldest first. "
            "Absent when that version is not known or its history is not kept (docs/history.md)."
        ),
    )


_DESCRIPTIONS = {
    "400": "Invalid input (problem details; `errors` names each field or parameter), or a malformed request.",
    "401": "Bad credentials (`WWW-Authenticate: Bearer`): a token that is unknown, expired or malformed is refused "
    "on every operation, public ones included; on protected operations also no token at all.",
    "403": "Authenticated but not allowed (writes need a curator).",
    "404": "No such resource.",
    "406": "The Accept header excludes application/json.",
    "409": "Conflict: the resource changed or is still in use (`current_version` and `changes_since` with a version "
    "conflict), or a request with this Idempotency-Key is still being processed (`Retry-After`).",
    "410": "Gone: history after this change-feed cursor was purged; re-sync (docs/change-feed.md).",
    "412": "If-Match does not match the current ETag (`current_version`, and `changes_since` when the ETag is known).",
    "413": "Body over 1 MiB.",
    "414": "Request line (method, path and query) over 8190 bytes.",
    "415": "Body is not JSON (Content-Type other than application/json).",
    "422": "Well-formed but cannot be carried out: an Idempotency-Key used in the last 24 hours for another request "
    "(another body or URL), or a revert to a version that cannot be restored (`errors` says what stands in the way).",
    "428": "Neither `version` nor If-Match was sent.",
    "429": "Rate limit exceeded (`Retry-After`).",
    "503": "Database unavailable; retry.",
}
_LIST_404 = "The page is past the last page of results."

# Answers any request can get, whatever the operation: a malformed request or a Host the server does not serve
# (400), a bad bearer token (401: authentication runs before any permission), an Accept without JSON (406), a
# declared body over the cap (413, checked before routing), the rate limits (429) and a lost database (503).
# gunicorn refuses a request line over 8190 bytes (414) before the application sees it.
_ANY_REQUEST = frozenset({"400", "401", "406", "413", "414", "429", "503"})


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the problem answers, anonymous access and closed request bodies."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._problem_codes():
            if code not in responses:
                response = self._get_response_for_code(ProblemSerializer, code, [PROBLEM_CONTENT_TYPE], direction)
                response["description"] = _LIST_404 if code == "404" and self._is_list_view() else _DESCRIPTIONS[code]
                responses[code] = response
        return responses

    def _problem_codes(self) -> list[str]:
        """The error statuses this operation can answer with."""
        method = self.method.upper()
        codes = set(_ANY_REQUEST)
        if method in {"POST", "PUT", "PATCH"} and self.get_request_serializer() is not None:
            codes.add("415")
        if self._may_forbid():
            codes.add("403")
        if "{" in self.path or (method == "GET" and self._is_list_view()):
            codes.add("404")  # a detail that does not exist, a page past the end
        codes |= set(getattr(self.view, "extra_problem_codes", {}).get(method, ()))
        return sorted(codes)

    def _permission_classes(self) -> list[type]:
        return [permission.__class__ for permission in self.view.get_permissions()]

    def _anonymous_allowed(self) -> bool:
        """True if a request without credentials passes every permission of this operation."""
        safe = self.method.upper() in SAFE_METHODS
        return all(
            issubclass(cls, AllowAny) or (safe and issubclass(cls, DjangoModelPermissionsOrAnonReadOnly))
            for cls in self._permission_classes()
        )

    def _may_forbid(self) -> bool:
        """True if an authenticated caller can still be refused (403): model permissions on a write."""
        return self.method.upper() not in SAFE_METHODS and any(
            issubclass(cls, DjangoModelPermissionsOrAnonReadOnly) for cls in self._permission_classes()
        )

    def get_auth(self) -> list[dict[str, list[Any]]]:
        """The bearer scheme, and `{}` (no credentials) where anonymous callers are let in."""
        auths: list[dict[str, list[Any]]] = super().get_auth()
        if self._anonymous_allowed() and {} not in auths:
            auths.append({})
        return auths

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        """Request bodies of strict serializers are closed: unknown keys are a 400 (StrictSerializerMixin); the
        read-only keys it accepts and ignores are listed with no constraint on their value."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        serializer = force_instance(serializer)
        if direction == "request" and isinstance(serializer, StrictSerializerMixin):
            properties = schema.setdefault("properties", {})
            for name in sorted(serializer.read_only_input):
                properties.setdefault(name, {"description": "Read-only: accepted and ignored."})
            schema["additionalProperties"] = False
            if is_patched_serializer(serializer, direction) and hasattr(serializer, "writable_field_names"):
                # A PATCH naming nothing to change is a 400 (ChangeRequiredMixin): it names at least one of them.
                preconditions: frozenset[str] = getattr(serializer, "precondition_fields", frozenset())
                changes = [name for name in serializer.writable_field_names() if name not in preconditions]
                schema["anyOf"] = [{"required": [name]} for name in changes]
        return schema

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        """drf-spectacular's, without its `oneOf: [<pattern>, {maxLength: 0}]` for a blank-allowed StrictCharField:
        its pattern admits "" already, and "" matching both branches would make the oneOf refuse it."""
        super()._insert_field_validators(field, schema)
        if isinstance(field, StrictCharField) and field.allow_blank and "oneOf" in schema:
            schema.update(schema.pop("oneOf")[0])


class StrictCharFieldExtension(OpenApiSerializerFieldExtension):
    """StrictCharField refuses NUL, and (without allow_blank) a value that is blank once trimmed: a pattern says so,
    unless a RegexValidator's own pattern (which admits neither) describes the field."""

    target_class = "movieapi.fields.StrictCharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        field = self.target
        schema: dict[str, Any] = auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        if direction == "request" and not any(isinstance(v, validators.RegexValidator) for v in field.validators):
            blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = NOT_BLANK_PATTERN if blank_refused else NO_NUL_PATTERN
        return schema


class DistinctListFieldExtension(OpenApiSerializerFieldExtension):
    """DistinctListField refuses repeated items."""

    target_class = "movieapi.fields.DistinctListField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["uniqueItems"] = True
        return schema


class BoundedFilterExtension(DjangoFilterExtension):
    """django-filter's parameters plus the bounds their form fields check (django-filter's extension maps types
    from the model: `year` read as the column's smallint range, not the filter's 0..2200)."""

    priority = 1

    def resolve_filter_field(
        self, auto_schema: AutoSchema, model: Any, filterset_class: Any, field_name: str, filter_field: Any
    ) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().resolve_filter_field(
            auto_schema, model, filterset_class, field_name, filter_field
        )
        form_field = filter_field.field
        for parameter in parameters:
            schema = parameter["schema"]
            if not schema and isinstance(form_field, forms.CharField):
                schema["type"] = "string"  # a `method=` filter whose hint is Any
            target = schema["items"] if schema.get("type") == "array" else schema
            # django-filter takes an empty value for "not given" (`year_min=` filters nothing).
            parameter["allowEmptyValue"] = True
            if filter_field.extra.get("help_text"):  # an @extend_schema_field schema drops it
                parameter.setdefault("description", filter_field.extra["help_text"])
            target.pop("nullable", None)  # an empty value is "not given"; null cannot be sent in a query
            _insert_form_validators(form_field, target)
        return parameters


def _insert_form_validators(form_field: Any, schema: dict[str, Any]) -> None:
    """What a Django form field checks, as JSON Schema keywords on its parameter's schema."""
    kind = schema.get("type")
    for validator in form_field.validators:
        limit: Any = getattr(validator, "limit_value", None)
        limit = limit() if callable(limit) else limit
        if kind in {"integer", "number"}:
            if isinstance(validator, validators.MinValueValidator):
                schema["minimum"] = max(limit, schema.get("minimum", limit))
            elif isinstance(validator, validators.MaxValueValidator):
                schema["maximum"] = min(limit, schema.get("maximum", limit))
        elif kind == "string":
            if isinstance(validator, validators.MaxLengthValidator):
                schema["maxLength"] = min(limit, schema.get("maxLength", limit))
            elif isinstance(validator, validators.ProhibitNullCharactersValidator):
                schema.setdefault("pattern", NO_NUL_PATTERN)


class BearerTokenScheme(KnoxTokenScheme):
    """The bearer-token security scheme for movieapi.authentication.TokenAuthentication (knox's, subclassed)."""

    target_class = "movieapi.authentication.TokenAuthentication"
