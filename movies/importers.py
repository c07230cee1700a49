"""Bulk loading of movies: readers for our formats, IMDb's TSV files and MovieLens, and a batch writer.

Every reader turns its input into plain dicts in our export shape; `validate_movie` turns each into a
`MovieRecord` or a `RowRejected` naming the field. `Importer` streams records in batches of
`batch_size` into `write_batch`, the bulk form of the versioned write path in `movies.services`:
new movies start at version 1, a changed movie moves to version + 1 exactly once, with a conditional
`UPDATE ... WHERE version = <the version read>` on rows locked for the batch's transaction.
Each batch is one transaction, so a crash leaves every batch fully in or fully out.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils.text import slugify

from movies import services
from movies.models import CastMember, Movie, Person
from movies.rules import (
    CURATOR,
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
    PROVENANCE_FIELDS,
    RELATION_FIELDS,
    SCALAR_FIELDS,
    SLUG_RE,
    max_year,
)

FORMATS = ("auto", "json", "jsonl", "csv", "imdb", "movielens")
CSV_COLUMNS = (*SCALAR_FIELDS, *RELATION_FIELDS)
# A CSV file may also carry the exporting catalogue's `id` of each row (see MovieRecord.row_id).
CSV_READ_COLUMNS = ("id", *CSV_COLUMNS)

# IMDb and MovieLens genre names that differ from our slugs; any other name becomes a genre of its own.
EXTERNAL_GENRES = {
    "sci-fi": "science-fiction",
    "science fiction": "science-fiction",
    "children": "family",
    "children's": "family",
}
# Not genres but presentation formats: dropped.
IGNORED_GENRES = {"imax", "(no genres listed)"}
IMDB_CAST_CATEGORIES = {"actor", "actress", "self"}
# Lines of COPY text sent to PostgreSQL at once when staging the IMDb side files.
STAGE_CHUNK = 4096

_TITLE_ID = re.compile(IMDB_TITLE_RE)
_NAME_ID = re.compile(IMDB_NAME_RE)
_SLUG = re.compile(SLUG_RE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_MOVIELENS_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_MOVIELENS_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>The|A|An)$")
# MovieLens adds the original title in parentheses: "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)".
_MOVIELENS_ALSO_KNOWN = re.compile(r"^(?P<title>.*\S)\s+\((?:a\.k\.a\. )?[^()]+\)$")


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


# ---- validation --------------------------------------------------------------------------------


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
def _slug(text: str) -> str:
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
        slug = _slug(text)
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
            clean_imdb_id(value.get("imdb_id"), f"{name}.imdb_id", _NAME_ID, "nm"),
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
        imdb_id=clean_imdb_id(raw.get("imdb_id"), "imdb_id", _TITLE_ID, "tt"),
        genres=clean_genres(raw.get("genres")),
        directors=clean_directors(raw.get("directors")),
        cast=clean_cast(raw.get("cast")),
        present=present | {"title", "year"},
        row_id=clean_row_id(raw.get("id")),
    )


# ---- reading files -----------------------------------------------------------------------------

# One item from a reader: (line number, a raw object or the reason the row cannot be read).
Item = tuple[int, "Mapping[str, Any] | RowRejected"]


def open_text(path: Path) -> TextIO:
    """Open a text file (gzip by extension): a BOM is dropped, undecodable bytes are kept as surrogates."""
    binary: Any = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115 (the wrapper owns it)
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def read_jsonl(stream: TextIO) -> Iterator[Item]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, RowRejected("-", f"invalid JSON: {exc}")


def read_json_array(stream: TextIO, chunk_size: int = 1 << 20) -> Iterator[Item]:
    """Stream the elements of a top-level JSON array without loading the whole file."""
    decoder = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False

    def fill() -> None:
        nonlocal buf, pos, eof
        chunk = stream.read(chunk_size)
        eof = not chunk
        buf, pos = buf[pos:] + chunk, 0

    def skip_ws() -> str:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or eof:
                return buf[pos] if pos < len(buf) else ""
            fill()

    fill()
    if skip_ws() != "[":
        raise InputUnusable("not a JSON array: the file must start with '['")
    pos += 1
    expect_value = True
    while True:
        char = skip_ws()
        if char == "]":
            return
        if not char:
            raise RowRejected("-", f"line {line}: the JSON array is not closed (truncated file?)")
        if not expect_value:
            if char != ",":
                raise RowRejected("-", f"line {line}: expected ',' or ']' between array elements")
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except ValueError as exc:
                if eof or len(buf) - pos > 256 * chunk_size:
                    raise RowRejected("-", f"line {line}: invalid JSON: {exc}") from None
                fill()
        yield line, value
        line += buf.count("\n", pos, end)
        pos = end
        expect_value = False


def read_csv(stream: TextIO) -> Iterator[Item]:
    """Our CSV: a header naming the columns; genres '|'-separated, directors and cast JSON arrays."""
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise InputUnusable("the CSV file is empty") from None
    except csv.Error as exc:
        raise InputUnusable(f"the CSV header cannot be read: {exc}") from None
    columns = [name.strip().lower() for name in header]
    if "title" not in columns or "year" not in columns:
        raise InputUnusable(f"the CSV header must name at least 'title' and 'year' (got {header[:10]!r})")
    known = [(index, name) for index, name in enumerate(columns) if name in CSV_READ_COLUMNS]
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, RowRejected("-", f"malformed CSV: {exc}")
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield line, RowRejected("-", f"expected {len(columns)} columns, got {len(row)}")
            continue
        yield line, {name: (row[index] if row[index] != "" else None) for index, name in known}


class TsvFile:
    """An IMDb TSV file: the header's column positions, then (line number, cells or the reason a row is bad)."""

    def __init__(self, path: Path, required: Iterable[str]) -> None:
        self.path = path
        with open_text(path) as stream:
            header = stream.readline().rstrip("\r\n").split("\t")
        missing = [name for name in required if name not in header]
        if missing:
            raise InputUnusable(f"{path.name}: the header lacks column(s) {', '.join(missing)}")
        self.width = len(header)
        self.col = {name: index for index, name in enumerate(header)}

    def __iter__(self) -> Iterator[tuple[int, list[str] | str]]:
        width = self.width
        with open_text(self.path) as stream:
            stream.readline()
            for number, line in enumerate(stream, start=2):
                cells = line.rstrip("\r\n").split("\t")
                if len(cells) == width:
                    yield number, cells
                elif line.strip():
                    yield number, f"expected {width} tab-separated fields, got {len(cells)}"


def _null(cell: str) -> str | None:
    """IMDb writes NULL as \\N."""
    return None if cell == "\\N" else cell


def find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def external_genres(names: Iterable[str], genre_names: dict[str, str]) -> list[str]:
    """Map IMDb/MovieLens genre names to our slugs; unknown names become genres of their own."""
    slugs: list[str] = []
    for name in names:
        name = name.strip()
        if not name or name.lower() in IGNORED_GENRES:
            continue
        slug = EXTERNAL_GENRES.get(name.lower()) or _slug(name)
        if slug and slug not in slugs:
            slugs.append(slug)
            genre_names.setdefault(slug, name)
    return slugs


def detect_format(path: Path) -> str:
    if path.is_dir():
        if find_file(path, "title.basics.tsv"):
            return "imdb"
        if (path / "movies.csv").is_file():
            return "movielens"
        raise InputUnusable(f"{path} holds neither title.basics.tsv (IMDb) nor movies.csv (MovieLens)")
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    with open_text(path) as stream:
        start = stream.read(4096).lstrip()
    if start.startswith("["):
        return "json"
    if start.startswith("{"):
        return "jsonl"
    raise InputUnusable(f"cannot tell the format of {path.name}: name it .json, .jsonl or .csv, or pass --format")


# ---- sources: a reader per format, with an optional per-batch enrichment ------------------------


class Source:
    """Items from one input, and a hook that completes a batch of records before it is written."""

    file = ""
    # The source's name in the precedence (Precedence).
    name = "ours"
    # Whether two batches may be written at once: only when every person is named by a unique IMDb id
    # (people matched by name alone could be created twice by two concurrent transactions).
    parallel = False
    # Relations the source knows only the first part of (IMDb's principals: the top-billed): merged into what the
    # movie has, never cutting it.
    partial: frozenset[str] = frozenset()
    # Whether the source's name for a person with an IMDb id is the reference (IMDb's name.basics): it renames.
    renames_people = False
    # The relations a new movie gets from write_credits (in SQL, not on the record): claimed for the source.
    sql_credits: frozenset[str] = frozenset()

    @property
    def origin(self) -> str:
        """What a movie's `field_sources` records: the source's name, and for our files the file's name too."""
        return self.name

    def items(self) -> Iterator[Item]:
        raise NotImplementedError

    def prepare(
        self, *, cursors: list[psycopg.Cursor[Any]], report: Callable[[RowError], None], progress: Progress
    ) -> None:
        """Read side files before the main one (IMDb: credits and names), staged on each cursor (none: dry run)."""

    def complete(self, records: list[MovieRecord]) -> None:
        """Attach what the side files say about these records (movies already in the catalogue)."""

    def write_credits(self, cursor: psycopg.Cursor[Any], movies: list[tuple[int, str | None]], *, link: bool) -> None:
        """Write the side files' credits of these newly created (id, imdb_id) movies straight in SQL."""

    def close(self) -> None:
        """Drop whatever prepare made."""


