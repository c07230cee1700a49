"""The import: `run_import` opens the source, reads and validates its rows, and writes them in batches on one or
two writer threads."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
from django.db import DatabaseError, connection, transaction

from movies.importers.cleaning import validate_movie
from movies.importers.imdb import ImdbSource
from movies.importers.progress import ErrorSink, Progress
from movies.importers.readers import detect_format
from movies.importers.records import Counts, InputUnusable, MovieRecord, RowError, RowRejected
from movies.importers.sources import MovieLensSource, OurSource, Source
from movies.importers.sql import raw_cursor
from movies.importers.writer import BatchWriter, Precedence
from movies.models import Person


def open_source(path: Path, fmt: str, genre_names: dict[str, str]) -> Source:
    if not path.exists():
        raise InputUnusable(f"{path} does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("imdb", "movielens"):
        if not path.is_dir():
            raise InputUnusable(f"--format {fmt} reads a folder, and {path} is a file")
        if fmt == "imdb":
            return ImdbSource(path, genre_names)
        if not (path / "movies.csv").is_file():
            raise InputUnusable(f"{path}: no movies.csv")
        return MovieLensSource(path, genre_names)
    if path.is_dir():
        raise InputUnusable(f"--format {fmt} reads a file, and {path} is a folder")
    return OurSource(path, fmt)


@dataclass
class ImportResult:
    counts: Counts = field(default_factory=Counts)
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    # Rows or credits that match several movies or people: reported with the candidates, never guessed.
    ambiguous: int = 0
    elapsed: float = 0.0
    dry_run: bool = False
    strict: bool = False
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected or self.ambiguous or self.fatal else 0

    def summary(self) -> str:
        rate = self.rows / self.elapsed if self.elapsed else 0.0
        c = self.counts
        counts = (
            f"created: {c.created:,}, updated: {c.updated:,}, unchanged: {c.unchanged:,}, linked: {c.linked:,},"
            f" merged: {c.merged:,}, ambiguous: {self.ambiguous:,}"
        )
        if self.dry_run:
            head = f"dry run, nothing written: valid: {self.valid:,}, would be {counts}"
        elif self.strict and self.rejected:
            head = "strict: nothing loaded because of rejected rows: created: 0, updated: 0, unchanged: 0"
        else:
            head = counts
        return f"{head}, rejected: {self.rejected:,}, elapsed: {self.elapsed:.2f}s ({rate:,.0f} rows/s)"


class Importer:
    """Reads, validates, de-duplicates and writes in batches; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        fmt: str = "auto",
        batch_size: int = 5000,
        dry_run: bool = False,
        strict: bool = False,
        precedence: Precedence | None = None,
        errors: ErrorSink,
        progress: Progress,
    ) -> None:
        self.genre_names: dict[str, str] = {}
        self.source = open_source(path, fmt, self.genre_names)
        self.batch_size = max(1, batch_size)
        self.dry_run, self.strict = dry_run, strict
        self.errors, self.progress = errors, progress
        self.precedence = precedence or Precedence()
        self.claimed: set[int] = set()  # the movies this import has matched or created (BatchWriter)
        self.writers: list[BatchWriter] = [self._writer(link_people=True)]
        self.result = ImportResult(dry_run=dry_run, strict=strict)
        self.lock = threading.Lock()
        self.threads: list[ThreadPoolExecutor] = []
        self.pending: deque[Future[None]] = deque()
        self.turn = 0

    def _writer(self, *, link_people: bool) -> BatchWriter:
        return BatchWriter(
            self.genre_names, self.source, precedence=self.precedence, claimed=self.claimed, link_people=link_people
        )

    def report(self, error: RowError, *, ambiguous: bool = False) -> None:
        with self.lock:  # the writer threads report rows PostgreSQL refuses
            if ambiguous:
                self.result.ambiguous += 1
            else:
                self.result.rejected += 1
            self.errors(error)

    def run(self) -> ImportResult:
        start = time.monotonic()
        # Reading and validating (Python) overlap with writing (PostgreSQL) when each batch commits on its
        # own: writer threads with their own connections (two when the source allows, so that two PostgreSQL
        # backends work at once; see Source.parallel). Inside a caller's transaction, with --strict's single
        # transaction or a dry run's, everything stays on this thread's connection.
        if not self.dry_run and not self.strict and not connection.in_atomic_block:
            # People without an IMDb id may be linked to one by name (see BatchWriter._people): one writer then,
            # so that two batches never link the same person.
            count = 2 if self.source.parallel and not Person.objects.filter(imdb_id__isnull=True).exists() else 1
            self.threads = [
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-writer-{n}") for n in range(count)
            ]
            self.writers = [self._writer(link_people=count == 1) for _ in range(count)]
        try:
            if self.strict or self.dry_run:
                # All or nothing: one transaction; each batch is a savepoint inside it. A dry run writes everything
                # the same way, to count what it would do, and rolls it back.
                with transaction.atomic():
                    self._run()
                    if self.dry_run or self.result.rejected or self.result.fatal:
                        transaction.set_rollback(True)
            else:
                self._run()
        finally:
            try:
                self._wait(0)
            finally:
                self._on_writers(self._close_writer)
                for thread in self.threads:
                    thread.shutdown()
                self.result.elapsed = time.monotonic() - start
        return self.result

    def _session(self) -> None:
        """The writer's session: a commit need not wait for its WAL flush. Each batch stays atomic; a crash of
        the server mid-import can lose only the last batches committed, which a rerun writes again; the import
        waits for the flush before it reports (_close_writer)."""
        # JIT compiles each batch's statements again (their costs are large) and saves nothing on them; the
        # staged side files are probed at random, and fit in the session's temporary buffers up to some size.
        raw_cursor().execute("SET synchronous_commit TO off; SET jit TO off; SET temp_buffers TO '256MB'")

    def _on_writers(self, work: Callable[[], Any]) -> list[Any]:
        """Run work on every writer thread at once (else here) and wait for all of them."""
        if not self.threads:
            return [work()]
        futures = [thread.submit(work) for thread in self.threads]
        return [future.result() for future in futures]

    def _close_writer(self) -> None:
        self.source.close()
        if self.threads:
            if not self.dry_run:
                # The batches were committed without waiting for their WAL (see _session); one synchronous
                # commit with a transaction id waits until the WAL is on disk up to here, so whatever the
                # summary reports as written survives a crash of the server.
                raw_cursor().execute("SET synchronous_commit TO on; SELECT txid_current()")
            connection.close()  # the writer thread's own connection

    def _wait(self, in_flight: int) -> None:
        """Wait until at most in_flight batches are being written (memory stays at a few batches)."""
        error: BaseException | None = None
        while len(self.pending) > in_flight:
            try:
                self.pending.popleft().result()
            except BaseException as exc:  # re-raised below, once the others have finished
                error = error or exc
        if error is not None:
            raise error

    def _writing(self) -> bool:
        return not (self.strict and (self.result.rejected or self.result.fatal))

    def _run(self) -> None:
        if self.threads:
            self._on_writers(self._session)
        # Side files are read once, here, and staged on every writer's connection.
        cursors: list[psycopg.Cursor[Any]] = self._on_writers(raw_cursor)
        self.source.prepare(cursors=cursors, report=self.report, progress=self.progress)
        seen: set[int] = set()
        batch: list[MovieRecord] = []
        file = self.source.file
        items = self.progress.wrap(self.source.items(), f"importing {file}")
        try:
            for line, raw in items:
                self.result.rows += 1
                if isinstance(raw, RowRejected):
                    self.report(RowError(file, line, raw.field, raw.reason))
                    continue
                try:
                    record = validate_movie(raw, file=file, line=line)
                except RowRejected as exc:
                    self.report(RowError(file, line, exc.field, exc.reason))
                    continue
                # A hash per key keeps memory small; a collision would wrongly reject one row in 2**64.
                hashes = [hash(key) for key in record.keys]
                twin = next((key for key, key_hash in zip(record.keys, hashes, strict=True) if key_hash in seen), None)
                if twin is not None:
                    kind, *value = twin
                    what = {"imdb": "IMDb id", "id": "id", "natural": "title and year"}[kind]
                    self.report(
                        RowError(
                            file,
                            line,
                            {"imdb": "imdb_id", "id": "id", "natural": "title"}[kind],
                            f"duplicate: {what} {', '.join(map(repr, value))} appeared earlier in the file",
                        )
                    )
                    continue
                seen.update(hashes)
                self.result.valid += 1
                batch.append(record)
                if len(batch) >= self.batch_size:
                    self._flush(batch)
                    batch = []
        except RowRejected as exc:  # the rest of the file cannot be read (truncated JSON, ...)
            self.result.fatal = exc.reason
            self.report(RowError(file, 0, exc.field, exc.reason))
        except (OSError, EOFError, UnicodeError) as exc:
            self.result.fatal = str(exc)
            self.report(RowError(file, 0, "-", f"the file cannot be read further: {exc}"))
        self._flush(batch)

    def _flush(self, batch: list[MovieRecord]) -> None:
        if not batch or not self._writing():
            return
        if not self.threads:
            self._write(self.writers[0], batch)
            return
        # Round robin: the batch in flight longest is the one on the writer whose turn it is.
        self._wait(len(self.threads) - 1)
        turn, self.turn = self.turn, (self.turn + 1) % len(self.threads)
        self.pending.append(self.threads[turn].submit(self._write, self.writers[turn], batch))

    def _write(self, writer: BatchWriter, batch: list[MovieRecord]) -> None:
        try:
            counts = writer.write(batch)
        except DatabaseError:
            # One bad row must not sink its batch: write them one by one, reporting the ones PostgreSQL refuses.
            counts = Counts()
            for record in batch:
                try:
                    counts.add(writer.write([record]))
                except DatabaseError as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self.report(RowError(record.file, record.line, "-", f"refused by the database: {reason}"))
        with self.lock:
            self.result.counts.add(counts)
        for note in counts.notes:
            self.report(note, ambiguous=True)


def run_import(
    path: Path,
    *,
    fmt: str = "auto",
    batch_size: int = 5000,
    dry_run: bool = False,
    strict: bool = False,
    precedence: Iterable[str] | None = None,
    errors_path: Path | None = None,
    stderr: TextIO | None = None,
    tty: bool | None = None,
) -> ImportResult:
    """Import a file or folder; raises InputUnusable when the input cannot be used at all."""
    stderr = stderr or sys.stderr
    sink = ErrorSink(stderr, errors_path)
    try:
        importer = Importer(
            path,
            fmt=fmt,
            batch_size=batch_size,
            dry_run=dry_run,
            strict=strict,
            precedence=Precedence(precedence) if precedence is not None else None,
            errors=sink,
            progress=Progress(stderr, tty=tty),
        )
        return importer.run()
    finally:
        sink.close()
