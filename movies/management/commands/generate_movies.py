"""`manage.py generate_movies --count N --seed S`: a synthetic catalogue for benchmarks, loaded with COPY.

Realistic in shape: 1-4 genres a movie (drama and comedy commonest), about five cast members drawn from
a skewed pool (a few people play in very many films), one or two directors, some titles in other
scripts, and ratings from many users with heavy-tailed popularity (most films have none, a few have
thousands). Each movie's `rating_count` / `rating_sum` is the exact sum of its rating rows.

Deterministic for a seed: the same seed on an empty catalogue gives the same rows and ids. Rows are
appended after the highest existing ids, in one transaction. For a big load into a catalogue that is
smaller than the load, the loaded tables' secondary indexes, unique and foreign-key constraints are
dropped first and rebuilt identically after the COPY (bulk index builds instead of ten index updates
per row, and foreign keys validated in one pass); everything happens in the one transaction, so a
failure leaves the schema untouched. On that path the history's triggers are paused in the transaction and
each movie's first version is recorded in one statement once the indexes are back (docs/history.md).
1,000,000 movies take about 5 minutes on 2 cores, 2 of them recording the first versions.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from movies import history_sql
from movies.management.generation import FIRST_NAMES, Generator
from movies.models import Genre

# Below this many movies, or when the catalogue already holds more, indexes are maintained row by row.
BULK_MIN = 20_000
CHUNK = 25_000
EPOCH = datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC)
TABLES = [
    "auth_user",
    "movies_person",
    "movies_movie",
    "movies_movie_genres",
    "movies_movie_directors",
    "movies_cast",
    "movies_rating",
]
# Only these tables' indexes and constraints are rebuilt (auth_user stays as it is: it is small).
REBUILT = TABLES[1:]


def _copy(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    quoted = ", ".join(f'"{column}"' for column in columns)
    with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class Command(BaseCommand):
    help = "Generate a synthetic, deterministic movie catalogue with COPY (for benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        """--count, --seed and optional pool sizes."""
        parser.add_argument("--count", type=int, required=True, help="How many movies to add.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed (same seed, same catalogue).")
        parser.add_argument("--people", type=int, help="People to add (default: count / 2, at least 50).")
        parser.add_argument("--users", type=int, help="Rating users to add (default: count / 50, at least 50).")

    def handle(self, *args: Any, count: int, seed: int, people: int | None, users: int | None, **options: Any) -> None:
        """Generate and load everything in one transaction, then VACUUM ANALYZE."""
        if count < 1:
            raise CommandError("--count must be at least 1.")
        people = people if people is not None else max(50, count // 2)
        users = users if users is not None else max(50, count // 50)
        if people < 2 or users < 1:
            raise CommandError("--people must be at least 2 and --users at least 1.")
        genre_ids = dict(Genre.objects.values_list("slug", "id"))
        if not genre_ids:
            raise CommandError("No genres: run `manage.py migrate` first (it creates the standard genres).")
        started = time.monotonic()
        generator = Generator(seed=seed, people=people, users=users, genre_ids=genre_ids)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(TABLES)} IN SHARE ROW EXCLUSIVE MODE")
            bases = {}
            for table in TABLES:
                cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608 (constant names)
                bases[table] = cursor.fetchone()[0]
            # A deleted movie's id is never reused: its history keeps it (docs/history.md).
            cursor.execute("SELECT coalesce(max(movie_id), 0) FROM movies_movieversion")
            bases["movies_movie"] = max(bases["movies_movie"], cursor.fetchone()[0])
            cursor.execute("SELECT count(*) FROM movies_movie")
            existing = cursor.fetchone()[0]
            rebuild = count >= BULK_MIN and count >= existing
            if rebuild:  # the versions are recorded below, set-based, once the indexes are back
                cursor.execute(history_sql.bulk_load_triggers_sql(enabled=False))
            saved = self._drop_indexes(cursor) if rebuild else []
            self._load(cursor, generator, count, bases)
            if saved:
                self._log(started, "rebuilding indexes and constraints")
                cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
                for statement in saved:
                    cursor.execute(statement)
            if rebuild:
                cursor.execute(history_sql.bulk_load_triggers_sql(enabled=True))
                self._log(started, "recording each movie's first version (docs/history.md)")
                cursor.execute(history_sql.BULK_LOAD_HISTORY_SQL, [bases["movies_movie"]])
            for table in TABLES:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )
        # VACUUM sets the visibility map that index-only scans (the deferred-join pages) rely on; it cannot
        # run inside a caller's transaction (tests), where ANALYZE alone is done.
        command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        self._log(started, command)
        with connection.cursor() as cursor:
            for table in TABLES:
                cursor.execute(f"{command} {table}")
        self._log(started, f"done: {count} movies, {people} people, {users} users (seed {seed})")

    def _log(self, started: float, message: str) -> None:
        self.stdout.write(f"[{time.monotonic() - started:7.1f}s] {message}")
        self.stdout.flush()

    def _drop_indexes(self, cursor: Any) -> list[str]:
        """Drop the loaded tables' secondary indexes, unique and foreign keys; return the SQL that recreates them."""
        tables = "ARRAY[" + ", ".join(f"'{table}'::regclass" for table in REBUILT) + "]"
        cursor.execute(
            f"""SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
                FROM pg_constraint WHERE conrelid = ANY({tables}) AND contype IN ('u', 'f')
                ORDER BY contype DESC, conrelid::regclass::text, conname"""  # noqa: S608 (constant names)
        )
        constraints = cursor.fetchall()
        cursor.execute(
            f"""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
                WHERE i.indrelid = ANY({tables}) AND NOT i.indisprimary
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
                ORDER BY 1"""  # noqa: S608 (constant names)
        )
        indexes = cursor.fetchall()
        for table, name, _, _ in reversed(constraints):  # foreign keys first
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        unique = [
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for table, name, kind, definition in constraints
            if kind == "u"
        ]
        foreign = [
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for table, name, kind, definition in constraints
            if kind == "f"
        ]
        return [*unique, *(definition for _, definition in indexes), *foreign]

    def _load(self, cursor: Any, generator: Generator, count: int, bases: dict[str, int]) -> None:
        rng = generator.rng
        started = time.monotonic()
        user_base, person_base = bases["auth_user"], bases["movies_person"]
        joined = EPOCH.isoformat()
        _copy(
            cursor,
            "auth_user",
            [
                "id",
                "password",
                "is_superuser",
                "username",
                "first_name",
                "last_name",
                "email",
                "is_staff",
                "is_active",
                "date_joined",
            ],
            (
                (user_base + n, "!generated", False, f"reviewer{user_base + n}", "", "", "", False, True, joined)
                for n in range(1, generator.users + 1)
            ),
        )
        _copy(
            cursor,
            "movies_person",
            ["id", "name", "imdb_id", "created_at", "updated_at"],
            (
                (person_base + n, generator.person_name(), f"nm9{person_base + n:08d}", joined, joined)
                for n in range(1, generator.people + 1)
            ),
        )
        self._log(started, f"{generator.users} users, {generator.people} people")
        directors_pool = max(1, generator.people // 10)
        movie_id, cast_id, rating_id = bases["movies_movie"], bases["movies_cast"], bases["movies_rating"]
        genre_link_id, director_link_id = bases["movies_movie_genres"], bases["movies_movie_directors"]
        user_ids = range(user_base + 1, user_base + generator.users + 1)
        done = 0
        while done < count:
            movies: list[tuple[Any, ...]] = []
            genre_links: list[tuple[int, int, int]] = []
            director_links: list[tuple[int, int, int]] = []
            cast: list[tuple[int, int, int, str, int]] = []
            ratings: list[tuple[int, int, int, int, str, str]] = []
            for _ in range(min(CHUNK, count - done)):
                movie_id += 1
                created = (EPOCH + datetime.timedelta(seconds=movie_id * 97 % 300_000_000)).isoformat()
                for genre_id in set(
                    rng.choices(generator.genre_ids, generator.genre_weights, k=rng.choice((1, 1, 2, 2, 2, 3, 3, 4)))
                ):
                    genre_link_id += 1
                    genre_links.append((genre_link_id, movie_id, genre_id))
                for person in {generator.popular_person(directors_pool) for _ in range(1 if rng.random() < 0.9 else 2)}:
                    director_link_id += 1
                    director_links.append((director_link_id, movie_id, person_base + 1 + person))
                actors = {generator.popular_person(generator.people) for _ in range(max(1, int(rng.gauss(5, 2.5))))}
                for order, person in enumerate(sorted(actors)):
                    cast_id += 1
                    character = f"{rng.choice(FIRST_NAMES)}" if rng.random() < 0.8 else "Himself"
                    cast.append((cast_id, movie_id, person_base + 1 + person, character, order))
                quality = rng.gauss(6.4, 1.3)
                scores = 0
                raters = rng.sample(user_ids, generator.rating_count())
                for user_id in raters:
                    score = min(10, max(1, round(rng.gauss(quality, 1.6))))
                    scores += score
                    rating_id += 1
                    ratings.append((rating_id, user_id, movie_id, score, created, created))
                year = min(2025, max(1900, int(2025 - abs(rng.gauss(0, 25)))))
                runtime = None if rng.random() < 0.04 else max(3, int(rng.gauss(102, 22)))
                imdb_id = None if rng.random() < 0.1 else f"tt9{movie_id:08d}"
                movies.append(
                    (
                        movie_id,
                        generator.title(),
                        year,
                        runtime,
                        generator.overview(),
                        imdb_id,
                        1,
                        len(raters),
                        scores,
                        created,
                        created,
                    )
                )
            done += len(movies)
            _copy(
                cursor,
                "movies_movie",
                [
                    "id",
                    "title",
                    "year",
                    "runtime",
                    "overview",
                    "imdb_id",
                    "version",
                    "rating_count",
                    "rating_sum",
                    "created_at",
                    "updated_at",
                ],
                movies,
            )
            _copy(cursor, "movies_movie_genres", ["id", "movie_id", "genre_id"], genre_links)
            _copy(cursor, "movies_movie_directors", ["id", "movie_id", "person_id"], director_links)
            _copy(cursor, "movies_cast", ["id", "movie_id", "person_id", "character", "order"], cast)
            _copy(cursor, "movies_rating", ["id", "user_id", "movie_id", "score", "created_at", "updated_at"], ratings)
            self._log(started, f"{done}/{count} movies")