class OurSource(Source):
    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt, self.file = path, fmt, path.name

    @property
    def origin(self) -> str:
        """`ours:<file name>`: two of our files that disagree cannot take a field from each other in turns."""
        return f"{self.name}:{self.file}"

    def items(self) -> Iterator[Item]:
        readers: dict[str, Callable[[TextIO], Iterator[Item]]] = {
            "json": read_json_array,
            "jsonl": read_jsonl,
            "csv": read_csv,
        }
        reader = readers[self.fmt]
        with open_text(self.path) as stream:
            yield from reader(stream)


class MovieLensSource(Source):
    """movies.csv (movieId,title,genres) and optionally links.csv (movieId,imdbId,tmdbId)."""

    name = "movielens"

    def __init__(self, folder: Path, genre_names: dict[str, str]) -> None:
        self.folder, self.file, self.genre_names = folder, "movies.csv", genre_names
        self.links: dict[int, int] | None = None

    def prepare(
        self, *, cursors: list[psycopg.Cursor[Any]], report: Callable[[RowError], None], progress: Progress
    ) -> None:
        """Read links.csv into a movieId -> imdb number map (MovieLens catalogues are < 100k movies)."""
        path = self.folder / "links.csv"
        if not path.is_file():
            return
        self.links = {}
        with open_text(path) as stream:
            reader = csv.reader(stream)
            header = [name.strip() for name in next(reader, [])]
            if "movieId" not in header or "imdbId" not in header:
                raise InputUnusable("links.csv: the header must name movieId and imdbId")
            movie_col, imdb_col = header.index("movieId"), header.index("imdbId")
            for row in reader:
                line = reader.line_num
                try:
                    movie_id = int(row[movie_col])
                    imdb = row[imdb_col].strip()
                    if not imdb:
                        continue
                    if not imdb.isdigit():
                        raise ValueError(f"imdbId must be digits, got {imdb[:20]!r}")
                except (ValueError, IndexError) as exc:
                    report(RowError("links.csv", line, "imdbId", str(exc)))
                    continue
                if movie_id in self.links:
                    report(RowError("links.csv", line, "movieId", f"duplicate movieId {movie_id}"))
                    continue
                self.links[movie_id] = int(imdb)

    def items(self) -> Iterator[Item]:
        with open_text(self.folder / "movies.csv") as stream:
            reader = csv.reader(stream)
            header = [name.strip() for name in next(reader, [])]
            if "title" not in header or "movieId" not in header:
                raise InputUnusable("movies.csv: the header must name movieId, title and genres")
            id_col, title_col = header.index("movieId"), header.index("title")
            genres_col = header.index("genres") if "genres" in header else None
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    yield line, RowRejected("-", f"expected {len(header)} columns, got {len(row)}")
                    continue
                match = _MOVIELENS_TITLE.match(row[title_col])
                if not match:
                    yield line, RowRejected("year", f"no '(year)' at the end of the title {row[title_col][:60]!r}")
                    continue
                title = match["title"]
                also_known = _MOVIELENS_ALSO_KNOWN.match(title)
                if also_known:
                    title = also_known["title"]
                article = _MOVIELENS_ARTICLE.match(title)
                if article:  # "Matrix, The" -> "The Matrix"
                    title = f"{article['article']} {article['rest']}"
                raw: dict[str, Any] = {"title": title, "year": match["year"]}
                if genres_col is not None:
                    raw["genres"] = external_genres(row[genres_col].split("|"), self.genre_names)
                if self.links is not None:
                    imdb = self.links.get(int(row[id_col])) if row[id_col].strip().isdigit() else None
                    raw["imdb_id"] = f"tt{imdb:07d}" if imdb is not None else None
                yield line, raw


