"""A movie as the API shows it, from its representation row: the one place that shapes a movie."""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from movies.sql import MovieRow


def movie_representation(row: MovieRow) -> dict[str, Any]:
    """A movie as the API shows it (MovieSerializer's fields), from its representation row.

    The one place that shapes a movie: the detail and list views pass rows of `selectors.movie_detail` and
    `selectors.movie_page` (directors and cast as JSON text from PostgreSQL), MovieSerializer passes a Movie's.
    """
    average, directors, cast = row.rating_average, row.directors, row.cast
    return {
        "id": row.id,
        "title": row.title,
        "year": row.year,
        "runtime": row.runtime,
        "overview": row.overview,
        "imdb_id": row.imdb_id,
        "genres": list(row.genres),
        "directors": orjson.loads(directors) if isinstance(directors, str) else directors,
        "cast": orjson.loads(cast) if isinstance(cast, str) else cast,
        "rating": {"average": float(average) if average is not None else None, "count": row.rating_count},
        "version": row.version,
        "created_at": _iso_datetime(row.created_at),
        "updated_at": _iso_datetime(row.updated_at),
    }


def _iso_datetime(value: datetime.datetime | None) -> str | None:
    """What DRF's DateTimeField writes: ISO 8601 in UTC with a Z."""
    if value is None:
        return None
    text = value.astimezone(datetime.UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
