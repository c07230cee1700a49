"""Sources: a reader per format, with hooks that complete a batch before it is written. Our files and MovieLens
here; IMDb in movies/importers/imdb.py."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import psycopg

from movies.importers.progress import Progress
from movies.importers.readers import external_genres, open_text, read_csv, read_json_array, read_jsonl
from movies.importers.records import InputUnusable, Item, MovieRecord, RowError, RowRejected
from movies.versions import ImportSource

_MOVIELENS_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_MOVIELENS_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>The|A|An)$")
# MovieLens adds the original title in parentheses: "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)".
_MOVIELENS_ALSO_KNOWN = re.compile(r"^(?P<title>.*\S)\s+\((?:a\.k\.a\. )?[^()]+\)$")


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

    @property
    def history_source(self) -> ImportSource:
        """What the history records as the import's source (docs/history.md)."""
        return "json"

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

    @property
    def history_source(self) -> ImportSource:
        """JSON and JSON Lines are `json`, CSV `csv`."""
        return "csv" if self.fmt == "csv" else "json"

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

    @property
    def history_source(self) -> ImportSource:
        """`movielens`."""
        return "movielens"

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