class ImdbSource(Source):
    """title.basics.tsv (films only), with credits from title.crew, title.principals and name.basics.

    The side files are streamed into temporary tables first (flat memory whatever their size). New movies
    get their credits from them in SQL (`write_credits`); movies already in the catalogue fetch theirs into
    Python (`complete`) to be compared. Every person has an nm id, so two batches can be written at once.
    """

    name = "imdb"
    parallel = True
    renames_people = True

    def __init__(self, folder: Path, genre_names: dict[str, str]) -> None:
        self.folder, self.genre_names = folder, genre_names
        basics = find_file(folder, "title.basics.tsv")
        if basics is None:
            raise InputUnusable(f"{folder}: no title.basics.tsv(.gz)")
        self.file = basics.name
        # Every header is checked before anything is written: a missing column makes the input unusable.
        self.basics = TsvFile(basics, ("tconst", "titleType", "primaryTitle", "startYear", "runtimeMinutes", "genres"))
        self.crew = self._side(folder, "title.crew.tsv", ("tconst", "directors"))
        self.principals = self._side(
            folder, "title.principals.tsv", ("tconst", "ordering", "nconst", "category", "characters")
        )
        self.names = self._side(folder, "name.basics.tsv", ("nconst", "primaryName"))
        self.staged = False
        # Principals list only the top-billed: a cast from them (and directors, without title.crew) is partial.
        self.partial = frozenset({"cast"} | (set() if self.crew else {"directors"}))
        self.sql_credits = frozenset(
            ({"directors"} if self.crew or self.principals else set()) | ({"cast"} if self.principals else set())
        )

    @staticmethod
    def _side(folder: Path, name: str, required: tuple[str, ...]) -> TsvFile | None:
        path = find_file(folder, name)
        return TsvFile(path, required) if path else None

    def prepare(
        self, *, cursors: list[psycopg.Cursor[Any]], report: Callable[[RowError], None], progress: Progress
    ) -> None:
        """Validate the side files and, unless this is a dry run, COPY them into temporary tables.

        Each writer connection gets its own copy (temporary tables are per session): the files are read once
        and every row goes to all of them; the indexes are built on all connections at once.
        """
        for cursor in cursors:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS imp_directors (tconst text, ord int, nconst text);"
                "CREATE TEMP TABLE IF NOT EXISTS imp_cast (tconst text, ord int, nconst text, character text);"
                "CREATE TEMP TABLE IF NOT EXISTS imp_names (nconst text, name text);"
                # A batch's credits whose person is not in the catalogue yet, written last (see write_credits).
                "CREATE TEMP TABLE IF NOT EXISTS imp_new_people (nconst text, name text);"
                "CREATE TEMP TABLE IF NOT EXISTS imp_new_directors (movie_id bigint, nconst text);"
                "CREATE TEMP TABLE IF NOT EXISTS imp_new_cast (movie_id bigint, nconst text, character text, ord int);"
                "TRUNCATE imp_directors, imp_cast, imp_names, imp_new_people, imp_new_directors, imp_new_cast"
            )
        if self.crew:
            self._stage(cursors, "imp_directors", self._crew_lines(report, progress))
        if self.principals:
            self._stage(cursors, "imp_directors", self._principal_lines(report, progress, directors=True))
            self._stage(cursors, "imp_cast", self._principal_lines(report, progress, directors=False))
        if self.names:
            self._stage(cursors, "imp_names", self._name_lines(report, progress))
        if cursors:
            with contextlib.ExitStack() as stack:
                for cursor in cursors:  # sent to every server before waiting for any
                    stack.enter_context(cursor.connection.pipeline())
                    # (nconst, name): a person's name is the first by name, read from the index without a sort.
                    for table, columns in (
                        ("imp_directors", "tconst"),
                        ("imp_cast", "tconst"),
                        ("imp_names", "nconst, name"),
                    ):
                        cursor.execute(f"CREATE INDEX ON {table} ({columns})")
                        cursor.execute(f"ANALYZE {table}")
            self.staged = True

    @staticmethod
    def _stage(cursors: list[psycopg.Cursor[Any]], table: str, lines: Iterator[str]) -> None:
        """COPY lines in COPY's text format into every cursor's table: each chunk is encoded once and the same bytes
        go to every connection. A dry run (no cursors) only reads and validates."""
        if not cursors:
            for _ in lines:
                pass
            return
        with contextlib.ExitStack() as stack:
            copies = [stack.enter_context(cursor.copy(f"COPY {table} FROM STDIN")) for cursor in cursors]
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= STAGE_CHUNK:
                    data = "".join(chunk).encode()
                    chunk = []
                    for copy in copies:
                        copy.write(data)
            if chunk:
                data = "".join(chunk).encode()
                for copy in copies:
                    copy.write(data)

    @staticmethod
    def _rows(
        tsv: TsvFile,
        key: str,
        report: Callable[[RowError], None] | None,
        progress: Progress | None,
        where: tuple[str, Container[str]] | None = None,
    ) -> Iterator[tuple[int, list[str], str]]:
        """(line number, cells, the `key` id) of a side file's rows, the one loop every side file is read with.

        A line without the header's number of fields, and a row whose `key` (tconst or nconst) is not an IMDb id,
        is reported (unless report is None) and skipped. `where` (column, values) keeps only the rows whose column
        holds one of the values, before their id is looked at.
        """
        file, width, key_at = tsv.path.name, tsv.width, tsv.col[key]
        pattern, kind = (_TITLE_ID, "title") if key == "tconst" else (_NAME_ID, "name")
        where_at, wanted = (tsv.col[where[0]], where[1]) if where else (-1, ())
        with open_text(tsv.path) as stream:
            stream.readline()
            # Lines are read in blocks: a plain loop over a list costs less per line than a chain of generators.
            blocks: Iterator[list[str]] = iter(functools.partial(stream.readlines, 1 << 16), [])
            if progress is not None:
                blocks = progress.wrap(blocks, f"reading {file}", size=len)
            number = 1
            for block in blocks:
                for line in block:
                    number += 1
                    cells = line.rstrip("\r\n").split("\t")
                    if len(cells) != width:
                        if report is not None and line.strip():
                            reason = f"expected {width} tab-separated fields, got {len(cells)}"
                            report(RowError(file, number, "-", reason))
                        continue
                    if where_at >= 0 and cells[where_at] not in wanted:
                        continue
                    value = cells[key_at]
                    if not pattern.match(value):
                        if report is not None:
                            report(RowError(file, number, key, f"not an IMDb {kind} id: {value[:20]!r}"))
                        continue
                    yield number, cells, value

    def _crew_lines(self, report: Callable[[RowError], None], progress: Progress) -> Iterator[str]:
        """imp_directors rows (tconst, order, nconst) from title.crew's `directors` lists."""
        assert self.crew is not None
        file, directors_at = self.crew.path.name, self.crew.col["directors"]
        for line, row, tconst in self._rows(self.crew, "tconst", report, progress):
            for order, nconst in enumerate((_null(row[directors_at]) or "").split(",")):
                if not nconst:
                    continue
                if not _NAME_ID.match(nconst):
                    report(RowError(file, line, "directors", f"not an IMDb name id: {nconst[:20]!r}"))
                    continue
                yield f"{tconst}\t{order}\t{nconst}\n"

    def _principal_lines(
        self, report: Callable[[RowError], None], progress: Progress, *, directors: bool
    ) -> Iterator[str]:
        """imp_cast rows (actor, actress, self) or, when there is no crew file, imp_directors rows."""
        assert self.principals is not None
        if directors and self.crew:
            return
        file, col = self.principals.path.name, self.principals.col
        nconst_at, ordering_at, characters_at = col["nconst"], col["ordering"], col["characters"]
        # Errors are reported once, on the cast pass.
        rows = (
            self._rows(self.principals, "tconst", None, None, where=("category", {"director"}))
            if directors
            else self._rows(self.principals, "tconst", report, progress, where=("category", IMDB_CAST_CATEGORIES))
        )
        for line, row, tconst in rows:
            nconst, ordering, characters = row[nconst_at], row[ordering_at], row[characters_at]
            try:
                if not _NAME_ID.match(nconst):
                    raise RowRejected("nconst", f"not an IMDb name id: {nconst[:20]!r}")
                if not (ordering.isdigit() and ordering.isascii() and len(ordering) < 10):  # else the slow path
                    ordering = str(clean_int(ordering, "ordering", low=0, high=2**31 - 1, required=True))
                if directors:
                    character = ""
                elif (
                    characters.startswith('["')
                    and characters.endswith('"]')
                    and characters.isascii()
                    and "\\" not in characters
                    and "\x00" not in characters
                    and '"' not in (character := characters[2:-2])
                    and len(character) <= MAX_CHARACTER_LENGTH
                ):  # the common case, ["One name"] in ASCII: nothing to decode, check or escape
                    character = character.strip()
                else:
                    character = copy_text(self._characters(_null(characters)))
            except RowRejected as exc:
                if not directors:
                    report(RowError(file, line, exc.field, exc.reason))
                continue
            yield f"{tconst}\t{ordering}\t{nconst}\n" if directors else f"{tconst}\t{ordering}\t{nconst}\t{character}\n"

    @staticmethod
    def _characters(value: str | None) -> str:
        """IMDb's `characters` is a JSON array of names: joined with ' / '."""
        if not value:
            return ""
        if value.startswith('["') and value.endswith('"]') and "\\" not in value and '"' not in value[2:-2]:
            text = value[2:-2]  # the common case, one plain name, without a JSON parse
        else:
            try:
                names = json.loads(value)
            except ValueError:
                raise RowRejected("characters", f"not a JSON array: {value[:40]!r}") from None
            if not isinstance(names, list) or not all(isinstance(item, str) for item in names):
                raise RowRejected("characters", f"not a JSON array of names: {value[:40]!r}")
            text = " / ".join(names)
        return clean_text(text, "characters", max_length=MAX_CHARACTER_LENGTH)

    def _name_lines(self, report: Callable[[RowError], None], progress: Progress) -> Iterator[str]:
        """imp_names rows (nconst, name) from name.basics."""
        assert self.names is not None
        file, name_at = self.names.path.name, self.names.col["primaryName"]
        for line, row, nconst in self._rows(self.names, "nconst", report, progress):
            try:
                name = clean_text(_null(row[name_at]), "primaryName", max_length=MAX_NAME_LENGTH, required=True)
            except RowRejected as exc:
                report(RowError(file, line, exc.field, exc.reason))
                continue
            yield f"{nconst}\t{copy_text(name)}\n"

    def items(self) -> Iterator[Item]:
        col = self.basics.col
        tconst_at, type_at, title_at = col["tconst"], col["titleType"], col["primaryTitle"]
        year_at, runtime_at, genres_at = col["startYear"], col["runtimeMinutes"], col["genres"]
        for line, row in self.basics:
            if isinstance(row, str):
                yield line, RowRejected("-", row)
                continue
            if row[type_at] != "movie":
                continue
            raw: dict[str, Any] = {
                "imdb_id": _null(row[tconst_at]),
                "title": _null(row[title_at]),
                "year": _null(row[year_at]),
                "runtime": _null(row[runtime_at]),
                "genres": external_genres((_null(row[genres_at]) or "").split(","), self.genre_names),
            }
            if self.crew or self.principals:
                raw["directors"] = []
            if self.principals:
                raw["cast"] = []
            yield line, raw

    def complete(self, records: list[MovieRecord]) -> None:
        """Fetch the directors and cast of these movies (already in the catalogue) from the staged side files.

        Only matched movies come here, to be compared with what the catalogue holds; new ones get their
        credits from `write_credits` without passing through Python.
        """
        if not self.staged or not records:
            return
        for record in records:  # a batch retried after a conflict completes its records again
            if self.crew or self.principals:
                record.directors = []
            if self.principals:
                record.cast = []
        by_id = {record.imdb_id: record for record in records}
        cursor = raw_cursor()
        # A person's name: name.basics, else the catalogue's; a credit for a nameless person is dropped.
        name_sql = (
            "coalesce((SELECT n.name FROM imp_names n WHERE n.nconst = c.nconst ORDER BY n.name LIMIT 1),"
            " (SELECT p.name FROM movies_person p WHERE p.imdb_id = c.nconst))"
        )
        ids = list(by_id)
        cursor.execute(
            f"SELECT c.tconst, c.nconst, {name_sql} FROM imp_directors c "  # noqa: S608 (no input in the SQL)
            "WHERE c.tconst = ANY(%s) ORDER BY c.tconst, c.ord",
            [ids],
        )
        for tconst, nconst, name in cursor.fetchall():
            if name:
                person = PersonRef(name, nconst)
                directors = by_id[tconst].directors
                if person not in directors and len(directors) < MAX_DIRECTORS:
                    directors.append(person)
        cursor.execute(
            f"SELECT c.tconst, c.nconst, c.character, {name_sql} FROM imp_cast c "  # noqa: S608
            "WHERE c.tconst = ANY(%s) ORDER BY c.tconst, c.ord",
            [ids],
        )
        for tconst, nconst, character, name in cursor.fetchall():
            cast = by_id[tconst].cast
            if name and len(cast) < MAX_CAST:
                cast.append((PersonRef(name, nconst), character))

    def write_credits(self, cursor: psycopg.Cursor[Any], movies: list[tuple[int, str | None]], *, link: bool) -> None:
        """People, directors and cast of new movies with INSERT ... SELECT from the staged side files.

        The same rules as `complete` + the Python path: a person is named by name.basics, else keeps the
        catalogue's name (renamed when name.basics differs); a credit whose person has no name anywhere is
        dropped; directors are distinct, in crew order, at most MAX_DIRECTORS; the cast keeps the principals'
        `ordering`, numbered from 0, at most MAX_CAST. Nothing per row in Python: this is most of the work of an
        import into an empty catalogue.

        Called last in the batch's transaction, in two statements. The first reads the batch's credits from the
        staging tables once (an index probe per movie and per person), renames, and inserts the credits of people
        already in the catalogue; credits of people not in it yet are set aside. The second creates those people
        and inserts the rest. Creating people is what makes two transactions wait for each other (an INSERT of an
        nm id another open transaction has just inserted waits for that transaction to end), so it comes last,
        just before the commit: another writer never waits for more than this batch's last statement and commit.
        """
        films = [(pk, tconst) for pk, tconst in movies if tconst]
        if not self.staged or not films or not (self.crew or self.principals):
            return
        if self._credits(cursor, films, link=link):
            self._new_people(cursor)

    @staticmethod
    def _credits(cursor: psycopg.Cursor[Any], movies: list[tuple[int, str]], *, link: bool) -> int:
        """The first statement of write_credits; returns how many people it set aside to be created."""
        # Each lookup is a LATERAL subquery (with a LIMIT where it could otherwise be flattened into a join), so
        # an index probe per movie and per person: the planner would otherwise hash whole tables, which would make
        # each batch cost as much as the file or the catalogue.
        cursor.execute(
            "WITH credit AS MATERIALIZED ("  # noqa: S608 (constant SQL, one of two texts)
            "  SELECT b.movie_id, c.director, c.ord, c.nconst, c.character"
            "  FROM unnest(%(ids)b::bigint[], %(tconsts)b::text[]) AS b(movie_id, tconst) CROSS JOIN LATERAL ("
            "   SELECT true AS director, ord, nconst, NULL AS character FROM imp_directors WHERE tconst = b.tconst"
            "   UNION ALL SELECT false, ord, nconst, character FROM imp_cast WHERE tconst = b.tconst) AS c),"
            # Each person once: the catalogue's id and name, and the name name.basics gives.
            # A person not in the catalogue by nm id is the one person without an id whose normalised name is the
            # same, when there is exactly one (and link: only one writer, so no two batches link the same person).
            " person AS MATERIALIZED ("
            "  SELECT c.nconst, coalesce(p.id, l.id) AS id, p.id IS NULL AND l.id IS NOT NULL AS linked,"
            "   coalesce(p.name, l.name) AS current, n.name AS staged"
            "  FROM (SELECT DISTINCT nconst FROM credit) AS c"
            "  LEFT JOIN LATERAL (SELECT id, name FROM movies_person WHERE imdb_id = c.nconst LIMIT 1) AS p ON true"
            "  LEFT JOIN LATERAL ("
            "   SELECT name FROM imp_names WHERE nconst = c.nconst ORDER BY name LIMIT 1) AS n ON true"
            + (
                "  LEFT JOIN LATERAL (SELECT min(x.id) AS id, min(x.name) AS name FROM ("
                "   SELECT id, name FROM movies_person WHERE p.id IS NULL"
                "   AND movies_match_key(name) = movies_match_key(n.name) AND imdb_id IS NULL LIMIT 2) AS x"
                "   HAVING count(*) = 1) AS l ON true),"
                if link
                else "  CROSS JOIN (SELECT NULL::bigint AS id, NULL::text AS name) AS l),"
            )
            +
            # An existing person is renamed only where name.basics differs, and given the nm id when linked (the row
            # is locked until the commit; the foreign key checks of other transactions' credits take a lock that
            # does not conflict with it).
            " renamed AS (UPDATE movies_person AS p"
            "  SET name = coalesce(r.staged, p.name), imdb_id = CASE WHEN r.linked THEN r.nconst ELSE p.imdb_id END,"
            "  updated_at = now()"
            "  FROM person AS r WHERE p.id = r.id AND (r.linked OR r.staged <> r.current)),"
            # A credit is kept when its person is in the catalogue or named by name.basics; else it is dropped.
            " kept AS MATERIALIZED ("
            "  SELECT c.movie_id, c.director, c.ord, c.nconst, c.character, r.id AS person_id, r.staged"
            "  FROM credit AS c JOIN person AS r USING (nconst) WHERE r.id IS NOT NULL OR r.staged IS NOT NULL),"
            " directors AS MATERIALIZED ("
            "  SELECT movie_id, nconst, person_id, staged FROM ("
            "   SELECT movie_id, nconst, person_id, staged,"
            "    row_number() OVER (PARTITION BY movie_id ORDER BY min(ord), nconst) AS rank"
            "   FROM kept WHERE director GROUP BY movie_id, nconst, person_id, staged) AS d"
            "  WHERE rank <= %(max_directors)s),"
            " casting AS MATERIALIZED ("
            '  SELECT movie_id, nconst, person_id, staged, character, rank - 1 AS "order" FROM ('
            "   SELECT movie_id, nconst, person_id, staged, character,"
            "    row_number() OVER (PARTITION BY movie_id ORDER BY ord) AS rank"
            "   FROM kept WHERE NOT director) AS c"
            "  WHERE rank <= %(max_cast)s),"
            " directors_now AS (INSERT INTO movies_movie_directors (movie_id, person_id)"
            "  SELECT movie_id, person_id FROM directors WHERE person_id IS NOT NULL),"
            ' cast_now AS (INSERT INTO movies_cast (movie_id, person_id, "character", "order")'
            '  SELECT movie_id, person_id, character, "order" FROM casting WHERE person_id IS NOT NULL),'
            " directors_later AS (INSERT INTO imp_new_directors (movie_id, nconst)"
            "  SELECT movie_id, nconst FROM directors WHERE person_id IS NULL),"
            " cast_later AS (INSERT INTO imp_new_cast (movie_id, nconst, character, ord)"
            '  SELECT movie_id, nconst, character, "order" FROM casting WHERE person_id IS NULL)'
            " INSERT INTO imp_new_people (nconst, name)"
            "  SELECT nconst, staged FROM directors WHERE person_id IS NULL"
            "  UNION SELECT nconst, staged FROM casting WHERE person_id IS NULL",
            {
                "ids": [pk for pk, _ in movies],
                "tconsts": [tconst for _, tconst in movies],
                "max_directors": MAX_DIRECTORS,
                "max_cast": MAX_CAST,
            },
        )
        return cursor.rowcount

    @staticmethod
    def _new_people(cursor: psycopg.Cursor[Any]) -> None:
        """The second statement of write_credits: the people set aside, then their credits."""
        # In nconst order, so that concurrent importers wait for each other in the same order (no deadlock).
        # ON CONFLICT: another transaction may have created some since the first statement (or be creating
        # them: this waits for it to end).
        cursor.execute(
            "WITH s AS (DELETE FROM imp_new_people RETURNING nconst, name)"
            " INSERT INTO movies_person (name, imdb_id, created_at, updated_at)"
            "  SELECT name, nconst, now(), now() FROM s ORDER BY nconst ON CONFLICT (imdb_id) DO NOTHING;"
            "WITH s AS (DELETE FROM imp_new_directors RETURNING movie_id, nconst)"
            " INSERT INTO movies_movie_directors (movie_id, person_id)"
            "  SELECT s.movie_id, p.id FROM s"
            "  CROSS JOIN LATERAL (SELECT id FROM movies_person WHERE imdb_id = s.nconst LIMIT 1) AS p;"
            "WITH s AS (DELETE FROM imp_new_cast RETURNING movie_id, nconst, character, ord)"
            ' INSERT INTO movies_cast (movie_id, person_id, "character", "order")'
            "  SELECT s.movie_id, p.id, s.character, s.ord FROM s"
            "  CROSS JOIN LATERAL (SELECT id FROM movies_person WHERE imdb_id = s.nconst LIMIT 1) AS p"
        )

    def close(self) -> None:
        """Drop the staging tables of this thread's connection (each writer has its own)."""
        if self.staged:
            raw_cursor().execute(
                "DROP TABLE IF EXISTS imp_directors, imp_cast, imp_names, imp_new_people, imp_new_directors,"
                " imp_new_cast"
            )


