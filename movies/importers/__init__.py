"""Bulk loading of movies: readers for our formats, IMDb's TSV files and MovieLens, and a batch writer.

Every reader turns its input into plain dicts in our export shape; `validate_movie` turns each into a
`MovieRecord` or a `RowRejected` naming the field. `Importer` streams records in batches of
`batch_size` to a `BatchWriter`, which writes them through `services.movie_import_batch`, the bulk form of
the versioned write path: new movies start at version 1, a changed movie moves to version + 1 exactly once,
with a conditional `UPDATE ... WHERE version = <the version read>` on rows locked for the batch's transaction.
Each batch is one transaction, so a crash leaves every batch fully in or fully out.

The modules, in the order a row goes through them:

    readers.py   our JSON, JSON Lines and CSV files; format detection     sources.py  a source per format
    imdb.py      IMDb's TSV files, side files staged in temporary tables   cleaning.py validate_movie
    matching.py  which movie and person a row is about                      writer.py   precedence, the batch
    run.py       the import: batches, writer threads, run_import            progress.py progress, error report
    records.py   the values passed between them                             sql.py      the raw SQL
"""

from movies.importers.cleaning import copy_text, validate_movie
from movies.importers.imdb import ImdbSource
from movies.importers.progress import ErrorSink, Progress
from movies.importers.readers import FORMATS, detect_format
from movies.importers.records import InputUnusable, MovieRecord, RowError, RowRejected
from movies.importers.run import Importer, ImportResult, open_source, run_import
from movies.importers.writer import BatchWriter, Precedence

__all__ = [
    "FORMATS",
    "BatchWriter",
    "ErrorSink",
    "ImdbSource",
    "ImportResult",
    "Importer",
    "InputUnusable",
    "MovieRecord",
    "Precedence",
    "Progress",
    "RowError",
    "RowRejected",
    "copy_text",
    "detect_format",
    "open_source",
    "run_import",
    "validate_movie",
]
