"""What an import tells its user while it runs: a progress bar or line, and the report of rejected rows."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from movies.importers.records import InputUnusable, RowError


class Progress:
    """A tqdm bar with rows/s on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every = every

    def wrap(self, items: Iterator[Any], label: str, *, size: Callable[[Any], int] | None = None) -> Iterator[Any]:
        """Yield items, counting each as one row, or as size(item) rows (blocks of lines)."""
        if self.tty:
            from tqdm import tqdm

            with tqdm(
                items if size is None else None, desc=label, unit=" rows", unit_scale=True, file=self.stream
            ) as bar:
                if size is None:
                    yield from bar
                    return
                for item in items:
                    yield item
                    bar.update(size(item))
            return
        start = last = time.monotonic()
        count = 0
        for item in items:
            yield item
            count += size(item) if size else 1
            now = time.monotonic()
            if now - last >= self.every:
                last = now
                rate = count / max(now - start, 1e-9)
                self.stream.write(f"{label}: {count:,} rows, {rate:,.0f} rows/s\n")
                self.stream.flush()


class ErrorSink:
    """Reports bad rows to the terminal and, if asked, to a CSV or JSONL file."""

    TERMINAL_CAP = 1000

    def __init__(self, stream: TextIO, path: Path | None) -> None:
        self.stream, self.path, self.count = stream, path, 0
        self._file: TextIO | None = None
        self._csv: Any = None
        if path is not None:
            suffix = path.suffix.lower()
            if suffix not in (".csv", ".jsonl", ".json"):
                raise InputUnusable(f"--errors {path}: name the file .csv or .jsonl")
            self._file = path.open("w", encoding="utf-8", errors="backslashreplace", newline="")
            if suffix == ".csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow(["file", "line", "field", "reason"])

    def __call__(self, error: RowError) -> None:
        self.count += 1
        if self._file is None or self.count <= self.TERMINAL_CAP:
            self.stream.write(f"rejected {error.file}:{error.line}: {error.field}: {error.reason}\n")
        elif self.count == self.TERMINAL_CAP + 1:
            self.stream.write(f"... more rejected rows are listed in {self.path}\n")
        if self._csv is not None:
            self._csv.writerow([error.file, error.line, error.field, error.reason])
        elif self._file is not None:
            self._file.write(json.dumps(error.as_dict(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
