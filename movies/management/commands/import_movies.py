"""`manage.py import_movies PATH`: load movies in our JSON format, idempotently, through the services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from movies import services
from movies.models import Genre, Movie, Person


def _person(entry: dict[str, Any]) -> Person:
    imdb_id = entry.get("imdb_id")
    if imdb_id:
        person, _ = Person.objects.get_or_create(imdb_id=imdb_id, defaults={"name": entry["name"]})
        return person
    existing = Person.objects.filter(name=entry["name"], imdb_id__isnull=True).order_by("id").first()
    return existing or Person.objects.create(name=entry["name"])


class Command(BaseCommand):
    help = "Import movies from a JSON array in the export format; movies are matched by IMDb id, else title + year."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args: Any, path: Path, **options: Any) -> None:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        genres = {genre.slug: genre for genre in Genre.objects.all()}
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for record in records:
            with transaction.atomic():
                data: services.MovieData = {
                    "title": record["title"],
                    "year": record["year"],
                    "runtime": record.get("runtime"),
                    "overview": record.get("overview") or "",
                    "imdb_id": record.get("imdb_id"),
                    "genres": [genres[slug] for slug in record.get("genres", [])],
                    "directors": [_person(entry) for entry in record.get("directors", [])],
                    "cast": [
                        services.Role(person=_person(entry), character=entry.get("character", ""))
                        for entry in record.get("cast", [])
                    ],
                }
                existing = (
                    Movie.objects.filter(imdb_id=data["imdb_id"]).first()
                    if data["imdb_id"]
                    else Movie.objects.filter(title=data["title"], year=data["year"]).first()
                )
                if existing is None:
                    services.movie_create(data=data)
                    counts["created"] += 1
                elif _differs(existing, data):
                    services.movie_update(movie_id=existing.pk, expected_version=existing.version, data=data)
                    counts["updated"] += 1
                else:
                    counts["unchanged"] += 1
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in counts.items()))


def _differs(movie: Movie, data: services.MovieData) -> bool:
    scalars = any(getattr(movie, name) != data[name] for name in services.SCALAR_FIELDS)  # type: ignore[literal-required]
    genres = [genre.pk for genre in movie.genres.order_by("slug")] != sorted(g.pk for g in data["genres"])
    directors = set(movie.directors.values_list("pk", flat=True)) != {p.pk for p in data["directors"]}
    cast = list(movie.cast.order_by("order").values_list("person_id", "character")) != [
        (role.person.pk, role.character) for role in data["cast"]
    ]
    return scalars or genres or directors or cast
