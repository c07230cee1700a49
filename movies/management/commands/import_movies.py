"""`manage.py import_movies PATH`: load movies (ours, IMDb TSV, MovieLens) in bulk, idempotently.

Exit codes: 0 every row loaded, 1 some rows rejected or ambiguous (listed on stderr and in --errors), 2 the input
could not be used at all. See docs/loading-data.md and movies/importers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from movies.importers import FORMATS, InputUnusable, run_import


class Command(BaseCommand):
    help = (
        "Import movies from a JSON array, JSON Lines or CSV file in the export format, an IMDb TSV folder "
        "or a MovieLens folder. Movies are matched by IMDb id, else by normalised title + year (docs/loading-data.md);"
        " a field is never overwritten by a source ranking below the one that set it; changes bump the version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="A file (json, jsonl, csv; .gz too) or a folder (imdb, movielens).")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, default="auto")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Do everything in a transaction that is rolled back: report what would be created, updated, linked,"
            " merged and what is ambiguous; write nothing.",
        )
        parser.add_argument("--batch-size", type=int, default=5000, help="Movies per transaction (default 5000).")
        parser.add_argument("--strict", action="store_true", help="Load nothing if any row is bad.")
        parser.add_argument("--errors", type=Path, help="Also write rejected rows to this .csv or .jsonl file.")
        parser.add_argument(
            "--precedence",
            help="Import sources from highest to lowest, comma-separated (default: ours,imdb,movielens); a curator's"
            " edits always rank above them. A field set by a higher source is never overwritten by a lower one.",
        )

    def handle(
        self,
        *args: Any,
        path: Path,
        fmt: str,
        dry_run: bool,
        batch_size: int,
        strict: bool,
        errors: Path | None,
        precedence: str | None,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.", returncode=2)
        try:
            result = run_import(
                path,
                fmt=fmt,
                batch_size=batch_size,
                dry_run=dry_run,
                strict=strict,
                precedence=precedence.split(",") if precedence is not None else None,
                errors_path=errors,
                stderr=cast(TextIO, self.stderr._out),  # the raw stream: tqdm needs isatty()
            )
        except InputUnusable as exc:
            raise CommandError(f"Cannot import {path}: {exc}", returncode=2) from exc
        self.stdout.write(result.summary())
        if result.exit_code:
            raise CommandError(
                f"{result.rejected:,} row(s) rejected, {result.ambiguous:,} ambiguous; see the lines above"
                + (f" and {errors}" if errors else "")
                + ("; nothing was loaded (--strict)." if strict and not dry_run else "."),
                returncode=result.exit_code,
            )