def open_source(path: Path, fmt: str, genre_names: dict[str, str]) -> Source:
    if not path.exists():
        raise InputUnusable(f"{path} does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("imdb", "movielens"):
        if not path.is_dir():
            raise InputUnusable(f"--format {fmt} reads a folder, and {path} is a file")
        if fmt == "imdb":
            return ImdbSource(path, genre_names)
        if not (path / "movies.csv").is_file():
            raise InputUnusable(f"{path}: no movies.csv")
        return MovieLensSource(path, genre_names)
    if path.is_dir():
        raise InputUnusable(f"--format {fmt} reads a file, and {path} is a folder")
    return OurSource(path, fmt)


# ---- progress ----------------------------------------------------------------------------------


class Progress:
    """A tqdm bar with rows/s on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every = every

    def wrap(self, items: Iterator[Any], label: str, *, size: Callable[[Any], int] | None = None) -> Iterator[Any]:
        """Yield items, counting each as one row, or as size(item) rows (blocks of lines)."""
        if self.tty:
            from tqdm import tqdm

            with tqdm(
                items if size is None else None, desc=label, unit=" rows", unit_scale=True, file=self.stream
            ) as bar:
                if size is None:
                    yield from bar
                    return
                for item in items:
                    yield item
                    bar.update(size(item))
            return
        start = last = time.monotonic()
        count = 0
        for item in items:
            yield item
            count += size(item) if size else 1
            now = time.monotonic()
            if now - last >= self.every:
                last = now
                rate = count / max(now - start, 1e-9)
                self.stream.write(f"{label}: {count:,} rows, {rate:,.0f} rows/s\n")
                self.stream.flush()


# ---- writing -----------------------------------------------------------------------------------


def raw_cursor() -> psycopg.Cursor[Any]:
    """A server-side-binding psycopg cursor on Django's connection (inside Django's transactions)."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


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


class Precedence:
    """Which source may overwrite which field: a curator first, then the import sources in the order given.

    A field whose source is unknown (written before provenance was kept) ranks below every source.
    """

    DEFAULT = ("ours", "imdb", "movielens")

    def __init__(self, order: Iterable[str] = DEFAULT) -> None:
        names = [name.strip().lower() for name in order if name.strip()]
        if names and names[0] == CURATOR:
            names = names[1:]
        unknown = sorted(set(names) - set(self.DEFAULT))
        if unknown or len(set(names)) != len(names) or CURATOR in names:
            raise InputUnusable(
                f"--precedence lists import sources, each once, after an optional 'curator': {', '.join(self.DEFAULT)}"
                f" (got {','.join(order)!r})"
            )
        names += [name for name in self.DEFAULT if name not in names]  # unlisted sources rank last, in default order
        self.order = (CURATOR, *names)
        self._rank = {name: len(self.order) - index for index, name in enumerate(self.order)}

    def rank(self, origin: str | None) -> int:
        """The rank of a source or of an origin in `field_sources` (`ours:<file>` ranks as `ours`)."""
        return self._rank.get((origin or "").partition(":")[0], 0)


