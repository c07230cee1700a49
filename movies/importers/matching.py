"""Matching (docs/loading-data.md): which movie and which person each row of a batch is about."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from movies.importers.records import BatchConflict, Counts, MovieRecord, PersonRef, RowError
from movies.importers.sources import Source
from movies.importers.sql import DIRECTOR_KEYS_SQL, MATCHED_MOVIE_COLUMNS


def _candidates(rows: Iterable[tuple[Any, ...]]) -> str:
    return "; ".join(f"movie {pk} {title!r} ({year}, {imdb or 'no IMDb id'})" for pk, title, year, imdb in rows)


class Matcher:
    """The half of BatchWriter that finds a batch's movies (locked) and people; it writes only the people it
    creates or links. `claimed`: the movies this import already matched or created (see BatchWriter)."""

    source: Source
    claimed: set[int]

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
            f"SELECT {MATCHED_MOVIE_COLUMNS} FROM movies_movie WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",  # noqa: S608
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
        cursor.execute(f"SELECT m.id, {DIRECTOR_KEYS_SQL} FROM movies_movie m WHERE m.id = ANY(%s)", [pks])  # noqa: S608
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
