"""Reading files: our JSON, JSON Lines and CSV (streamed), format detection, and the genre names of IMDb and
MovieLens mapped to our slugs."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from movies.importers.cleaning import to_slug
from movies.importers.records import InputUnusable, Item, RowRejected
from movies.rules import RELATION_FIELDS, SCALAR_FIELDS

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
        slug = EXTERNAL_GENRES.get(name.lower()) or to_slug(name)
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
