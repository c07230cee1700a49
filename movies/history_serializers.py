"""JSON shapes of a movie's history (docs/history.md): its entries, the changes between versions, a version's
snapshot, and the body of a revert. The entries are built by `movies.history_views` as plain dicts; these
serializers give them their OpenAPI schema and pass them through."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from movieapi.fields import StrictIntegerField, StrictSerializerMixin
from movies.history import MAX_VERSION
from movies.serializers import MovieSerializer


def _scalar_change(kind: str) -> dict[str, Any]:
    value = {"type": kind, "nullable": True}
    return {
        "type": "object",
        "properties": {"from": value, "to": value},
        "required": ["from", "to"],
        "additionalProperties": False,
    }


_PERSON = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
    "required": ["id", "name"],
}
_CAST_ENTRY = {
    "type": "object",
    "properties": {"person": _PERSON, "character": {"type": "string"}, "order": {"type": "integer"}},
    "required": ["person", "character", "order"],
}
_CAST_MOVE = {
    "type": "object",
    "properties": {
        "person": _PERSON,
        "character": {"type": "string"},
        "from": {"type": "integer", "description": "Its order before."},
        "to": {"type": "integer", "description": "Its order after."},
    },
    "required": ["person", "character", "from", "to"],
}


def _added_removed(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"added": {"type": "array", "items": item}, "removed": {"type": "array", "items": item}},
        "required": ["added", "removed"],
        "additionalProperties": False,
    }


# The `changes` shape (movies/history.py): only the fields that changed are present.
CHANGES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Only the fields that changed. Scalars as from/to; genres (slugs) and directors (by id) added/removed; cast "
        "entries, a (person, character) pair, added/removed, and `reordered` (each kept entry whose order moved) when "
        "the kept entries' relative order changed. Version 1's are the values it was created with (from null)."
    ),
    "properties": {
        "title": _scalar_change("string"),
        "year": _scalar_change("integer"),
        "runtime": _scalar_change("integer"),
        "overview": _scalar_change("string"),
        "imdb_id": _scalar_change("string"),
        "genres": _added_removed({"type": "string"}),
        "directors": _added_removed(_PERSON),
        "cast": {
            "type": "object",
            "properties": {
                "added": {"type": "array", "items": _CAST_ENTRY},
                "removed": {"type": "array", "items": _CAST_ENTRY},
                "reordered": {"type": "array", "items": _CAST_MOVE},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@extend_schema_field({**CHANGES_SCHEMA, "nullable": True})
class ChangesField(serializers.JSONField):
    """A version's changes (CHANGES_SCHEMA); null when the previous version is no longer kept."""


@extend_schema_field(
    {
        "type": "object",
        "description": (
            "Who wrote the version: `kind` is `user` (with `id` and `username`), `admin` (with `id` and `username`), "
            "`import` (with `source`: json, csv, imdb, movielens) or `database` (a write made outside the application)."
        ),
        "properties": {
            "kind": {"type": "string"},
            "id": {"type": "integer", "nullable": True},
            "username": {"type": "string", "nullable": True},
            "source": {"type": "string", "nullable": True},
        },
        "required": ["kind"],
    }
)
class ActorField(serializers.JSONField):
    """Who wrote a version, as recorded."""


class _PassThrough(serializers.Serializer):
    """Serializes a dict that is already in the declared shape (built by the view): the declared fields are the
    schema's."""

    def to_representation(self, instance: Any) -> Any:
        return instance


class HistoryEntrySerializer(_PassThrough):
    """One version of a movie: what changed from the version before, who wrote it and when."""

    version = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=["created", "updated", "deleted"], read_only=True)
    at = serializers.DateTimeField(read_only=True)
    by = ActorField(read_only=True)
    changes = ChangesField(read_only=True)


class MovieSnapshotSerializer(_PassThrough, MovieSerializer):
    """A movie as it was at one version: the Movie shape without `rating`."""

    rating = None  # type: ignore[assignment]  # DRF: a field set to None is removed from the inherited ones


class RevertSerializer(StrictSerializerMixin, serializers.Serializer):
    """Revert a movie to an earlier version: a new version equal to `to_version`. `version` (or If-Match) says
    which version the revert is based on, as for PATCH."""

    read_only_input: frozenset[str] = frozenset()

    to_version = StrictIntegerField(
        min_value=1, max_value=MAX_VERSION, help_text="The version whose values the movie takes again."
    )
    version = StrictIntegerField(
        min_value=1, required=False, help_text="The version this write is based on (or send If-Match)."
    )
