"""Validation of one input row: `validate_movie` turns a reader's raw object into a `MovieRecord`, or raises
`RowRejected` naming the field; the bounds are the catalogue's own (movies/rules.py)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from django.utils.text import slugify

from movies.importers.records import MovieRecord, PersonRef, RowRejected
from movies.rules import (
    IMDB_ID_LENGTH,
    IMDB_NAME_RE,
    IMDB_TITLE_RE,
    MAX_CAST,
    MAX_CHARACTER_LENGTH,
    MAX_DIRECTORS,
    MAX_GENRES,
    MAX_NAME_LENGTH,
    MAX_OVERVIEW_LENGTH,
    MAX_RUNTIME,
    MAX_SLUG_LENGTH,
    MAX_TITLE_LENGTH,
    MIN_YEAR,
    RELATION_FIELDS,
    SCALAR_FIELDS,
    SLUG_RE,
    max_year,
)

TITLE_ID = re.compile(IMDB_TITLE_RE)
NAME_ID = re.compile(IMDB_NAME_RE)
_SLUG = re.compile(SLUG_RE)
_INTEGER = re.compile(r"^[+-]?\d+$")


def clean_text(value: Any, name: str, *, max_length: int, required: bool = False, strip: bool = True) -> str:
    """Text PostgreSQL can store: integers become text, NUL bytes and undecodable bytes are refused."""
    if type(value) is not str:
        if value is None:
            value = ""
        elif isinstance(value, int) and not isinstance(value, bool):
            # JSON writers often emit numeric-looking titles or characters as numbers: "1917" is a title.
            value = str(value)
        elif not isinstance(value, str):
            raise RowRejected(name, f"must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise RowRejected(name, "contains a NUL byte")
    if not value.isascii():  # ASCII text has neither undecodable bytes nor lone surrogates
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RowRejected(name, "is not valid UTF-8 (undecodable bytes or a lone surrogate)") from None
    if strip:
        value = value.strip()
    if required and not value:
        raise RowRejected(name, "is required")
    if len(value) > max_length:
        raise RowRejected(name, f"is longer than {max_length} characters ({len(value)})")
    return value


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """A value as a field of COPY's text format: backslash, tab and line breaks escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def clean_int(value: Any, name: str, *, low: int, high: int, required: bool = False) -> int | None:
    """A whole number in [low, high]: JSON integers, integral floats, or text of digits."""
    if type(value) is str and value.isascii() and value.isdigit():  # the common case in CSV and TSV
        number = int(value)
        if low <= number <= high:
            return number
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowRejected(name, "is required")
        return None
    if isinstance(value, bool):
        raise RowRejected(name, "must be a whole number, not a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise RowRejected(name, f"must be a whole number, got {value!r}")
        value = int(value)
    elif isinstance(value, str):
        if not _INTEGER.match(value.strip()):
            raise RowRejected(name, f"must be a whole number, got {value[:40]!r}")
        value = int(value.strip())
    elif not isinstance(value, int):
        raise RowRejected(name, f"must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        raise RowRejected(name, f"must be between {low} and {high}, got {value}")
    return value


def clean_imdb_id(value: Any, name: str, pattern: re.Pattern[str], prefix: str) -> str | None:
    if value is None or value == "":
        return None
    text = clean_text(value, name, max_length=IMDB_ID_LENGTH).lower()
    if not text:
        return None
    if not pattern.match(text):
        raise RowRejected(name, f"must be {prefix!r} followed by 7 or more digits, got {text[:40]!r}")
    return text


@functools.lru_cache(maxsize=4096)
def to_slug(text: str) -> str:
    return slugify(text)


def clean_genres(value: Any) -> list[str]:
    """Genre slugs, de-duplicated in order; a CSV cell separates them with '|'."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list):
        raise RowRejected("genres", f"must be a list of genre slugs, not {type(value).__name__}")
    slugs: list[str] = []
    for item in value:
        text = clean_text(item, "genres", max_length=MAX_SLUG_LENGTH)
        if not text:
            continue
        slug = to_slug(text)
        if not _SLUG.match(slug):
            raise RowRejected("genres", f"{text[:40]!r} is not a genre slug")
        if slug not in slugs:
            slugs.append(slug)
    if len(slugs) > MAX_GENRES:
        raise RowRejected("genres", f"has {len(slugs)} genres; at most {MAX_GENRES}")
    return slugs


def clean_person(value: Any, name: str) -> PersonRef:
    """A person: a name, or {"name": ..., "imdb_id": "nm..."} (also {"person": {...}} as the API shows it)."""
    if isinstance(value, Mapping) and isinstance(value.get("person"), Mapping):
        value = value["person"]
    if isinstance(value, Mapping):
        return PersonRef(
            clean_text(value.get("name"), f"{name}.name", max_length=MAX_NAME_LENGTH, required=True),
            clean_imdb_id(value.get("imdb_id"), f"{name}.imdb_id", NAME_ID, "nm"),
        )
    return PersonRef(clean_text(value, name, max_length=MAX_NAME_LENGTH, required=True))


def _people_list(value: Any, name: str) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        # A CSV cell: a JSON array, or plain names separated by '|'.
        if value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise RowRejected(name, f"is not a valid JSON array: {exc}") from None
        else:
            value = [part for part in value.split("|") if part.strip()]
    if not isinstance(value, list):
        raise RowRejected(name, f"must be a list, not {type(value).__name__}")
    return value


def clean_directors(value: Any) -> list[PersonRef]:
    directors: list[PersonRef] = []
    for index, item in enumerate(_people_list(value, "directors")):
        person = clean_person(item, f"directors[{index}]")
        if person not in directors:
            directors.append(person)
    if len(directors) > MAX_DIRECTORS:
        raise RowRejected("directors", f"has {len(directors)} directors; at most {MAX_DIRECTORS}")
    return directors


def clean_cast(value: Any) -> list[tuple[PersonRef, str]]:
    cast: list[tuple[PersonRef, str]] = []
    for index, item in enumerate(_people_list(value, "cast")):
        character = item.get("character") if isinstance(item, Mapping) else None
        cast.append(
            (
                clean_person(item, f"cast[{index}]"),
                clean_text(character, f"cast[{index}].character", max_length=MAX_CHARACTER_LENGTH),
            )
        )
    if len(cast) > MAX_CAST:
        raise RowRejected("cast", f"has {len(cast)} entries; at most {MAX_CAST}")
    return cast


def clean_row_id(value: Any) -> str | None:
    """The row's own key: a whole number or a short text, kept as text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowRejected("id", f"must be a whole number or text, not {type(value).__name__}")
    return clean_text(value, "id", max_length=100) or None


def validate_movie(raw: Any, *, file: str, line: int) -> MovieRecord:
    """Turn one input object into a MovieRecord, or raise RowRejected naming the first bad field."""
    if not isinstance(raw, Mapping):
        raise RowRejected("-", f"expected an object, got {type(raw).__name__}")
    present = frozenset(name for name in (*SCALAR_FIELDS, *RELATION_FIELDS) if name in raw)
    return MovieRecord(
        file=file,
        line=line,
        title=clean_text(raw.get("title"), "title", max_length=MAX_TITLE_LENGTH, required=True),
        year=clean_int(raw.get("year"), "year", low=MIN_YEAR, high=max_year(), required=True),  # type: ignore[arg-type]
        runtime=clean_int(raw.get("runtime"), "runtime", low=1, high=MAX_RUNTIME),
        overview=clean_text(raw.get("overview"), "overview", max_length=MAX_OVERVIEW_LENGTH, strip=False),
        imdb_id=clean_imdb_id(raw.get("imdb_id"), "imdb_id", TITLE_ID, "tt"),
        genres=clean_genres(raw.get("genres")),
        directors=clean_directors(raw.get("directors")),
        cast=clean_cast(raw.get("cast")),
        present=present | {"title", "year"},
        row_id=clean_row_id(raw.get("id")),
    )
