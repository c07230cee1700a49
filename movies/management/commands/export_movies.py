"""`manage.py export_movies PATH [--format jsonl|json|csv]`: stream the catalogue in the import format."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from movies.importers import CSV_COLUMNS
from movies.models import Movie
from movies.selectors import movie_queryset

CHUNK = 2000


def movie_record(movie: Movie) -> dict[str, Any]:
    """A movie in the import/export shape: people by name and IMDb id, cast in billing order."""
    return {
        "title": movie.title,
        "year": movie.year,
        "runtime": movie.runtime,
        "overview": movie.overview,
        "imdb_id": movie.imdb_id,
        "genres": [genre.slug for genre in movie.genres.all()],
        "directors": [{"name": person.name, "imdb_id": person.imdb_id} for person in movie.directors.all()],
        "cast": [
            {"name": role.person.name, "imdb_id": role.person.imdb_id, "character": role.character}
            for role in movie.cast.all()
        ],
    }


def export_records() -> Iterator[dict[str, Any]]:
    """Every movie by id, read through a server-side cursor in chunks, each chunk's relations prefetched."""
    queryset = movie_queryset().defer("search_vector", "rating_sum").order_by("id")
    for movie in queryset.iterator(chunk_size=CHUNK):
        yield movie_record(movie)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(out: TextIO, records: Iterator[dict[str, Any]]) -> int:
    count = 0
    for count, record in enumerate(records, start=1):  # noqa: B007 (count is returned)
        out.write(_dumps(record) + "\n")
    return count


def write_json(out: TextIO, records: Iterator[dict[str, Any]]) -> int:
    count = 0
    out.write("[")
    for count, record in enumerate(records, start=1):
        out.write(("\n" if count == 1 else ",\n") + _dumps(record))
    out.write("\n]\n")
    return count


def write_csv(out: TextIO, records: Iterator[dict[str, Any]]) -> int:
    """Genres '|'-separated slugs; directors and cast as JSON arrays in their cells."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for count, record in enumerate(records, start=1):  # noqa: B007
        writer.writerow(
            [
                record["title"],
                record["year"],
                "" if record["runtime"] is None else record["runtime"],
                record["overview"],
                record["imdb_id"] or "",
                "|".join(record["genres"]),
                _dumps(record["directors"]),
                _dumps(record["cast"]),
            ]
        )
    return count


WRITERS = {"jsonl": write_jsonl, "json": write_json, "csv": write_csv}


class Command(BaseCommand):
    help = "Export the catalogue as JSON Lines (default), a JSON array or CSV, in the shape import_movies reads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The file to write ('-' for standard output).")
        parser.add_argument("--format", dest="fmt", choices=sorted(WRITERS), default=None)

    def handle(self, *args: Any, path: Path, fmt: str | None, **options: Any) -> None:
        if fmt is None:
            suffix = path.suffix.lower().lstrip(".")
            fmt = suffix if suffix in WRITERS else "jsonl"
        writer = WRITERS[fmt]
        outermost = not connection.in_atomic_block
        # One transaction: a consistent snapshot for the cursor and its prefetches, no WITH HOLD cursor needed.
        with transaction.atomic():
            if outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if str(path) == "-":
                count = writer(cast(TextIO, self.stdout._out), export_records())
            else:
                try:
                    with path.open("w", encoding="utf-8", newline="") as out:
                        count = writer(out, export_records())
                except OSError as exc:
                    raise CommandError(f"Cannot write {path}: {exc}", returncode=2) from exc
        self.stderr.write(f"Exported {count:,} movies to {path} ({fmt}).")
