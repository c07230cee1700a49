"""The changes between two snapshots (movies/history.py): pure, no database."""

from __future__ import annotations

import datetime
from typing import Any

from movies.history import VersionEntry, changes_since, snapshot_diff, version_changes

KEANU = {"id": 9, "name": "Keanu Reeves"}
CARRIE = {"id": 10, "name": "Carrie-Anne Moss"}
LAURENCE = {"id": 11, "name": "Laurence Fishburne"}


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1,
        "title": "The Matrix",
        "year": 1999,
        "runtime": 136,
        "overview": "",
        "imdb_id": "tt0133093",
        "genres": ["action", "science-fiction"],
        "directors": [{"id": 7, "name": "Lana Wachowski"}],
        "cast": [
            {"person": KEANU, "character": "Neo", "order": 0},
            {"person": CARRIE, "character": "Trinity", "order": 1},
        ],
        "version": 1,
        "created_at": "2026-11-24T10:00:00Z",
        "updated_at": "2026-11-24T10:00:00Z",
    }
    return {**base, **fields}


def test_equal_snapshots_have_no_changes_whatever_their_versions_and_times() -> None:
    assert snapshot_diff(snapshot(), snapshot(version=2, updated_at="2026-11-25T00:00:00Z")) == {}


def test_scalars_are_from_and_to() -> None:
    changes = snapshot_diff(snapshot(), snapshot(runtime=137, imdb_id=None, title="Matrix"))
    assert changes == {
        "title": {"from": "The Matrix", "to": "Matrix"},
        "runtime": {"from": 136, "to": 137},
        "imdb_id": {"from": "tt0133093", "to": None},
    }


def test_genres_and_directors_are_added_and_removed() -> None:
    changes = snapshot_diff(
        snapshot(),
        snapshot(genres=["action", "thriller"], directors=[{"id": 8, "name": "Lilly Wachowski"}]),
    )
    assert changes == {
        "genres": {"added": ["thriller"], "removed": ["science-fiction"]},
        "directors": {
            "added": [{"id": 8, "name": "Lilly Wachowski"}],
            "removed": [{"id": 7, "name": "Lana Wachowski"}],
        },
    }


def test_a_renamed_director_is_not_a_change_of_the_movie() -> None:
    assert snapshot_diff(snapshot(), snapshot(directors=[{"id": 7, "name": "L. Wachowski"}])) == {}


def test_cast_added_at_the_top_shifts_without_reordering() -> None:
    new_cast = [
        {"person": LAURENCE, "character": "Morpheus", "order": 0},
        {"person": KEANU, "character": "Neo", "order": 1},
        {"person": CARRIE, "character": "Trinity", "order": 2},
    ]
    assert snapshot_diff(snapshot(), snapshot(cast=new_cast)) == {
        "cast": {"added": [{"person": LAURENCE, "character": "Morpheus", "order": 0}], "removed": []}
    }


def test_cast_reordered_lists_the_moves() -> None:
    swapped = [
        {"person": CARRIE, "character": "Trinity", "order": 0},
        {"person": KEANU, "character": "Neo", "order": 1},
    ]
    assert snapshot_diff(snapshot(), snapshot(cast=swapped)) == {
        "cast": {
            "reordered": [
                {"person": CARRIE, "character": "Trinity", "from": 1, "to": 0},
                {"person": KEANU, "character": "Neo", "from": 0, "to": 1},
            ]
        }
    }


def test_a_renamed_character_is_removed_and_added() -> None:
    cast = [
        {"person": KEANU, "character": "Thomas Anderson", "order": 0},
        {"person": CARRIE, "character": "Trinity", "order": 1},
    ]
    assert snapshot_diff(snapshot(), snapshot(cast=cast)) == {
        "cast": {
            "added": [{"person": KEANU, "character": "Thomas Anderson", "order": 0}],
            "removed": [{"person": KEANU, "character": "Neo", "order": 0}],
        }
    }


def test_one_person_in_two_parts_is_counted_twice() -> None:
    two_parts = [
        {"person": KEANU, "character": "Neo", "order": 0},
        {"person": KEANU, "character": "Neo", "order": 1},
    ]
    assert snapshot_diff(snapshot(cast=two_parts[:1]), snapshot(cast=two_parts)) == {
        "cast": {"added": [{"person": KEANU, "character": "Neo", "order": 1}], "removed": []}
    }


def test_version_one_changes_are_the_created_values() -> None:
    created = snapshot(runtime=None, cast=[], directors=[])
    assert version_changes(None, created, 1) == {
        "title": {"from": None, "to": "The Matrix"},
        "year": {"from": None, "to": 1999},
        "imdb_id": {"from": None, "to": "tt0133093"},
        "genres": {"added": ["action", "science-fiction"], "removed": []},
    }
    assert version_changes(None, created, 3) is None  # the version before is not kept


def entry(version: int, **fields: Any) -> VersionEntry:
    at = datetime.datetime(2026, 12, 6, 16, version, tzinfo=datetime.UTC)
    by = {"kind": "user", "id": version, "username": f"u{version}"}
    return VersionEntry(version, "updated", at, by, snapshot(version=version, **fields))


def test_changes_since_is_one_entry_per_version_oldest_first() -> None:
    entries = [entry(3, runtime=140), entry(1), entry(2, runtime=137)]
    assert changes_since(entries, 1, 3) == [
        {"version": 2, "kind": "updated", "at": "2026-12-06T16:02:00Z", "by": entries[2].actor,
         "changes": {"runtime": {"from": 136, "to": 137}}},
        {"version": 3, "kind": "updated", "at": "2026-12-06T16:03:00Z", "by": entries[0].actor,
         "changes": {"runtime": {"from": 137, "to": 140}}},
    ]  # fmt: skip


def test_changes_since_is_left_out_when_a_version_is_missing_or_none_changed() -> None:
    assert changes_since([entry(1), entry(3)], 1, 3) is None
    assert changes_since([entry(2), entry(3)], 1, 3) is None  # the version it was based on
    assert changes_since([entry(3)], 3, 3) is None
    assert changes_since([entry(3)], 5, 3) is None
