"""`make bench-import`: generate an IMDb-format folder, time `import_movies` on an empty database, then
time `export_movies` of what it loaded.

    python bench/import_bench.py [--movies 200000] [--batch-size 5000] [--database movieapi_bench_import]
                                 [--without-history]

Prints movies/s (created movies over the import's wall time, genres, directors and cast included)
and the peak RSS of the import process. Targets (issue 6): >= 5,000 movies/s, < 300 MB. Then the history the import
recorded: its entries and their bytes per version (docs/history.md); --without-history drops the history's triggers
after migrating, to measure what recording costs.
Then the same two figures for the export of the whole catalogue, as JSON Lines and as gzipped CSV
(issue 15: at least the import's speed, memory flat).
The data is deterministic (seeded) and cached in bench/.cache/imdb-<movies>/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_db import migrate, own_database  # bench/bench_db.py: this script runs as `python bench/import_bench.py`

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "movieapi_bench_import"
GENRES = ["Action", "Adventure", "Comedy", "Crime", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Western"]
FIRST = ["Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Nia", "Oto"]
LAST = ["Stone", "Reyes", "Okafor", "Lind", "Moreau", "Tanaka", "Silva", "Novak", "Kowal", "Berg", "Haas", "Ito"]


def generate(folder: Path, movies: int, *, seed: int = 6) -> None:
    """title.basics, title.crew, title.principals (about 5 per film) and name.basics, gzipped like IMDb's."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    people = max(1000, movies // 2)
    titles = movies + movies // 20  # plus some TV episodes the importer must skip
    with gzip.open(folder / "name.basics.tsv.gz", "wt", encoding="utf-8", compresslevel=1) as out:
        out.write("nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles\n")
        for n in range(1, people + 1):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {n}"
            out.write(f"nm{n:07d}\t{name}\t\\N\t\\N\tactor\t\\N\n")
    with (
        gzip.open(folder / "title.basics.tsv.gz", "wt", encoding="utf-8", compresslevel=1) as basics,
        gzip.open(folder / "title.crew.tsv.gz", "wt", encoding="utf-8", compresslevel=1) as crew,
        gzip.open(folder / "title.principals.tsv.gz", "wt", encoding="utf-8", compresslevel=1) as principals,
    ):
        basics.write(
            "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n"
        )
        crew.write("tconst\tdirectors\twriters\n")
        principals.write("tconst\tordering\tnconst\tcategory\tjob\tcharacters\n")
        for n in range(1, titles + 1):
            tconst = f"tt{n:07d}"
            kind = "tvEpisode" if n % 21 == 0 else "movie"
            title = f"Film {n}" if n % 7 else str(n)  # some titles are numbers
            genres = ",".join(rng.sample(GENRES, rng.randint(1, 3)))
            year, runtime = rng.randint(1920, 2024), rng.randint(60, 200)
            basics.write(f"{tconst}\t{kind}\t{title}\t{title}\t0\t{year}\t\\N\t{runtime}\t{genres}\n")
            directors = ",".join(f"nm{rng.randint(1, people):07d}" for _ in range(rng.choice((1, 1, 1, 2))))
            crew.write(f"{tconst}\t{directors}\tnm{rng.randint(1, people):07d}\n")
            for ordering in range(1, 6):
                category = rng.choice(("actor", "actress"))
                character = json.dumps([f"{rng.choice(FIRST)} {rng.choice(LAST)}"])
                nconst = f"nm{rng.randint(1, people):07d}"
                principals.write(f"{tconst}\t{ordering}\t{nconst}\t{category}\t\\N\t{character}\n")
            principals.write(f"{tconst}\t6\tnm{rng.randint(1, people):07d}\tcomposer\t\\N\t\\N\n")


def run_measured(command: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """Run a command; its exit code, wall time in seconds and peak RSS in MB."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--database", default=BENCH_DB, help="The database to (re)create and fill.")
    parser.add_argument("--without-history", action="store_true", help="Drop the history's triggers first.")
    args = parser.parse_args()

    folder = ROOT / "bench" / ".cache" / f"imdb-{args.movies}"
    if not (folder / "title.principals.tsv.gz").exists():
        started = time.monotonic()
        generate(folder, args.movies)
        print(f"generated {folder} in {time.monotonic() - started:.1f}s")
    url = own_database(args.database, fresh=True)  # an import into an empty catalogue, every run
    key = os.environ.get("DJANGO_SECRET_KEY") or "bench-secret-key-not-for-production-0123456789abcdefghij"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECRET_KEY": key}
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrate(env)
    import psycopg

    if args.without_history:
        sys.path.insert(0, str(ROOT))
        from movies.history_sql import UNINSTALL_SQL

        with psycopg.connect(url) as conn:
            conn.execute(UNINSTALL_SQL)

    code, elapsed, peak_mb = run_measured(
        [*manage, "import_movies", str(folder), "--batch-size", str(args.batch_size)], env
    )

    with psycopg.connect(url) as conn:
        versions, history_bytes = conn.execute(
            "SELECT count(*), pg_total_relation_size('movies_movieversion') FROM movies_movieversion"
        ).fetchone() or (0, 0)
        movies, cast, directors, people = conn.execute(
            "SELECT (SELECT count(*) FROM movies_movie), (SELECT count(*) FROM movies_cast),"
            " (SELECT count(*) FROM movies_movie_directors), (SELECT count(*) FROM movies_person)"
        ).fetchone() or (0, 0, 0, 0)
    print(f"import exit {code}: {movies:,} movies, {cast:,} cast rows, {directors:,} director links, {people:,} people")
    print(f"import_movies: {elapsed:.1f}s, {movies / elapsed:,.0f} movies/s (target >= 5,000)")
    print(f"peak RSS of the import process: {peak_mb:,.0f} MB (target < 300 MB)")
    per_version = f"{history_bytes / versions:,.0f} bytes per version" if versions else "history off"
    print(f"history: {versions:,} versions, {history_bytes / 1e6:,.0f} MB with indexes, {per_version}")

    with tempfile.TemporaryDirectory(prefix="movieapi-export-") as folder_out:
        for name in ("export.jsonl", "export.csv.gz"):
            path = Path(folder_out) / name
            code, elapsed, peak_mb = run_measured([*manage, "export_movies", str(path)], env)
            size_mb = path.stat().st_size / 1e6 if path.exists() else 0
            print(
                f"export_movies {name} (exit {code}, {size_mb:,.0f} MB): {elapsed:.1f}s, "
                f"{movies / elapsed:,.0f} movies/s (target: the import's), peak RSS {peak_mb:,.0f} MB"
            )


if __name__ == "__main__":
    main()
