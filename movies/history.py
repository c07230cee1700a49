"""What changed between two versions of a movie: a pure diff of two snapshots (docs/history.md, "Changes").

A snapshot is the movie's representation without `rating` (what `movies_movieversion.snapshot` holds). The diff
names only what differs:

    {"runtime": {"from": 136, "to": 137},                                   scalars
     "genres": {"added": ["thriller"], "removed": []},                      slugs
     "directors": {"added": [{"id": 7, "name": "…"}], "removed": []},      people, by id
     "cast": {"added": [entry], "removed": [entry], "reordered": [move]}}   entries by (person id, character)

A cast entry is `{"person": {"id", "name"}, "character", "order"}` (its order in the version that has it); a move is
`{"person", "character", "from": old order, "to": new order}`, listed for every kept entry whose order changed, and
only when the kept entries' relative order changed (an entry added at the top shifts the others without
reordering them). A renamed character is the old entry removed and the new one added.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from movies.rules import EMPTY_OPTIONAL_VALUES, SCALAR_FIELDS

Snapshot = Mapping[str, Any]

# What version 1's changes are taken from: a movie with nothing set, so its changes are the values it was created with.
EMPTY_SNAPSHOT: dict[str, Any] = {"title": None, "year": None, **EMPTY_OPTIONAL_VALUES}


def snapshot_diff(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """The changes from `before` to `after` (module docstring): only the fields that differ, {} for none."""
    changes: dict[str, Any] = {}
    for name in SCALAR_FIELDS:
        old, new = before.get(name), after.get(name)
        if old != new:
            changes[name] = {"from": old, "to": new}
    genres = _added_removed(list(before.get("genres") or []), list(after.get("genres") or []))
    if genres:
        changes["genres"] = genres
    directors = _directors_diff(before.get("directors") or [], after.get("directors") or [])
    if directors:
        changes["directors"] = directors
    cast = _cast_diff(before.get("cast") or [], after.get("cast") or [])
    if cast:
        changes["cast"] = cast
    return changes


def _added_removed(old: list[str], new: list[str]) -> dict[str, list[str]] | None:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    return {"added": added, "removed": removed} if added or removed else None


def _person(value: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": value.get("id"), "name": value.get("name")}


def _directors_diff(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Directors added and removed, by person id (a person renamed since is not a change of the movie)."""
    old_ids = {person["id"] for person in old}
    new_ids = {person["id"] for person in new}
    added = [_person(person) for person in new if person["id"] not in old_ids]
    removed = [_person(person) for person in old if person["id"] not in new_ids]
    return {"added": added, "removed": removed} if added or removed else None


def _cast_key(entry: Mapping[str, Any]) -> tuple[Any, str]:
    return entry["person"]["id"], entry.get("character") or ""


def _cast_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"person": _person(entry["person"]), "character": entry.get("character") or "", "order": entry["order"]}


def _cast_diff(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Cast entries added, removed and reordered, an entry being a (person id, character) pair (a multiset: the
    same person may play two parts)."""
    old_sorted = sorted(old, key=lambda entry: entry["order"])
    new_sorted = sorted(new, key=lambda entry: entry["order"])
    kept = Counter(_cast_key(entry) for entry in old_sorted) & Counter(_cast_key(entry) for entry in new_sorted)

    def split(entries: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        budget = Counter(kept)
        kept_entries, others = [], []
        for entry in entries:
            key = _cast_key(entry)
            if budget[key] > 0:
                budget[key] -= 1
                kept_entries.append(entry)
            else:
                others.append(entry)
        return kept_entries, others

    old_kept, removed = split(old_sorted)
    new_kept, added = split(new_sorted)
    diff: dict[str, Any] = {}
    if added or removed:
        diff["added"] = [_cast_entry(entry) for entry in added]
        diff["removed"] = [_cast_entry(entry) for entry in removed]
    if [_cast_key(entry) for entry in old_kept] != [_cast_key(entry) for entry in new_kept]:
        # Pair each kept entry's n-th occurrence before and after, and list those whose order moved.
        before: dict[tuple[Any, str], list[int]] = {}
        for entry in old_kept:
            before.setdefault(_cast_key(entry), []).append(entry["order"])
        moves = []
        for entry in new_kept:
            old_order = before[_cast_key(entry)].pop(0)
            if old_order != entry["order"]:
                moves.append(
                    {
                        "person": _person(entry["person"]),
                        "character": entry.get("character") or "",
                        "from": old_order,
                        "to": entry["order"],
                    }
                )
        diff["reordered"] = moves
    return diff or None


def version_changes(previous: Snapshot | None, snapshot: Snapshot, version: int) -> dict[str, Any] | None:
    """An entry's `changes`: from the previous version's snapshot; version 1's from nothing (the values it was
    created with); None when the previous version is not kept (purged past the retention horizon)."""
    if previous is None:
        return snapshot_diff(EMPTY_SNAPSHOT, snapshot) if version == 1 else None
    return snapshot_diff(previous, snapshot)


# The largest version a movie can have (the `version` columns are PostgreSQL integers).
MAX_VERSION = 2**31 - 1


class VersionEntry(NamedTuple):
    """One recorded version of a movie, as `movies_movieversion` holds it (selectors read them)."""

    version: int
    kind: str
    at: datetime.datetime
    actor: dict[str, Any]
    snapshot: dict[str, Any]


def history_entry(entry: VersionEntry, previous: VersionEntry | None) -> dict[str, Any]:
    """A history entry as the API shows it: version, kind, at, by, and the changes from `previous` (the version
    before, or None when it is not at hand)."""
    before = previous.snapshot if previous is not None and previous.version == entry.version - 1 else None
    return {
        "version": entry.version,
        "kind": entry.kind,
        "at": iso_datetime(entry.at),
        "by": entry.actor,
        "changes": version_changes(before, entry.snapshot, entry.version),
    }


def changes_since(entries: Sequence[VersionEntry], based_on: int, current: int) -> list[dict[str, Any]] | None:
    """What changed after version `based_on` up to `current`: one history entry per version, oldest first, from
    the entries of versions based_on..current (in any order). None when one of them is missing (not recorded, or
    purged past the retention horizon): a partial account would mislead a client merging."""
    if not 1 <= based_on < current:
        return None
    by_version = {entry.version: entry for entry in entries}
    if any(version not in by_version for version in range(based_on, current + 1)):
        return None
    return [history_entry(by_version[version], by_version[version - 1]) for version in range(based_on + 1, current + 1)]


def iso_datetime(value: datetime.datetime | str) -> str:
    """What DRF's DateTimeField writes: ISO 8601 in UTC with a Z."""
    if isinstance(value, str):
        return value
    text = value.astimezone(datetime.UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def snapshot_representation(snapshot: Snapshot, rating: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A snapshot in the Movie shape's key order (PostgreSQL's jsonb keeps keys in its own order), without `rating`,
    or with the `rating` given: then it is the body a GET answered at that version if the rating was that one."""
    body: dict[str, Any] = {name: snapshot.get(name) for name in ("id", "title", "year", "runtime", "overview")}
    body["imdb_id"] = snapshot.get("imdb_id")
    body["genres"] = list(snapshot.get("genres") or [])
    body["directors"] = [_person(person) for person in snapshot.get("directors") or []]
    body["cast"] = [_cast_entry(entry) for entry in sorted(snapshot.get("cast") or [], key=lambda e: e["order"])]
    if rating is not None:
        body["rating"] = dict(rating)
    for name in ("version", "created_at", "updated_at"):
        body[name] = snapshot.get(name)
    return body
