"""Record movie versions in tests exactly as the database's history triggers do (docs/history.md): one
`movies_movieversion` row per version, its snapshot the API's GET body without `rating`.

The triggers record a version when its transaction commits (deferred): a test inside Django's test transaction,
which never commits, sees no entry. Such tests call `record` after each write, which writes the entry the trigger
would; where the trigger did record it (tests with `transaction=True`), `record` leaves it as it is (it never
records a version twice). `history_is_recorded` tells a test whether the triggers are in place.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from movies import selectors
from movies.models import MovieVersion
from movies.representation import movie_representation

CURATOR_ACTOR = {"kind": "user", "id": None, "username": "curator"}


def snapshot_now(movie_id: int) -> dict[str, Any]:
    """The movie's API representation without `rating`: what the trigger records."""
    row = selectors.movie_detail(movie_id=movie_id)
    assert row is not None, f"movie {movie_id} does not exist"
    body = movie_representation(row)
    del body["rating"]
    return body


def _xid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return int(cursor.fetchone()[0])


def record(movie_id: int, *, actor: dict[str, Any] | None = None) -> MovieVersion:
    """The movie's current version recorded (created at version 1, updated after), unless it already is."""
    snapshot = snapshot_now(movie_id)
    existing = MovieVersion.objects.filter(movie_id=movie_id, version=snapshot["version"]).first()
    if existing is not None:
        return existing
    return MovieVersion.objects.create(
        movie_id=movie_id,
        version=snapshot["version"],
        kind="created" if snapshot["version"] == 1 else "updated",
        at=selectors.movie_detail(movie_id=movie_id).updated_at,  # type: ignore[union-attr]
        actor=actor or CURATOR_ACTOR,
        snapshot=snapshot,
        xid=_xid(),
    )


def record_deletion(movie_id: int, *, actor: dict[str, Any] | None = None) -> MovieVersion:
    """The deleted movie's final entry: the version after its last, its snapshot the last state (unless recorded)."""
    last = MovieVersion.objects.filter(movie_id=movie_id).order_by("-version").first()
    assert last is not None, "record the movie's versions before its deletion"
    if last.kind == "deleted":
        return last
    from django.utils import timezone

    return MovieVersion.objects.create(
        movie_id=movie_id,
        version=last.version + 1,
        kind="deleted",
        at=timezone.now(),
        actor=actor or CURATOR_ACTOR,
        snapshot=last.snapshot,
        xid=_xid(),
    )


def history_is_recorded(movie_id: int) -> bool:
    """True when the database records versions by itself (the triggers are installed)."""
    return MovieVersion.objects.filter(movie_id=movie_id).exists()
