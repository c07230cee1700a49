"""`manage.py load_sample`: the bundled sample films into an empty catalogue, and only into an empty one.

`make run` calls it on every start: a restart must never change data, so a catalogue holding any movie (the
sample itself, curators' edits, other imports) is left exactly as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from movies.models import Movie

SAMPLE = Path(settings.BASE_DIR) / "movies" / "fixtures" / "sample_movies.json"
# A session advisory lock: two starts at once (two `make run`s on one database) load the sample once.
LOCK_KEY = 0x6D6F766965_5341  # "movie" "SA"


class Command(BaseCommand):
    help = "Load the bundled sample films if the catalogue has no movie at all; otherwise change nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", type=Path, default=SAMPLE, help="The sample file (default: the bundled one).")

    def handle(self, *args: Any, path: Path, **options: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            if Movie.objects.exists():
                self.stdout.write("catalogue not empty: skipped loading the bundled sample (a restart changes no data)")
                return
            try:
                films = len(json.loads(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read the sample {path}: {exc}", returncode=2) from exc
            self.stdout.write(f"catalogue empty: loading the bundled sample ({films:,} films)")
            call_command("import_movies", str(path), stdout=self.stdout._out, stderr=self.stderr._out)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
