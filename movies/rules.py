"""The catalogue's rules, each in one place: the models' fields and constraints, the serializers, the admin's
forms and the importers all read them from here (lengths, bounds, id formats, the provenance's names)."""

from __future__ import annotations

import datetime
from typing import Any

# A movie.
MAX_TITLE_LENGTH = 500
MAX_OVERVIEW_LENGTH = 20000
MIN_YEAR = 1888
MAX_YEAR_AHEAD = 5
# The database ceiling for `year`; the API's own rule (max_year: this year + 5) is stricter and moves with time.
DB_MAX_YEAR = 2200
MAX_RUNTIME = 60000
MAX_GENRES = 10
MAX_DIRECTORS = 50
MAX_CAST = 500
# The movie's own columns that a write may set (the relations are genres, directors and cast).
SCALAR_FIELDS = ("title", "year", "runtime", "overview", "imdb_id")
RELATION_FIELDS = ("genres", "directors", "cast")

# The lists' `ordering`: comma-separated keys (empty parts count). The index serves the first key; a few more break
# its ties, and 1,300 repeated keys once reached the SQL and every `next` link.
MAX_ORDERING_KEYS = 3

# People, credits and genres.
MAX_NAME_LENGTH = 300
MAX_CHARACTER_LENGTH = 500
MAX_SLUG_LENGTH = 50
MAX_GENRE_NAME_LENGTH = 100

# IMDb's ids: a title's `tt…` and a person's `nm…`, 7 or more digits (IMDB_ID_LENGTH is the column's width).
IMDB_ID_LENGTH = 16
IMDB_TITLE_RE = r"^tt[0-9]{7,}$"
IMDB_NAME_RE = r"^nm[0-9]{7,}$"
SLUG_RE = r"^[a-z0-9]+(-[a-z0-9]+)*$"

# The fields of a movie whose source `Movie.field_sources` remembers (docs/loading-data.md).
PROVENANCE_FIELDS = (*SCALAR_FIELDS, *RELATION_FIELDS)
# What a curator writes through the API or the admin: above every import source.
CURATOR = "curator"
# The value each optional field of a movie has when nothing set it: a PUT that leaves one out resets it to this, and
# a movie's first version counts its changes from these.
EMPTY_OPTIONAL_VALUES: dict[str, Any] = {
    "runtime": None,
    "overview": "",
    "imdb_id": None,
    "genres": [],
    "directors": [],
    "cast": [],
}


def max_year() -> int:
    """The latest release year the API, the admin and the importers accept: this year + 5."""
    return datetime.date.today().year + MAX_YEAR_AHEAD
