"""The values that travel through an import: a reader's items, the validated records, the errors reported and
what a written batch counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class InputUnusable(Exception):
    """The input as a whole cannot be read (missing file, unknown format, no header): exit code 2."""


class RowRejected(Exception):
    """One row is bad: the field and the reason go to the error report."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(slots=True)
class RowError:
    file: str
    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PersonRef:
    """A person as files name them: by IMDb nm id when there is one, else by name."""

    name: str
    imdb_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return ("nm", self.imdb_id) if self.imdb_id else ("name", self.name)


@dataclass(slots=True)
class MovieRecord:
    """A validated movie; `present` holds the fields the input carries (the others are left as they are)."""

    file: str
    line: int
    title: str
    year: int
    runtime: int | None = None
    overview: str = ""
    imdb_id: str | None = None
    genres: list[str] = field(default_factory=list)
    directors: list[PersonRef] = field(default_factory=list)
    cast: list[tuple[PersonRef, str]] = field(default_factory=list)
    present: frozenset[str] = frozenset()
    # The source's own key of the row (an export's catalogue `id`): two rows with distinct ids are distinct movies,
    # and a row finds the movie with that id when its title and year agree too (see BatchWriter._match).
    row_id: str | None = None

    @property
    def keys(self) -> list[tuple[Any, ...]]:
        """What makes two rows of one file the same movie: the IMDb id, the row's own id, else (title, year)."""
        keys: list[tuple[Any, ...]] = []
        if self.imdb_id:
            keys.append(("imdb", self.imdb_id))
        if self.row_id is not None:
            keys.append(("id", self.row_id))
        return keys or [("natural", self.title, self.year)]

    def carries(self, name: str) -> bool:
        """Whether the row says something about a field: present and not empty (an empty value is "not known")."""
        return name in self.present and getattr(self, name) not in (None, "", [])


# One item from a reader: (line number, a raw object or the reason the row cannot be read).
Item = tuple[int, "Mapping[str, Any] | RowRejected"]


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    linked: int = 0
    merged: int = 0
    # What the batch found ambiguous (reported once the batch is committed, not on each attempt).
    notes: list[RowError] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.linked += other.linked
        self.merged += other.merged
        self.notes += other.notes


class BatchConflict(Exception):
    """A locked row did not have the version read: the batch is rolled back and retried."""
