"""The batch writer: precedence and provenance (docs/loading-data.md), and each batch written in one transaction
through services.movie_import_batch, the bulk form of the versioned write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import OperationalError, transaction

from movies import services
from movies.importers.matching import Matcher
from movies.importers.records import BatchConflict, Counts, InputUnusable, MovieRecord, PersonRef, RowError
from movies.importers.sources import Source
from movies.importers.sql import raw_cursor
from movies.models import CastMember, Movie
from movies.rules import CURATOR, MAX_CAST, PROVENANCE_FIELDS, SCALAR_FIELDS
from movies.versions import Actor


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


class BatchWriter(Matcher):
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
            actor=Actor.importer(self.source.history_source),
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
