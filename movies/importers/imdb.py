"""IMDb's TSV files: title.basics, with the credits of title.crew, title.principals and name.basics staged in
temporary tables (the SQL is in movies/importers/sql.py)."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from movies.importers.cleaning import NAME_ID, TITLE_ID, clean_int, clean_text, copy_text
from movies.importers.progress import Progress
from movies.importers.readers import external_genres, find_file, open_text
from movies.importers.records import InputUnusable, Item, MovieRecord, PersonRef, RowError, RowRejected
from movies.importers.sources import Source
from movies.importers.sql import (
    DROP_STAGING_SQL,
    NEW_PEOPLE_SQL,
    STAGED_NAME_SQL,
    STAGING_TABLES_SQL,
    raw_cursor,
    staged_credits_sql,
)
from movies.rules import MAX_CAST, MAX_CHARACTER_LENGTH, MAX_DIRECTORS, MAX_NAME_LENGTH
from movies.versions import ImportSource

IMDB_CAST_CATEGORIES = {"actor", "actress", "self"}
# Lines of COPY text sent to PostgreSQL at once when staging the IMDb side files.
STAGE_CHUNK = 4096


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


class ImdbSource(Source):
    """title.basics.tsv (films only), with credits from title.crew, title.principals and name.basics.

    The side files are streamed into temporary tables first (flat memory whatever their size). New movies
    get their credits from them in SQL (`write_credits`); movies already in the catalogue fetch theirs into
    Python (`complete`) to be compared. Every person has an nm id, so two batches can be written at once.
    """

    name = "imdb"
    parallel = True
    renames_people = True

    @property
    def history_source(self) -> ImportSource:
        """`imdb`."""
        return "imdb"

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
            cursor.execute(STAGING_TABLES_SQL)
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
        pattern, kind = (TITLE_ID, "title") if key == "tconst" else (NAME_ID, "name")
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
                if not NAME_ID.match(nconst):
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
                if not NAME_ID.match(nconst):
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
        ids = list(by_id)
        cursor.execute(
            f"SELECT c.tconst, c.nconst, {STAGED_NAME_SQL} FROM imp_directors c "  # noqa: S608 (no input in the SQL)
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
            f"SELECT c.tconst, c.nconst, c.character, {STAGED_NAME_SQL} FROM imp_cast c "  # noqa: S608
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
        cursor.execute(
            staged_credits_sql(link=link),
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
        cursor.execute(NEW_PEOPLE_SQL)

    def close(self) -> None:
        """Drop the staging tables of this thread's connection (each writer has its own)."""
        if self.staged:
            raw_cursor().execute(DROP_STAGING_SQL)
