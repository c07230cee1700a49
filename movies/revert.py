"""Revert a movie to an earlier version (docs/history.md, "Revert"): that version's snapshot, resolved to today's
genres and people, written as a new version through `services.movie_update`, the one versioned write. The API's
`POST movies/{id}/revert/` and the admin's history page both call `movie_revert`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from movies import selectors, services
from movies.errors import MovieNotFound, RevertImpossible
from movies.models import Genre, Person
from movies.versions import Actor


def snapshot_data(snapshot: Mapping[str, Any]) -> services.MovieData:
    """A snapshot as the data of a write: every field, genres and people resolved as they are now. RevertImpossible
    names the genres and people that no longer exist."""
    slugs = list(snapshot.get("genres") or [])
    director_ids = [person["id"] for person in snapshot.get("directors") or []]
    cast = sorted(snapshot.get("cast") or [], key=lambda entry: entry["order"])
    cast_ids = [entry["person"]["id"] for entry in cast]
    genres = {genre.slug: genre for genre in Genre.objects.filter(slug__in=slugs)}
    people = {person.pk: person for person in Person.objects.filter(pk__in={*director_ids, *cast_ids})}
    errors: dict[str, list[str]] = {}
    gone_genres = [slug for slug in slugs if slug not in genres]
    if gone_genres:
        errors["genres"] = [f"No longer exist: {', '.join(gone_genres)}."]
    for field, named in (("directors", snapshot.get("directors") or []), ("cast", [e["person"] for e in cast])):
        gone = list({person["id"]: person for person in named if person["id"] not in people}.values())
        if gone:
            names = ", ".join(f"{person.get('name')} (id {person['id']})" for person in gone)
            errors[field] = [f"No longer exist: {names}."]
    if errors:
        raise RevertImpossible(
            "That version names genres or people that have been deleted since (see `errors`). Recreate them, or "
            "PATCH the movie with the values you want instead.",
            errors=errors,
        )
    return {
        "title": snapshot["title"],
        "year": snapshot["year"],
        "runtime": snapshot.get("runtime"),
        "overview": snapshot.get("overview") or "",
        "imdb_id": snapshot.get("imdb_id"),
        "genres": [genres[slug] for slug in slugs],
        "directors": [people[pk] for pk in director_ids],
        "cast": [services.Role(people[entry["person"]["id"]], entry.get("character") or "") for entry in cast],
    }


def movie_revert(*, movie_id: int, to_version: int, expected_version: int, actor: Actor) -> services.MovieWritten:
    """Write version `to_version` of the movie again, as a new version, if the movie is still at expected_version
    (VersionConflict otherwise, MovieNotFound if it is gone, RevertImpossible if that version cannot be written)."""
    snapshot = selectors.movie_version_snapshot(movie_id=movie_id, version=to_version)
    if snapshot is None:
        if selectors.movie_version(movie_id=movie_id) is None:
            raise MovieNotFound("No such movie: it may have been deleted.")
        raise RevertImpossible(
            f"This movie has no recorded version {to_version}. GET its history/ for the versions there are.",
            errors={"to_version": [f"No version {to_version} is recorded for this movie."]},
        )
    return services.movie_update(
        movie_id=movie_id, expected_version=expected_version, data=snapshot_data(snapshot), actor=actor
    )
