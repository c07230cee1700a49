"""Who writes a movie aggregate, and how long its versions are kept (docs/history.md).

PostgreSQL records every version itself (movies/history_sql.py); the application only names the writer: each
service that writes a movie takes an `Actor` and sets it for its transaction (`movieapi.actor`), which the
triggers read when they record the version.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from movies import history_sql

ActorKind = Literal["user", "admin", "import", "database"]
# What an import names as its source: our JSON (and JSON Lines) or CSV files, IMDb's or MovieLens' folders.
ImportSource = Literal["json", "csv", "imdb", "movielens"]


@dataclass(frozen=True)
class Actor:
    """Who writes: an API user, a curator in the admin, an import (its source), or the database itself (a write
    made outside the application, which PostgreSQL records when no actor is set)."""

    kind: ActorKind
    id: int | None = None
    username: str | None = None
    source: ImportSource | None = None

    @classmethod
    def user(cls, user: Any) -> Actor:
        """A user of the API (a curator's token)."""
        return cls("user", id=user.pk, username=user.get_username())

    @classmethod
    def admin(cls, user: Any) -> Actor:
        """A curator in the admin."""
        return cls("admin", id=user.pk, username=user.get_username())

    @classmethod
    def importer(cls, source: ImportSource) -> Actor:
        """An import of one source."""
        return cls("import", source=source)

    def as_json(self) -> str:
        """The actor as the history records it: `{"kind": "user", "id": 3, "username": "alice"}`."""
        fields = {"kind": self.kind, "id": self.id, "username": self.username, "source": self.source}
        return json.dumps({name: value for name, value in fields.items() if value is not None})


def actor_set(*, actor: Actor, cursor: psycopg.Cursor[Any] | None = None) -> None:
    """Name the writer of the movies this transaction writes (on cursor, else on Django's connection): the history
    records it with their versions. The services call it first in each write's transaction."""
    if cursor is not None:
        cursor.execute(history_sql.ACTOR_SET_SQL, [actor.as_json()])
        return
    with connection.cursor() as django_cursor:
        django_cursor.execute(history_sql.ACTOR_SET_SQL, [actor.as_json()])


def retention_days() -> int | None:
    """HISTORY_RETENTION_DAYS: how many days of versions are kept (None: all of them)."""
    days: int | None = settings.HISTORY_RETENTION_DAYS
    return days


def retention_horizon(now: datetime.datetime | None = None) -> datetime.datetime | None:
    """The time before which versions may have been purged (a movie's latest is always kept); None: keep all."""
    days = retention_days()
    if days is None:
        return None
    return (now or timezone.now()) - datetime.timedelta(days=days)


def history_purge(*, before: datetime.datetime) -> int:
    """Delete the versions recorded before `before`, except each movie's latest; how many went."""
    with connection.cursor() as cursor:
        cursor.execute(history_sql.PURGE_SQL, [before])
        return cursor.rowcount