@dataclass(slots=True)
class Plan:
    """What one matched movie becomes: its new scalar values and provenance, and the relations it replaces."""

    values: dict[str, Any]
    sources: dict[str, str]
    bump: bool
    genres: list[int] | None = None
    directors: list[int] | None = None
    cast: list[tuple[int, str]] | None = None


# The matched movie's row as locked: these columns, in this order.
_MOVIE_COLUMNS = "id, version, title, year, runtime, overview, imdb_id, field_sources"
# A movie's directors as match keys: their nm ids and their normalised names.
_DIRECTOR_KEYS_SQL = (
    "ARRAY(SELECT unnest(ARRAY[p.imdb_id, movies_match_key(p.name)]) FROM movies_movie_directors d"
    " JOIN movies_person p ON p.id = d.person_id WHERE d.movie_id = m.id)"
)


def _candidates(rows: Iterable[tuple[Any, ...]]) -> str:
    return "; ".join(f"movie {pk} {title!r} ({year}, {imdb or 'no IMDb id'})" for pk, title, year, imdb in rows)


class BatchWriter:
    """Writes batches of validated records with bulk SQL; genres resolved once and kept (there are few).

    `claimed` (shared by the import's writers) holds the movies rows of this import already matched or created:
    another row of the same file is a distinct movie, so it never matches one of them by title and year.
    """

    def __init__(
        self,
        genre_names: dict[str, str],
        source: Source | None = None,
        *,
        precedence: Precedence | None = None,
        claimed: set[int] | None = None,
        link_people: bool = True,
    ) -> None:
        self.genre_names = genre_names
        self.source = source or Source()
        self.precedence = precedence or Precedence()
        self.rank = self.precedence.rank(self.source.name)
        self.claimed = claimed if claimed is not None else set()
        self.link_people = link_people
        self.genre_ids: dict[str, int] = {}
        self.genres_table = Movie.genres.through._meta.db_table
        self.directors_table = Movie.directors.through._meta.db_table
        self.cast_table = CastMember._meta.db_table

    def write(self, records: list[MovieRecord]) -> Counts:
        """Write one batch in one transaction; rows are locked, so a conflict means a race: retry.

        A deadlock with another importer (or with this one's other writer) is retried the same way.
        """
        for attempt in range(3):
            try:
                with transaction.atomic():
                    counts, written = self._write(records)
                self.claimed.update(written)
                return counts
            except BatchConflict:
                if attempt == 2:
                    raise
            except OperationalError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                    raise
        raise AssertionError("unreachable")

    def _write(self, records: list[MovieRecord]) -> tuple[Counts, list[int]]:
        cursor = raw_cursor()
        counts = Counts()
        genre_ids = self._genres(cursor, {slug for record in records for slug in record.genres})
        matched, ambiguous = self._match(cursor, records)
        for record, reason in ambiguous:
            counts.notes.append(RowError(record.file, record.line, "title", reason))
        if ambiguous:
            skipped = {id(record) for record, _ in ambiguous}
            records = [record for record in records if id(record) not in skipped]
        # Side-file credits pass through Python only for movies to compare; new ones get theirs in SQL below.
        self.source.complete([record for record in records if id(record) in matched])
        movie_of = {key: row[0] for key, row in matched.items()}
        people = self._people(cursor, records, movie_of, counts)
        relations = self._relations(cursor, list(movie_of.values()))

        new = [record for record in records if id(record) not in matched]
        plans: list[tuple[tuple[Any, ...], Plan]] = []
        for record in records:
            row = matched.get(id(record))
            if row is None:
                continue
            # A row carrying the movie's own id is this catalogue's export: it asserts nothing its values do not.
            own = record.row_id == str(row[0])
            plan = self._plan(record, row, relations[row[0]], people, genre_ids, claim_equal=not own)
            if plan.bump:
                counts.updated += 1
                counts.linked += int(row[6] is None and plan.values["imdb_id"] is not None)
                counts.merged += int(plan.cast is not None and "cast" in self.source.partial)
            else:
                counts.unchanged += 1
            if plan.bump or plan.sources != row[7]:
                plans.append((row, plan))

        written = services.movie_import_batch(
            cursor=cursor,
            created=[(record, self._new_sources(record)) for record in new],
            changed=[
                services.MovieImportChange(row[0], row[1], plan.values, plan.sources, plan.bump) for row, plan in plans
            ],
        )
        if written.changed != len(plans):
            raise BatchConflict
        movie_ids = {id(record): pk for record, pk in zip(new, written.created, strict=True)}
        counts.created = len(new)
        if plans:
            for name, table in (
                ("genres", self.genres_table),
                ("directors", self.directors_table),
                ("cast", self.cast_table),
            ):
                replaced = [row[0] for row, plan in plans if getattr(plan, name) is not None]
                if replaced:
                    cursor.execute(f"DELETE FROM {table} WHERE movie_id = ANY(%s)", [replaced])  # noqa: S608

        def person(record: MovieRecord, ref: PersonRef) -> int:
            return people[id(record), ref.key]

        self._copy(
            cursor,
            f"COPY {self.genres_table} (movie_id, genre_id) FROM STDIN",
            [
                *((movie_ids[id(r)], genre_ids[slug]) for r in new for slug in r.genres),
                *((row[0], pk) for row, plan in plans for pk in plan.genres or ()),
            ],
        )
        self._copy(
            cursor,
            f"COPY {self.directors_table} (movie_id, person_id) FROM STDIN",
            [
                *((movie_ids[id(r)], pid) for r in new for pid in dict.fromkeys(person(r, p) for p in r.directors)),
                *((row[0], pid) for row, plan in plans for pid in plan.directors or ()),
            ],
        )
        self._copy(
            cursor,
            f'COPY {self.cast_table} (movie_id, person_id, "character", "order") FROM STDIN',
            [
                *(
                    (movie_ids[id(r)], person(r, ref), character, order)
                    for r in new
                    for order, (ref, character) in enumerate(r.cast)
                ),
                *(
                    (row[0], pid, character, order)
                    for row, plan in plans
                    for order, (pid, character) in enumerate(plan.cast or ())
                ),
            ],
        )
        # Last: it may create people, which other transactions creating the same ones wait for (see there).
        self.source.write_credits(
            cursor, [(movie_ids[id(record)], record.imdb_id) for record in new], link=self.link_people
        )
        return counts, [*movie_ids.values(), *movie_of.values()]

    def _new_sources(self, record: MovieRecord) -> dict[str, str]:
        """A new movie's provenance: the fields the row carries, and the credits its source writes in SQL."""
        names = [name for name in PROVENANCE_FIELDS if record.carries(name)]
        names += [name for name in self.source.sql_credits if name in record.present and name not in names]
        return dict.fromkeys(sorted(names), self.source.origin)

    def _plan(
        self,
        record: MovieRecord,
        row: tuple[Any, ...],
        current: dict[str, Any],
        people: dict[tuple[int, tuple[str, str]], int],
        genre_ids: dict[str, int],
        *,
        claim_equal: bool,
    ) -> Plan:
        """Merge a row into its movie by precedence: a field is written only when its source ranks at least as
        high as the one that set it; a source ranking higher takes the field over even when the value is equal
        (unless the row is this catalogue's own export: claim_equal False), so no lower source can change it."""
        _, _, *scalars, owners = row
        values = dict(zip(SCALAR_FIELDS, scalars, strict=True))
        sources = dict(owners)
        bump = False
        rank, origin = self.rank, self.source.origin
        plan = Plan(values, sources, False)

        def take(field_name: str, differs: bool) -> bool:
            """Whether the record writes this field; records the claim. Of two origins of one rank (two of our
            files), the first to set a field keeps it: the same file again may change it."""
            owner = owners.get(field_name)
            owner_rank = self.precedence.rank(owner)
            if not record.carries(field_name) or rank < owner_rank or (rank == owner_rank and owner != origin):
                return False
            if differs or (claim_equal and rank > owner_rank):
                sources[field_name] = origin
            return differs

        for field_name in SCALAR_FIELDS:
            new = getattr(record, field_name)
            if take(field_name, new != values[field_name]):
                values[field_name] = new
                bump = True
        genres = [genre_ids[slug] for slug in record.genres]
        if take("genres", set(genres) != current["genres"]):
            plan.genres, bump = genres, True
        directors = list(dict.fromkeys(people[id(record), ref.key] for ref in record.directors))
        if "directors" in self.source.partial:
            directors = list(dict.fromkeys([*current["directors"], *directors]))
        if take("directors", set(directors) != set(current["directors"])):
            plan.directors, bump = directors, True
        cast = [(people[id(record), ref.key], character) for ref, character in record.cast]
        if "cast" in self.source.partial:
            cast = self._merge_cast(current["cast"], cast)
        if take("cast", cast != current["cast"]):
            plan.cast, bump = cast, True
        plan.bump = bump
        return plan

    @staticmethod
    def _merge_cast(current: list[tuple[int, str]], partial: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """A partial cast (the top-billed only) merged into the current one: each person's character from the
        partial list, people the current cast lacks appended in the partial list's order; nobody removed."""
        characters = dict(partial)
        merged = [(pid, characters.get(pid) or character) for pid, character in current]
        known = {pid for pid, _ in current}
        merged += [(pid, character) for pid, character in partial if pid not in known]
        return merged[:MAX_CAST]

    @staticmethod
    def _copy(cursor: psycopg.Cursor[Any], sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def _genres(self, cursor: psycopg.Cursor[Any], slugs: set[str]) -> dict[str, int]:
        """Genre ids by slug; unknown slugs become new genres (named from the source where it named them)."""
        missing = sorted(slugs - self.genre_ids.keys())
        if missing:
            names = [self.genre_names.get(slug) or slug.replace("-", " ").title() for slug in missing]
            cursor.execute(
                "INSERT INTO movies_genre (slug, name) SELECT s, n FROM unnest(%s::text[], %s::text[]) AS v(s, n)"
                " ON CONFLICT DO NOTHING",
                [missing, names],
            )
            # A name taken by another slug: fall back to the slug as the name.
            cursor.execute(
                "INSERT INTO movies_genre (slug, name) SELECT s, s FROM unnest(%s::text[]) AS v(s)"
                " WHERE NOT EXISTS (SELECT 1 FROM movies_genre g WHERE g.slug = v.s) ON CONFLICT DO NOTHING",
                [missing],
            )
            cursor.execute("SELECT slug, id FROM movies_genre WHERE slug = ANY(%s)", [missing])
            self.genre_ids.update(cursor.fetchall())
        return self.genre_ids

    def _people(
        self,
        cursor: psycopg.Cursor[Any],
        records: list[MovieRecord],
        movie_of: dict[int, int],
        counts: Counts,
    ) -> dict[tuple[int, tuple[str, str]], int]:
        """Person ids by (record, person key), set-based, in the order docs/loading-data.md gives:

        1. by nm id; 2. by normalised name among the people credited on the matched movie, when exactly one
        is (and has no other nm id); 3. by normalised name in the whole catalogue when exactly one person has it
        (for a person with an nm id: one without any); else created. A person found by name for an nm id is
        linked (given the id) instead of twinned; two or more candidates are reported and a new person created.
        """
        refs: dict[tuple[int, tuple[str, str]], tuple[MovieRecord, PersonRef, str]] = {}
        for record in records:
            for index, ref in enumerate(record.directors):
                refs.setdefault((id(record), ref.key), (record, ref, f"directors[{index}]"))
            for index, (ref, _) in enumerate(record.cast):
                refs.setdefault((id(record), ref.key), (record, ref, f"cast[{index}]"))
        ids: dict[tuple[int, tuple[str, str]], int] = {}
        if not refs:
            return ids
        nms = sorted({ref.imdb_id for _, ref, _ in refs.values() if ref.imdb_id})
        by_nm: dict[str, int] = {}
        if nms:
            cursor.execute("SELECT imdb_id, id, name FROM movies_person WHERE imdb_id = ANY(%s)", [nms])
            renamed: dict[str, str] = {}
            names = {ref.imdb_id: ref.name for _, ref, _ in refs.values() if ref.imdb_id}
            for nm, pk, name in cursor.fetchall():
                by_nm[nm] = pk
                if self.source.renames_people and name != names[nm]:
                    renamed[nm] = names[nm]
            if renamed:
                cursor.execute(
                    "UPDATE movies_person AS p SET name = v.n, updated_at = now()"
                    " FROM unnest(%s::text[], %s::text[]) AS v(i, n) WHERE p.imdb_id = v.i",
                    [list(renamed), list(renamed.values())],
                )
        pending: list[tuple[int, tuple[str, str]]] = []
        for key, (_, ref, _) in refs.items():
            if ref.imdb_id and ref.imdb_id in by_nm:
                ids[key] = by_nm[ref.imdb_id]
            else:
                pending.append(key)

        links: dict[int, str] = {}  # person id -> the nm id it learns

        def resolve(key: tuple[int, tuple[str, str]], candidates: list[tuple[int, str | None]]) -> bool:
            ref = refs[key][1]
            # A person with another nm id is someone else; a name without an id may be anyone of that name.
            fits = [(pk, nm) for pk, nm in candidates if not ref.imdb_id or nm is None or nm == ref.imdb_id]
            if len({pk for pk, _ in fits}) != 1:
                return False
            pk, nm = fits[0]
            if ref.imdb_id and nm is None and links.setdefault(pk, ref.imdb_id) != ref.imdb_id:
                return False  # the same person cannot learn two ids: a second one is a new person
            ids[key] = pk
            return True

        # 2. Credited on the same (matched) movie.
        on_movie = [key for key in pending if key[0] in movie_of]
        if on_movie:
            cursor.execute(
                "SELECT k.n, p.id, p.imdb_id FROM unnest(%b::bigint[], %b::text[]) WITH ORDINALITY AS k(movie, name, n)"
                " CROSS JOIN LATERAL (SELECT person_id FROM movies_cast WHERE movie_id = k.movie"
                "  UNION SELECT person_id FROM movies_movie_directors WHERE movie_id = k.movie) AS c"
                " JOIN movies_person p ON p.id = c.person_id AND movies_match_key(p.name) = movies_match_key(k.name)",
                [[movie_of[key[0]] for key in on_movie], [refs[key][1].name for key in on_movie]],
            )
            found: dict[int, list[tuple[int, str | None]]] = {}
            for n, pk, nm in cursor.fetchall():
                found.setdefault(n - 1, []).append((pk, nm))
            done = {on_movie[n] for n, candidates in found.items() if resolve(on_movie[n], candidates)}
            pending = [key for key in pending if key not in done]
        # 3. In the whole catalogue, by name (dis-)ambiguated by the nm id, one query per distinct (name, nm?).
        if pending:
            wanted = list(dict.fromkeys((refs[key][1].name, refs[key][1].imdb_id is not None) for key in pending))
            cursor.execute(
                "SELECT k.n, p.id, p.imdb_id FROM unnest(%b::text[], %b::bool[]) WITH ORDINALITY AS k(name, has_nm, n)"
                " CROSS JOIN LATERAL (SELECT id, imdb_id FROM movies_person"
                "  WHERE movies_match_key(name) = movies_match_key(k.name) AND (NOT k.has_nm OR imdb_id IS NULL)"
                "  ORDER BY id LIMIT 6) AS p",
                [[name for name, _ in wanted], [has_nm for _, has_nm in wanted]],
            )
            by_name: dict[tuple[str, bool], list[tuple[int, str | None]]] = {}
            for n, pk, nm in cursor.fetchall():
                by_name.setdefault(wanted[n - 1], []).append((pk, nm))
            still: list[tuple[int, tuple[str, str]]] = []
            for key in pending:
                record, ref, where = refs[key]
                candidates = by_name.get((ref.name, ref.imdb_id is not None), [])
                if resolve(key, candidates):
                    continue
                if len(candidates) > 1:
                    listed = ", ".join(f"person {pk} ({nm or 'no IMDb id'})" for pk, nm in candidates)
                    counts.notes.append(
                        RowError(
                            record.file,
                            record.line,
                            where,
                            f"ambiguous: {len(candidates)}{'+' if len(candidates) == 6 else ''} people are named"
                            f" {ref.name!r} ({listed}); a new person was created for this credit",
                        )
                    )
                still.append(key)
            pending = still
        if links:
            cursor.execute(
                "UPDATE movies_person AS p SET imdb_id = v.i, updated_at = now()"
                " FROM unnest(%s::bigint[], %s::text[]) AS v(id, i) WHERE p.id = v.id AND p.imdb_id IS NULL",
                [list(links), list(links.values())],
            )
            counts.linked += len(links)
        # 4. Created: by nm id (ON CONFLICT: another writer may create it meanwhile), else one per exact name.
        new_nm: dict[str, str] = {}
        for key in pending:
            ref = refs[key][1]
            if ref.imdb_id:
                new_nm.setdefault(ref.imdb_id, ref.name)
        if new_nm:
            missing = sorted(new_nm)  # sorted: concurrent writers, no deadlock
            cursor.execute(
                "INSERT INTO movies_person (name, imdb_id, created_at, updated_at)"
                " SELECT n, i, now(), now() FROM unnest(%s::text[], %s::text[]) AS v(n, i)"
                " ON CONFLICT (imdb_id) DO NOTHING",
                [[new_nm[nm] for nm in missing], missing],
            )
            cursor.execute("SELECT imdb_id, id FROM movies_person WHERE imdb_id = ANY(%s)", [missing])
            by_nm.update(cursor.fetchall())
        new_names = sorted({refs[key][1].name for key in pending if not refs[key][1].imdb_id})
        created: dict[str, int] = {}
        if new_names:
            cursor.execute(
                "INSERT INTO movies_person (name, created_at, updated_at)"
                " SELECT n, now(), now() FROM unnest(%s::text[]) AS v(n) RETURNING name, id",
                [new_names],
            )
            created = dict(cursor.fetchall())
        for key in pending:
            ref = refs[key][1]
            ids[key] = by_nm[ref.imdb_id] if ref.imdb_id else created[ref.name]
        return ids

    def _match(
        self, cursor: psycopg.Cursor[Any], records: list[MovieRecord]
    ) -> tuple[dict[int, tuple[Any, ...]], list[tuple[MovieRecord, str]]]:
        """Existing movies for the records, locked: (id(record) -> row, the ambiguous records with the reason).

        1. By IMDb id. 2. By the row's own id, when the movie with that id has the same normalised title and year
        (and no other IMDb id): an export re-imported onto its own catalogue. 3. By normalised title and year, among
        all movies for a row without an IMDb id and among movies without one for a row with one, leaving out
        movies another row of this import has: one candidate matches; several are narrowed to those sharing a
        director; still several is ambiguous, reported and not written.
        """
        wanted: dict[int, int] = {}  # id(record) -> movie id
        taken: set[int] = set()

        def take(record: MovieRecord, pk: int) -> bool:
            if pk in taken or pk in self.claimed:
                return False
            wanted[id(record)] = pk
            taken.add(pk)
            return True

        imdb_ids = [r.imdb_id for r in records if r.imdb_id]
        cursor.execute("SELECT imdb_id, id FROM movies_movie WHERE imdb_id = ANY(%b)", [imdb_ids])
        by_imdb = dict(cursor.fetchall())
        rest: list[MovieRecord] = []
        for record in records:
            pk = by_imdb.get(record.imdb_id) if record.imdb_id else None
            if pk is None or not take(record, pk):
                rest.append(record)
        with_id = [r for r in rest if r.row_id is not None and r.row_id.isdigit() and len(r.row_id) < 19]
        if with_id:
            cursor.execute(
                "SELECT k.n, m.id FROM unnest(%b::bigint[], %b::text[], %b::int[], %b::text[])"
                " WITH ORDINALITY AS k(id, title, year, imdb, n) JOIN movies_movie m ON m.id = k.id AND m.year = k.year"
                " AND movies_match_key(m.title) = movies_match_key(k.title) AND (k.imdb IS NULL OR m.imdb_id IS NULL)",
                [
                    [int(r.row_id) for r in with_id],  # type: ignore[arg-type]
                    [r.title for r in with_id],
                    [r.year for r in with_id],
                    [r.imdb_id for r in with_id],
                ],
            )
            for n, pk in cursor.fetchall():
                take(with_id[n - 1], pk)
            rest = [r for r in rest if id(r) not in wanted]
        ambiguous: list[tuple[MovieRecord, str]] = []
        if any(r.imdb_id for r in rest):
            # A row with an IMDb id matches by title only a movie without one: none, as in most IMDb imports onto
            # an IMDb-keyed catalogue, spares a normalised title per row (movies_match_key costs ~5-10 us).
            cursor.execute("SELECT EXISTS (SELECT 1 FROM movies_movie WHERE imdb_id IS NULL)")
            if not cursor.fetchone()[0]:  # type: ignore[index]
                rest = [r for r in rest if not r.imdb_id]
        if rest:
            cursor.execute(
                "SELECT k.n, m.id, m.title, m.year, m.imdb_id FROM unnest(%b::text[], %b::int[], %b::bool[])"
                " WITH ORDINALITY AS k(title, year, has_imdb, n) JOIN movies_movie m"
                " ON movies_match_key(m.title) = movies_match_key(k.title) AND m.year = k.year"
                " AND (NOT k.has_imdb OR m.imdb_id IS NULL) ORDER BY k.n, m.id",
                [[r.title for r in rest], [r.year for r in rest], [r.imdb_id is not None for r in rest]],
            )
            found: dict[int, list[tuple[Any, ...]]] = {}
            for n, *candidate in cursor.fetchall():
                found.setdefault(n - 1, []).append(tuple(candidate))
            tied: list[tuple[MovieRecord, list[tuple[Any, ...]]]] = []
            for n, candidates in found.items():
                record = rest[n]
                free = [c for c in candidates if c[0] not in self.claimed and c[0] not in taken]
                if len(free) == 1:
                    take(record, free[0][0])
                elif free:
                    tied.append((record, free))
            if tied:
                ambiguous = self._tie_break(cursor, tied, take)
        if not wanted:
            return {}, ambiguous
        # Lock in id order (no deadlocks between importers); the UPDATE checks the version read here.
        cursor.execute(
            f"SELECT {_MOVIE_COLUMNS} FROM movies_movie WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",  # noqa: S608
            [sorted(taken)],
        )
        # jsonb arrives as text (Django's psycopg setup): the provenance is parsed here, once.
        rows = {row[0]: (*row[:-1], json.loads(row[-1]) if isinstance(row[-1], str) else row[-1]) for row in cursor}
        matched = {key: rows[pk] for key, pk in wanted.items() if pk in rows}
        # The row as locked may have changed since it was matched (another batch gave it an IMDb id): match again.
        for record in records:
            row = matched.get(id(record))
            if row is None or (record.imdb_id and row[6] == record.imdb_id):
                continue
            if (row[6] is not None and record.imdb_id is not None) or row[3] != record.year:
                raise BatchConflict
        return matched, ambiguous

    @staticmethod
    def _tie_break(
        cursor: psycopg.Cursor[Any],
        tied: list[tuple[MovieRecord, list[tuple[Any, ...]]]],
        take: Callable[[MovieRecord, int], bool],
    ) -> list[tuple[MovieRecord, str]]:
        """Several movies share a row's normalised title and year: the one that shares a director, if only one."""
        pks = sorted({c[0] for _, candidates in tied for c in candidates})
        cursor.execute(f"SELECT m.id, {_DIRECTOR_KEYS_SQL} FROM movies_movie m WHERE m.id = ANY(%s)", [pks])  # noqa: S608
        directors = {pk: set(keys) - {None} for pk, keys in cursor.fetchall()}
        names = sorted({ref.name for record, _ in tied for ref in record.directors})
        cursor.execute("SELECT n, movies_match_key(n) FROM unnest(%s::text[]) AS n", [names])
        name_keys = dict(cursor.fetchall())
        ambiguous: list[tuple[MovieRecord, str]] = []
        for record, candidates in tied:
            keys = {ref.imdb_id for ref in record.directors if ref.imdb_id}
            keys |= {name_keys[ref.name] for ref in record.directors}
            sharing = [c for c in candidates if keys & directors.get(c[0], set())]
            if len(sharing) == 1 and take(record, sharing[0][0]):
                continue
            ambiguous.append(
                (
                    record,
                    f"ambiguous: {len(candidates)} movies match {record.title!r} ({record.year})"
                    f"{'' if not record.directors else ' and no single one shares a director'}: "
                    f"{_candidates(candidates)}; not written (give the row an IMDb id, or edit one of them)",
                )
            )
        return ambiguous

    def _relations(self, cursor: psycopg.Cursor[Any], movie_ids: list[int]) -> dict[int, dict[str, Any]]:
        """The current genres (a set), directors and cast (lists, in order) of the matched movies."""
        current: dict[int, dict[str, Any]] = {pk: {"genres": set(), "directors": [], "cast": []} for pk in movie_ids}
        if not movie_ids:
            return current
        cursor.execute(f"SELECT movie_id, genre_id FROM {self.genres_table} WHERE movie_id = ANY(%s)", [movie_ids])  # noqa: S608
        for pk, genre in cursor.fetchall():
            current[pk]["genres"].add(genre)
        cursor.execute(
            f"SELECT movie_id, person_id FROM {self.directors_table} WHERE movie_id = ANY(%s) ORDER BY id",  # noqa: S608
            [movie_ids],
        )
        for pk, person in cursor.fetchall():
            current[pk]["directors"].append(person)
        cursor.execute(
            f'SELECT movie_id, person_id, "character" FROM {self.cast_table}'  # noqa: S608
            ' WHERE movie_id = ANY(%s) ORDER BY movie_id, "order"',
            [movie_ids],
        )
        for pk, person, character in cursor.fetchall():
            current[pk]["cast"].append((person, character))
        return current


# ---- the import --------------------------------------------------------------------------------


@dataclass
class ImportResult:
    counts: Counts = field(default_factory=Counts)
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    # Rows or credits that match several movies or people: reported with the candidates, never guessed.
    ambiguous: int = 0
    elapsed: float = 0.0
    dry_run: bool = False
    strict: bool = False
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected or self.ambiguous or self.fatal else 0

    def summary(self) -> str:
        rate = self.rows / self.elapsed if self.elapsed else 0.0
        c = self.counts
        counts = (
            f"created: {c.created:,}, updated: {c.updated:,}, unchanged: {c.unchanged:,}, linked: {c.linked:,},"
            f" merged: {c.merged:,}, ambiguous: {self.ambiguous:,}"
        )
        if self.dry_run:
            head = f"dry run, nothing written: valid: {self.valid:,}, would be {counts}"
        elif self.strict and self.rejected:
            head = "strict: nothing loaded because of rejected rows: created: 0, updated: 0, unchanged: 0"
        else:
            head = counts
        return f"{head}, rejected: {self.rejected:,}, elapsed: {self.elapsed:.2f}s ({rate:,.0f} rows/s)"


class ErrorSink:
    """Reports bad rows to the terminal and, if asked, to a CSV or JSONL file."""

    TERMINAL_CAP = 1000

    def __init__(self, stream: TextIO, path: Path | None) -> None:
        self.stream, self.path, self.count = stream, path, 0
        self._file: TextIO | None = None
        self._csv: Any = None
        if path is not None:
            suffix = path.suffix.lower()
            if suffix not in (".csv", ".jsonl", ".json"):
                raise InputUnusable(f"--errors {path}: name the file .csv or .jsonl")
            self._file = path.open("w", encoding="utf-8", errors="backslashreplace", newline="")
            if suffix == ".csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow(["file", "line", "field", "reason"])

    def __call__(self, error: RowError) -> None:
        self.count += 1
        if self._file is None or self.count <= self.TERMINAL_CAP:
            self.stream.write(f"rejected {error.file}:{error.line}: {error.field}: {error.reason}\n")
        elif self.count == self.TERMINAL_CAP + 1:
            self.stream.write(f"... more rejected rows are listed in {self.path}\n")
        if self._csv is not None:
            self._csv.writerow([error.file, error.line, error.field, error.reason])
        elif self._file is not None:
            self._file.write(json.dumps(error.as_dict(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Importer:
    """Reads, validates, de-duplicates and writes in batches; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        fmt: str = "auto",
        batch_size: int = 5000,
        dry_run: bool = False,
        strict: bool = False,
        precedence: Precedence | None = None,
        errors: ErrorSink,
        progress: Progress,
    ) -> None:
        self.genre_names: dict[str, str] = {}
        self.source = open_source(path, fmt, self.genre_names)
        self.batch_size = max(1, batch_size)
        self.dry_run, self.strict = dry_run, strict
        self.errors, self.progress = errors, progress
        self.precedence = precedence or Precedence()
        self.claimed: set[int] = set()  # the movies this import has matched or created (BatchWriter)
        self.writers: list[BatchWriter] = [self._writer(link_people=True)]
        self.result = ImportResult(dry_run=dry_run, strict=strict)
        self.lock = threading.Lock()
        self.threads: list[ThreadPoolExecutor] = []
        self.pending: deque[Future[None]] = deque()
        self.turn = 0

    def _writer(self, *, link_people: bool) -> BatchWriter:
        return BatchWriter(
            self.genre_names, self.source, precedence=self.precedence, claimed=self.claimed, link_people=link_people
        )

    def report(self, error: RowError, *, ambiguous: bool = False) -> None:
        with self.lock:  # the writer threads report rows PostgreSQL refuses
            if ambiguous:
                self.result.ambiguous += 1
            else:
                self.result.rejected += 1
            self.errors(error)

    def run(self) -> ImportResult:
        start = time.monotonic()
        # Reading and validating (Python) overlap with writing (PostgreSQL) when each batch commits on its
        # own: writer threads with their own connections (two when the source allows, so that two PostgreSQL
        # backends work at once; see Source.parallel). Inside a caller's transaction, with --strict's single
        # transaction or a dry run's, everything stays on this thread's connection.
        if not self.dry_run and not self.strict and not connection.in_atomic_block:
            # People without an IMDb id may be linked to one by name (see BatchWriter._people): one writer then,
            # so that two batches never link the same person.
            count = 2 if self.source.parallel and not Person.objects.filter(imdb_id__isnull=True).exists() else 1
            self.threads = [
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-writer-{n}") for n in range(count)
            ]
            self.writers = [self._writer(link_people=count == 1) for _ in range(count)]
        try:
            if self.strict or self.dry_run:
                # All or nothing: one transaction; each batch is a savepoint inside it. A dry run writes everything
                # the same way, to count what it would do, and rolls it back.
                with transaction.atomic():
                    self._run()
                    if self.dry_run or self.result.rejected or self.result.fatal:
                        transaction.set_rollback(True)
            else:
                self._run()
        finally:
            try:
                self._wait(0)
            finally:
                self._on_writers(self._close_writer)
                for thread in self.threads:
                    thread.shutdown()
                self.result.elapsed = time.monotonic() - start
        return self.result

    def _session(self) -> None:
        """The writer's session: a commit need not wait for its WAL flush. Each batch stays atomic; a crash of
        the server mid-import can lose only the last batches committed, which a rerun writes again; the import
        waits for the flush before it reports (_close_writer)."""
        # JIT compiles each batch's statements again (their costs are large) and saves nothing on them; the
        # staged side files are probed at random, and fit in the session's temporary buffers up to some size.
        raw_cursor().execute("SET synchronous_commit TO off; SET jit TO off; SET temp_buffers TO '256MB'")

    def _on_writers(self, work: Callable[[], Any]) -> list[Any]:
        """Run work on every writer thread at once (else here) and wait for all of them."""
        if not self.threads:
            return [work()]
        futures = [thread.submit(work) for thread in self.threads]
        return [future.result() for future in futures]

    def _close_writer(self) -> None:
        self.source.close()
        if self.threads:
            if not self.dry_run:
                # The batches were committed without waiting for their WAL (see _session); one synchronous
                # commit with a transaction id waits until the WAL is on disk up to here, so whatever the
                # summary reports as written survives a crash of the server.
                raw_cursor().execute("SET synchronous_commit TO on; SELECT txid_current()")
            connection.close()  # the writer thread's own connection

    def _wait(self, in_flight: int) -> None:
        """Wait until at most in_flight batches are being written (memory stays at a few batches)."""
        error: BaseException | None = None
        while len(self.pending) > in_flight:
            try:
                self.pending.popleft().result()
            except BaseException as exc:  # re-raised below, once the others have finished
                error = error or exc
        if error is not None:
            raise error

    def _writing(self) -> bool:
        return not (self.strict and (self.result.rejected or self.result.fatal))

    def _run(self) -> None:
        if self.threads:
            self._on_writers(self._session)
        # Side files are read once, here, and staged on every writer's connection.
        cursors: list[psycopg.Cursor[Any]] = self._on_writers(raw_cursor)
        self.source.prepare(cursors=cursors, report=self.report, progress=self.progress)
        seen: set[int] = set()
        batch: list[MovieRecord] = []
        file = self.source.file
        items = self.progress.wrap(self.source.items(), f"importing {file}")
        try:
            for line, raw in items:
                self.result.rows += 1
                if isinstance(raw, RowRejected):
                    self.report(RowError(file, line, raw.field, raw.reason))
                    continue
                try:
                    record = validate_movie(raw, file=file, line=line)
                except RowRejected as exc:
                    self.report(RowError(file, line, exc.field, exc.reason))
                    continue
                # A hash per key keeps memory small; a collision would wrongly reject one row in 2**64.
                hashes = [hash(key) for key in record.keys]
                twin = next((key for key, key_hash in zip(record.keys, hashes, strict=True) if key_hash in seen), None)
                if twin is not None:
                    kind, *value = twin
                    what = {"imdb": "IMDb id", "id": "id", "natural": "title and year"}[kind]
                    self.report(
                        RowError(
                            file,
                            line,
                            {"imdb": "imdb_id", "id": "id", "natural": "title"}[kind],
                            f"duplicate: {what} {', '.join(map(repr, value))} appeared earlier in the file",
                        )
                    )
                    continue
                seen.update(hashes)
                self.result.valid += 1
                batch.append(record)
                if len(batch) >= self.batch_size:
                    self._flush(batch)
                    batch = []
        except RowRejected as exc:  # the rest of the file cannot be read (truncated JSON, ...)
            self.result.fatal = exc.reason
            self.report(RowError(file, 0, exc.field, exc.reason))
        except (OSError, EOFError, UnicodeError) as exc:
            self.result.fatal = str(exc)
            self.report(RowError(file, 0, "-", f"the file cannot be read further: {exc}"))
        self._flush(batch)

    def _flush(self, batch: list[MovieRecord]) -> None:
        if not batch or not self._writing():
            return
        if not self.threads:
            self._write(self.writers[0], batch)
            return
        # Round robin: the batch in flight longest is the one on the writer whose turn it is.
        self._wait(len(self.threads) - 1)
        turn, self.turn = self.turn, (self.turn + 1) % len(self.threads)
        self.pending.append(self.threads[turn].submit(self._write, self.writers[turn], batch))

    def _write(self, writer: BatchWriter, batch: list[MovieRecord]) -> None:
        try:
            counts = writer.write(batch)
        except DatabaseError:
            # One bad row must not sink its batch: write them one by one, reporting the ones PostgreSQL refuses.
            counts = Counts()
            for record in batch:
                try:
                    counts.add(writer.write([record]))
                except DatabaseError as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self.report(RowError(record.file, record.line, "-", f"refused by the database: {reason}"))
        with self.lock:
            self.result.counts.add(counts)
        for note in counts.notes:
            self.report(note, ambiguous=True)


def run_import(
    path: Path,
    *,
    fmt: str = "auto",
    batch_size: int = 5000,
    dry_run: bool = False,
    strict: bool = False,
    precedence: Iterable[str] | None = None,
    errors_path: Path | None = None,
    stderr: TextIO | None = None,
    tty: bool | None = None,
) -> ImportResult:
    """Import a file or folder; raises InputUnusable when the input cannot be used at all."""
    stderr = stderr or sys.stderr
    sink = ErrorSink(stderr, errors_path)
    try:
        importer = Importer(
            path,
            fmt=fmt,
            batch_size=batch_size,
            dry_run=dry_run,
            strict=strict,
            precedence=Precedence(precedence) if precedence is not None else None,
            errors=sink,
            progress=Progress(stderr, tty=tty),
        )
        return importer.run()
    finally:
        sink.close()
