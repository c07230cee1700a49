"""Strict serializer input: the wrong JSON type, NUL bytes, lone surrogates, unknown fields, incomplete nested
objects and empty PATCHes are 400s, never 500s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from movieapi.errors import unknown_names_errors

PG_BIGINT_MAX = 2**63 - 1
# The characters Python's str.strip() removes (DRF trims CharFields, Django's forms their values, with it), as a
# regular-expression character class body: exactly the code points whose isspace() is true. ECMA's `\s` differs
# (it has U+FEFF, lacks U+001C-U+001F and U+0085), so schema patterns spell it out; test_schema checks every one.
PY_WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings PostgreSQL can store."""

    default_error_messages = {
        "not_a_string": "Must be a string, not {kind}.",
        "nul": "Must not contain NUL (\\u0000) characters.",
        "surrogate": "Must not contain lone UTF-16 surrogates; send valid Unicode.",
    }

    def to_internal_value(self, data: Any) -> str:
        """Refuse non-strings, NUL, surrogates and (before any trimming) more than max_length characters, then
        validate as usual. DRF checks max_length on the trimmed value: "a" * 100 + " " would pass a max_length of
        100, which the schema's maxLength (the length as sent) refuses."""
        if not isinstance(data, str):
            self.fail("not_a_string", kind=type(data).__name__)
        if "\x00" in data:
            self.fail("nul")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("surrogate")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length, length=len(data))
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that takes only JSON integers (no strings, floats or booleans) within bigint."""

    default_error_messages = {"not_an_integer": "Must be an integer, not {kind}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", PG_BIGINT_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        """Refuse anything but a JSON integer, then range-check."""
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer", kind=type(data).__name__)
        return super().to_internal_value(data)


class DistinctListField(serializers.ListField):
    """A list whose items may each appear once (the schema says `uniqueItems: true`)."""

    default_error_messages = {"duplicates": "Each item may appear only once; repeated: {items}."}

    def to_internal_value(self, data: Any) -> list[Any]:
        """Validate the items, then refuse repeats."""
        items: list[Any] = super().to_internal_value(data)
        if len(set(items)) != len(items):
            repeated = [item for item in dict.fromkeys(items) if items.count(item) > 1]
            self.fail("duplicates", items=", ".join(map(str, repeated)))
        return items


class StrictSerializerMixin:
    """Refuse fields the resource does not have (400 naming them); ignore read-only ones."""

    read_only_input: frozenset[str] = frozenset()
    serializer_field_mapping: dict[Any, Any]

    def known_field_names(self) -> set[str]:
        """The names a client may send."""
        return set(self.fields)  # type: ignore[attr-defined]

    def to_internal_value(self, data: Any) -> Any:
        """Check the keys before DRF validates the values."""
        if isinstance(data, Mapping):
            known = self.known_field_names() | self.read_only_input
            unknown = [str(key) for key in data if key not in known]
            if unknown:
                raise serializers.ValidationError(
                    unknown_names_errors(unknown, "This field does not exist on this resource.", what="fields")
                )
            data = {key: value for key, value in data.items() if key not in self.read_only_input}
        return super().to_internal_value(data)  # type: ignore[misc]


class WholeWhenNestedMixin:
    """A nested object is validated whole, even inside a PATCH.

    DRF decides partiality by the root serializer: under a PATCH every nested serializer skips its missing required
    fields and its defaults, so a cast entry without `person` reached `validate_cast` as `{}` (KeyError, a 500).
    A PATCH replaces a nested list as a whole, so each entry must be complete: this enforces what DRF would for a POST.
    """

    parent: Any
    root: Any
    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        """Missing required fields are errors and missing defaults are filled, whatever the root's partiality."""
        if self.parent is None or not isinstance(data, Mapping) or not getattr(self.root, "partial", False):
            return super().to_internal_value(data)  # type: ignore[misc]
        missing = {
            name: [field.error_messages["required"]]
            for name, field in self.fields.items()
            if field.required and name not in data
        }
        try:
            attrs = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if missing and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**missing, **exc.detail}) from exc
            raise
        if missing:
            raise serializers.ValidationError(missing)
        for name, field in self.fields.items():
            if name not in data and not field.read_only and field.default is not empty:
                attrs[field.source] = field.default() if callable(field.default) else field.default
        return attrs


class ChangeRequiredMixin:
    """A PATCH must name at least one field to change: one naming none would be acknowledged having done nothing."""

    partial: bool
    fields: Any
    # Fields that say what a write is based on, not what it changes (the movie's `version`).
    precondition_fields: frozenset[str] = frozenset()

    def writable_field_names(self) -> list[str]:
        """The fields a client can change, in declaration order."""
        return [name for name, field in self.fields.items() if not field.read_only]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """400 for a partial update that names nothing to change."""
        # attrs holds only validated writable fields (read-only ones never reach it): anything but a precondition
        # is a change.
        if self.partial and not attrs.keys() - self.precondition_fields:
            writable = [name for name in self.writable_field_names() if name not in self.precondition_fields]
            raise serializers.ValidationError(f"Nothing to change: name at least one of {', '.join(writable)}.")
        validated: dict[str, Any] = super().validate(attrs)  # type: ignore[misc]
        return validated
