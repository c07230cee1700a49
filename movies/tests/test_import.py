"""import_movies: every format, messy input, idempotency, versions, --strict, --dry-run, --errors, exit codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from movies import services
from movies.models import CastMember, Genre, Movie, Person
from movies.versions import Actor

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

MATRIX: dict[str, Any] = {
    "title": "The Matrix",
    "year": 1999,
    "runtime": 136,
    "overview": "A hacker learns the truth.",
    "imdb_id": "tt0133093",
    "genres": ["action", "science-fiction"],
    "directors": [{"name": "Lana Wachowski", "imdb_id": "nm0905154"}, {"name": "Lilly Wachowski"}],
    "cast": [
        {"name": "Keanu Reeves", "imdb_id": "nm0000206", "character": "Neo"},
        {"name": "Carrie-Anne Moss", "character": "Trinity"},
    ],
}
NINETEEN: dict[str, Any] = {"title": "1917", "year": 2019, "genres": ["war", "drama"], "directors": ["Sam Mendes"]}


def run(*args: Any) -> tuple[int, str, str]:
    """Run import_movies; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_movies", *map(str, args), stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def snapshot() -> dict[str, Any]:
    """Everything an import writes, keyed by movie, comparable across runs."""
    movies = {}
    for movie in Movie.objects.prefetch_related("genres", "directors", "cast__person"):
        movies[movie.imdb_id or (movie.title, movie.year)] = (
            movie.title,
            movie.year,
            movie.runtime,
            movie.overview,
            movie.version,
            sorted(genre.slug for genre in movie.genres.all()),
            sorted((p.name, p.imdb_id) for p in movie.directors.all()),
            [(c.person.name, c.person.imdb_id, c.character, c.order) for c in movie.cast.order_by("order")],
        )
    return {"movies": movies, "people": Person.objects.count(), "cast": CastMember.objects.count()}


def write_json(path: Path, rows: list[Any]) -> Path:
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


# ---- our formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_each_of_our_formats_loads_and_a_second_run_changes_nothing(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"movies.{fmt}"
    rows = [MATRIX, NINETEEN]
    if fmt == "json":
        write_json(path, rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["title", "year", "runtime", "overview", "imdb_id", "genres", "directors", "cast"])
            for row in rows:
                writer.writerow(
                    [
                        row["title"],
                        row["year"],
                        row.get("runtime", ""),
                        row.get("overview", ""),
                        row.get("imdb_id", ""),
                        "|".join(row["genres"]),
                        json.dumps(row["directors"]),
                        json.dumps(row.get("cast", [])),
                    ]
                )

    code, out, _ = run(path)
    assert code == 0
    assert "created: 2," in out
    first = snapshot()
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert matrix.version == 1
    assert [c.person.name for c in matrix.cast.order_by("order")] == ["Keanu Reeves", "Carrie-Anne Moss"]
    assert Movie.objects.get(title="1917").directors.get().name == "Sam Mendes"

    code, out, _ = run(path)
    assert code == 0
    assert "created: 0, updated: 0, unchanged: 2" in out
    assert snapshot() == first


def test_a_changed_row_updates_through_the_versioned_path_once(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", [MATRIX, NINETEEN])
    run(path)
    changed = {**MATRIX, "runtime": 137, "cast": [*MATRIX["cast"], {"name": "Hugo Weaving", "character": "Smith"}]}
    write_json(path, [changed, NINETEEN])

    code, out, _ = run(path)

    assert code == 0
    assert "created: 0, updated: 1, unchanged: 1" in out
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert (matrix.version, matrix.runtime, matrix.cast.count()) == (2, 137, 3)
    assert Movie.objects.get(title="1917").version == 1
    assert run(path)[1].startswith("created: 0, updated: 0, unchanged: 2")
    assert Movie.objects.get(imdb_id="tt0133093").version == 2


def test_the_import_sees_a_write_made_through_the_api_path_and_leaves_it(tmp_path: Path) -> None:
    """A curator's write (the API's service) is never overwritten by an import; the other fields still are."""
    path = write_json(tmp_path / "m.json", [MATRIX])
    run(path)
    movie = Movie.objects.get()
    services.movie_update(
        movie_id=movie.pk, expected_version=1, data={"title": "Edited", "runtime": 140}, actor=Actor("user", 1, "api")
    )
    write_json(path, [{**MATRIX, "overview": "New overview."}])

    run(path)

    movie.refresh_from_db()
    assert (movie.title, movie.runtime, movie.overview, movie.version) == ("Edited", 140, "New overview.", 3)
    assert movie.field_sources["title"] == "curator"
    assert movie.field_sources["overview"] == "ours:m.json"


def test_fields_a_file_does_not_carry_are_left_alone(tmp_path: Path) -> None:
    run(write_json(tmp_path / "full.json", [MATRIX]))
    code, out, _ = run(
        write_json(tmp_path / "thin.json", [{"title": "The Matrix", "year": 1999, "imdb_id": "tt0133093"}])
    )
    assert (code, "unchanged: 1" in out) == (0, True)
    assert Movie.objects.get().cast.count() == 2


def test_movies_without_imdb_id_match_by_title_and_year(tmp_path: Path) -> None:
    run(write_json(tmp_path / "a.json", [NINETEEN]))
    code, out, _ = run(write_json(tmp_path / "b.json", [{**NINETEEN, "imdb_id": "tt8579674"}]))
    assert code == 0
    assert "updated: 1" in out
    movie = Movie.objects.get()
    assert (movie.imdb_id, movie.version) == ("tt8579674", 2)


def test_messy_rows_are_rejected_with_line_field_and_reason_and_good_rows_load(tmp_path: Path) -> None:
    path = tmp_path / "messy.jsonl"
    lines = [
        json.dumps(MATRIX),  # 1 good
        json.dumps({"title": 1917, "year": "2019", "runtime": 119.0}),  # 2 good: numbers where text belongs
        json.dumps({"year": 2000}),  # 3 no title
        json.dumps({"title": "Old", "year": 1500}),  # 4 year out of range
        json.dumps({"title": "Nul\u0000", "year": 2000}),  # 5 NUL byte
        json.dumps({"title": "Runtime", "year": 2000, "runtime": "long"}),  # 6
        "{not json",  # 7
        json.dumps(MATRIX),  # 8 duplicate key
        json.dumps({"title": "Cast", "year": 2000, "cast": [{"character": "nobody"}]}),  # 9
        json.dumps([1, 2]),  # 10 not an object
        json.dumps({"title": "Genres", "year": 2000, "genres": [f"g{n}" for n in range(11)]}),  # 11
        json.dumps({"title": "Id", "year": 2000, "imdb_id": "123"}),  # 12
        json.dumps({"title": True, "year": 2000}),  # 13
    ]
    raw = ("\n".join(lines) + "\n").encode() + b'{"title": "Bad \xff\xfe bytes", "year": 2001}\n'  # 14
    path.write_bytes(raw)
    errors = tmp_path / "errors.jsonl"

    code, out, err = run(path, "--errors", errors)

    assert code == 1
    assert "created: 2," in out
    assert "rejected: 12" in out
    reported = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [(e["line"], e["field"]) for e in reported] == [
        (3, "title"),
        (4, "year"),
        (5, "title"),
        (6, "runtime"),
        (7, "-"),
        (8, "imdb_id"),
        (9, "cast[0].name"),
        (10, "-"),
        (11, "genres"),
        (12, "imdb_id"),
        (13, "title"),
        (14, "title"),
    ]
    assert "NUL" in reported[2]["reason"]
    assert "UTF-8" in reported[11]["reason"]
    assert "rejected messy.jsonl:4: year: must be between 1888" in err
    assert set(Movie.objects.values_list("title", flat=True)) == {"The Matrix", "1917"}


def test_errors_file_as_csv(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", [MATRIX, {"title": "", "year": 2000}])
    errors = tmp_path / "errors.csv"
    assert run(path, "--errors", errors)[0] == 1
    rows = list(csv.DictReader(errors.open()))
    assert rows == [{"file": "m.json", "line": rows[0]["line"], "field": "title", "reason": "is required"}]


def test_csv_with_broken_encoding_nul_and_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(
        b"title,year,genres,directors\n"
        b"2046,2004,drama|romance,Wong Kar-wai\n"
        b"2046,2004,drama,Wong Kar-wai\n"
        b"Caf\xe9,2001,,\n"
        b"Nul\x00l,2002,,\n"
        b"Short row\n"
        b'"Multi\nline",2003,comedy,"[{""name"": ""A B""}]"\n'
        b"Late,2003,comedy,\n"
    )
    errors = tmp_path / "e.jsonl"
    code, _out, _ = run(path, "--errors", errors)
    assert code == 1
    assert [(e["line"], e["field"]) for e in map(json.loads, errors.read_text().splitlines())] == [
        (3, "title"),
        (4, "title"),
        (5, "title"),
        (6, "-"),
    ]
    assert sorted(Movie.objects.values_list("title", flat=True)) == ["2046", "Late", "Multi\nline"]
    assert Movie.objects.get(title="Multi\nline").directors.get().name == "A B"


def test_strict_loads_nothing_when_a_row_is_bad(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", [MATRIX, NINETEEN, {"title": "x", "year": 3000}])
    code, out, err = run(path, "--strict", "--batch-size", "1")
    assert code == 1
    assert "nothing loaded" in out
    assert "--strict" in err
    assert Movie.objects.count() == 0
    assert Person.objects.count() == 0
    code, out, _ = run(write_json(tmp_path / "ok.json", [MATRIX, NINETEEN]), "--strict")
    assert (code, Movie.objects.count()) == (0, 2)


def test_dry_run_validates_everything_and_writes_nothing(tmp_path: Path) -> None:
    genres = Genre.objects.count()
    path = write_json(tmp_path / "m.json", [MATRIX, {**NINETEEN, "genres": ["brand-new"]}, {"title": "x", "year": 1}])
    code, out, err = run(path, "--dry-run")
    assert code == 1
    assert "dry run, nothing written: valid: 2" in out
    assert "year" in err
    assert (Movie.objects.count(), Person.objects.count(), Genre.objects.count()) == (0, 0, genres)


def test_unknown_genres_are_created(tmp_path: Path) -> None:
    run(write_json(tmp_path / "m.json", [{**NINETEEN, "genres": ["Film Noir", "space-opera"]}]))
    assert sorted(Movie.objects.get().genres.values_list("slug", flat=True)) == ["film-noir", "space-opera"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("movies.txt", b"hello", "cannot tell the format"),
        ("movies.json", b'{"title": "not an array"}', "not a JSON array"),
        ("movies.csv", b"name,when\nx,1\n", "must name at least 'title' and 'year'"),
        ("movies.csv", b"", "empty"),
    ],
)
def test_unusable_input_exits_2(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = run(path)
    assert code == 2
    assert message in err


def test_missing_path_and_bad_errors_file_exit_2(tmp_path: Path) -> None:
    assert run(tmp_path / "nope.json")[0] == 2
    path = write_json(tmp_path / "m.json", [MATRIX])
    assert run(path, "--errors", tmp_path / "errors.txt")[0] == 2
    assert run(tmp_path, "--format", "imdb")[0] == 2  # a folder without title.basics.tsv


def test_unknown_format_name_on_the_command_line_exits_2(tmp_path: Path) -> None:
    env = dict(os.environ)  # the test key (pyproject.toml's pytest env): settings refuse a weak one outside debug
    result = subprocess.run(
        [sys.executable, "manage.py", "import_movies", str(tmp_path), "--format", "xml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in result.stderr


def test_truncated_json_array_keeps_the_rows_before(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps([MATRIX, NINETEEN])[:-40], encoding="utf-8")
    code, out, _ = run(path)
    assert code == 1
    assert "created: 1," in out


def test_gzipped_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write(json.dumps(MATRIX) + "\n")
    assert run(path)[0] == 0
    assert Movie.objects.count() == 1


def test_batches_and_people_are_shared_across_batches(tmp_path: Path) -> None:
    rows = [
        {"title": f"Film {n}", "year": 2000, "cast": [{"name": "Same Actor", "character": str(n)}], "directors": ["D"]}
        for n in range(7)
    ]
    code, _out, _ = run(write_json(tmp_path / "m.json", rows), "--batch-size", "3")
    assert code == 0
    assert (Movie.objects.count(), Person.objects.count()) == (7, 2)


# ---- IMDb ----------------------------------------------------------------------------------------


def write_tsv(path: Path, header: str, rows: list[str], *, gz: bool = False) -> None:
    text = header + "\n" + "".join(row + "\n" for row in rows)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wt", encoding="utf-8") as out:
            out.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def imdb_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imdb"
    folder.mkdir()
    write_tsv(
        folder / "title.basics.tsv",
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
        [
            "tt0133093\tmovie\tThe Matrix\tThe Matrix\t0\t1999\t\\N\t136\tAction,Sci-Fi",
            "tt8579674\tmovie\t1917\t1917\t0\t2019\t\\N\t119\tDrama,War,Game-Show",
            "tt0000001\tshort\tCarmencita\tCarmencita\t0\t1894\t\\N\t1\tDocumentary,Short",
            "tt0000002\tmovie\tNo year\tNo year\t0\t\\N\t\\N\t\\N\t\\N",
            "tt0000003\tmovie\tToo short row",
            "tt0133093\tmovie\tThe Matrix again\tx\t0\t1999\t\\N\t136\tAction",
        ],
        gz=True,
    )
    write_tsv(
        folder / "title.crew.tsv",
        "tconst\tdirectors\twriters",
        ["tt0133093\tnm0905154,nm0905152\tnm0905152", "tt8579674\tnm0005222\t\\N"],
    )
    write_tsv(
        folder / "title.principals.tsv",
        "tconst\tordering\tnconst\tcategory\tjob\tcharacters",
        [
            'tt0133093\t1\tnm0000206\tactor\t\\N\t["Neo"]',
            'tt0133093\t2\tnm0000401\tactor\t\\N\t["Morpheus"]',
            'tt0133093\t3\tnm0005251\tactress\t\\N\t["Trinity","Woman"]',
            "tt0133093\t4\tnm0905154\tdirector\t\\N\t\\N",
            "tt0133093\t5\tnm0000000\tactor\t\\N\t[broken",
            'tt8579674\t1\tnm1000001\tactor\t\\N\t["Schofield"]',
        ],
    )
    write_tsv(
        folder / "name.basics.tsv",
        "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles",
        [
            "nm0905154\tLana Wachowski\t1965\t\\N\tdirector\t\\N",
            "nm0905152\tLilly Wachowski\t1967\t\\N\tdirector\t\\N",
            "nm0000206\tKeanu Reeves\t1964\t\\N\tactor\t\\N",
            "nm0000401\tLaurence Fishburne\t1961\t\\N\tactor\t\\N",
            "nm0005251\tCarrie-Anne Moss\t1967\t\\N\tactress\t\\N",
            "nm0005222\tSam Mendes\t1965\t\\N\tdirector\t\\N",
            "nm1000001\tGeorge MacKay\t1992\t\\N\tactor\t\\N",
        ],
    )
    return folder


def test_imdb_folder_loads_films_with_credits_idempotently(tmp_path: Path) -> None:
    folder = imdb_folder(tmp_path)
    errors = tmp_path / "errors.jsonl"

    code, out, _ = run(folder, "--errors", errors)

    assert code == 1  # the bad rows below
    assert "created: 2," in out
    reported = {(e["file"], e["line"], e["field"]) for e in map(json.loads, errors.read_text().splitlines())}
    assert reported == {
        ("title.basics.tsv.gz", 5, "year"),
        ("title.basics.tsv.gz", 6, "-"),
        ("title.basics.tsv.gz", 7, "imdb_id"),
        ("title.principals.tsv", 6, "characters"),
    }
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert (matrix.title, matrix.year, matrix.runtime, matrix.version) == ("The Matrix", 1999, 136, 1)
    assert sorted(matrix.genres.values_list("slug", flat=True)) == ["action", "science-fiction"]
    assert sorted(matrix.directors.values_list("name", flat=True)) == ["Lana Wachowski", "Lilly Wachowski"]
    assert [(c.person.name, c.person.imdb_id, c.character) for c in matrix.cast.order_by("order")] == [
        ("Keanu Reeves", "nm0000206", "Neo"),
        ("Laurence Fishburne", "nm0000401", "Morpheus"),
        ("Carrie-Anne Moss", "nm0005251", "Trinity / Woman"),
    ]
    assert Genre.objects.filter(slug="game-show", name="Game-Show").exists()
    first = snapshot()

    code, out, _ = run(folder)
    assert "created: 0, updated: 0, unchanged: 2" in out
    assert snapshot() == first


def test_imdb_principals_give_directors_when_there_is_no_crew_file(tmp_path: Path) -> None:
    folder = imdb_folder(tmp_path)
    (folder / "title.crew.tsv").unlink()
    run(folder)
    assert list(Movie.objects.get(imdb_id="tt0133093").directors.values_list("name", flat=True)) == ["Lana Wachowski"]


def test_imdb_missing_column_exits_2_before_writing(tmp_path: Path) -> None:
    folder = imdb_folder(tmp_path)
    write_tsv(folder / "title.crew.tsv", "tconst\twriters", [])
    assert run(folder)[0] == 2
    assert Movie.objects.count() == 0


def test_imdb_temp_tables_are_dropped(tmp_path: Path) -> None:
    run(imdb_folder(tmp_path))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'imp\\_%%' AND relpersistence = 't'")
        assert cursor.fetchone()[0] == 0


# ---- MovieLens -----------------------------------------------------------------------------------


def test_movielens_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '2,"Matrix, The (1999)",Action|Sci-Fi|Thriller|IMAX\n'
        "3,1917 (2019),War\n"
        "4,(500) Days of Summer (2009),(no genres listed)\n"
        "5,No Year Here,Drama\n"
        "6,Toy Story (1995),Comedy\n",
        encoding="utf-8",
    )
    (folder / "links.csv").write_text(
        "movieId,imdbId,tmdbId\n1,0114709,862\n2,0133093,603\n3,8579674,530915\n6,0114709,\n", encoding="utf-8"
    )

    code, out, err = run(folder)

    assert code == 1
    assert "created: 4," in out
    assert "rejected: 2" in out
    assert "movies.csv:6: year" in err
    assert "movies.csv:7: imdb_id: duplicate" in err
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert matrix.title == "The Matrix"
    assert sorted(matrix.genres.values_list("slug", flat=True)) == ["action", "science-fiction", "thriller"]
    assert sorted(Movie.objects.get(imdb_id="tt0114709").genres.values_list("slug", flat=True)) == [
        "adventure",
        "animation",
        "comedy",
        "family",
        "fantasy",
    ]
    summer = Movie.objects.get(title="(500) Days of Summer")
    assert (summer.year, summer.imdb_id, summer.genres.count()) == (2009, None, 0)
    assert "unchanged: 4" in run(folder)[1]
    assert set(Movie.objects.values_list("version", flat=True)) == {1}


def test_outside_a_transaction_batches_are_written_by_the_writer_thread(transactional_db: None, tmp_path: Path) -> None:
    """The pipelined path (a writer thread with its own connection) loads the same as the inline one."""
    folder = imdb_folder(tmp_path)
    code, out, _ = run(folder, "--batch-size", "1")
    assert code == 1
    assert "created: 2," in out
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert matrix.cast.count() == 3
    assert matrix.directors.count() == 2
    code, out, _ = run(folder, "--batch-size", "1")
    assert "created: 0, updated: 0, unchanged: 2" in out
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'imp\\_%%' AND relpersistence = 't'")
        assert cursor.fetchone()[0] == 0


def test_imdb_credits_of_new_movies_follow_the_naming_rules(transactional_db: None, tmp_path: Path) -> None:
    """New movies get their credits in SQL: named by name.basics, else by the catalogue, else dropped."""
    Person.objects.create(name="Old Name", imdb_id="nm0000401")  # renamed from name.basics
    Person.objects.create(name="Only In Catalogue", imdb_id="nm0000402")  # not in name.basics: keeps its name
    folder = imdb_folder(tmp_path)
    with (folder / "title.principals.tsv").open("a", encoding="utf-8") as principals:
        principals.write('tt8579674\t2\tnm7777777\tactor\t\\N\t["Nobody"]\n')  # no name anywhere: dropped
        principals.write('tt8579674\t3\tnm0000402\tactress\t\\N\t["Blake"]\n')

    code, out, _ = run(folder, "--batch-size", "1")

    assert code == 1  # the fixture's bad rows
    assert "created: 2," in out
    assert Person.objects.get(imdb_id="nm0000401").name == "Laurence Fishburne"
    assert not Person.objects.filter(imdb_id="nm7777777").exists()
    nineteen = Movie.objects.get(imdb_id="tt8579674")
    assert [(c.order, c.person.name, c.character) for c in nineteen.cast.order_by("order")] == [
        (0, "George MacKay", "Schofield"),
        (1, "Only In Catalogue", "Blake"),
    ]
    assert list(nineteen.directors.values_list("name", flat=True)) == ["Sam Mendes"]
    assert "created: 0, updated: 0, unchanged: 2" in run(folder)[1]


def write_imdb(folder: Path, *, crew: list[str] | None, principals: list[str], names: list[str]) -> Path:
    """One film, tt0000010 "Alpha" (2001), with the given side files (crew left out when None)."""
    folder.mkdir()
    write_tsv(
        folder / "title.basics.tsv",
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
        ["tt0000010\tmovie\tAlpha\tAlpha\t0\t2001\t\\N\t90\tDrama"],
    )
    if crew is not None:
        write_tsv(folder / "title.crew.tsv", "tconst\tdirectors\twriters", crew)
    write_tsv(folder / "title.principals.tsv", "tconst\tordering\tnconst\tcategory\tjob\tcharacters", principals)
    write_tsv(
        folder / "name.basics.tsv",
        "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles",
        [f"{row}\t\\N\t\\N\t\\N\t\\N" for row in names],
    )
    return folder


def test_imdb_side_files_report_bad_rows_and_load_the_good_ones(tmp_path: Path) -> None:
    """Every side file is read by one loop: wrong field counts and bad ids are reported with file, line and field."""
    folder = write_imdb(
        tmp_path / "imdb",
        crew=[
            "tt0000010\tnm0000011,bad1,nm0000012\t\\N",  # 2: the bad director only
            "tt00x\tnm0000011\t\\N",  # 3
            "tt0000010\ttwo-fields",  # 4
            "",  # a blank line is skipped silently
        ],
        principals=[
            'tt0000010\t1\tnm0000021\tactor\t\\N\t["One"]',
            'tt0000010\t2\tnmBAD\tactress\t\\N\t["Two"]',  # 3
            'tt0000010\tx\tnm0000022\tactor\t\\N\t["Three"]',  # 4
            "tt0000010\t+4\tnm0000023\tself\t\\N\t\\N",  # a sign is allowed; no character
            "bogus\t5\tnm0000024\tcomposer\t\\N\t\\N",  # not cast: its id is not looked at
            'bogus\t6\tnm0000025\tactor\t\\N\t["X"]',  # 7
            "tt0000010\t7\tnm0000026",  # 8
        ],
        names=[
            "nm0000011\tDirector One",
            "nm0000012\tDirector Two",
            "nm0000021\tActor One",
            "nm0000023\tActor Four",
            "nmX\tNobody",  # 6
            "nm0000022\t\\N",  # 7
        ],
    )
    errors = tmp_path / "errors.csv"

    code, out, _ = run(folder, "--errors", errors)

    assert code == 1
    assert "created: 1," in out
    with errors.open(encoding="utf-8") as report:
        reported = {(row["file"], int(row["line"]), row["field"]) for row in csv.DictReader(report)}
    assert reported == {
        ("title.crew.tsv", 2, "directors"),
        ("title.crew.tsv", 3, "tconst"),
        ("title.crew.tsv", 4, "-"),
        ("title.principals.tsv", 3, "nconst"),
        ("title.principals.tsv", 4, "ordering"),
        ("title.principals.tsv", 7, "tconst"),
        ("title.principals.tsv", 8, "-"),
        ("name.basics.tsv", 6, "nconst"),
        ("name.basics.tsv", 7, "primaryName"),
    }
    alpha = Movie.objects.get(imdb_id="tt0000010")
    assert sorted(alpha.directors.values_list("name", flat=True)) == ["Director One", "Director Two"]
    assert [(c.order, c.person.name, c.character) for c in alpha.cast.order_by("order")] == [
        (0, "Actor One", "One"),
        (1, "Actor Four", ""),
    ]


def test_imdb_text_with_backslashes_tabs_and_accents_is_stored_as_written(tmp_path: Path) -> None:
    """Side files are staged with COPY: backslashes and tabs in characters and names are escaped, not read as codes."""
    folder = write_imdb(
        tmp_path / "imdb",
        crew=None,
        principals=[
            'tt0000010\t1\tnm0000021\tactor\t\\N\t["Back\\\\slash"]',
            'tt0000010\t2\tnm0000022\tactor\t\\N\t["Tab\\there"]',
            'tt0000010\t3\tnm0000023\tactress\t\\N\t["Zoë"]',
            'tt0000010\t4\tnm0000024\tactor\t\\N\t["Twin A","Twin B"]',
            'tt0000010\t5\tnm0000025\tactor\t\\N\t["  Padded  "]',
            'tt0000010\t6\tnm0000026\tactor\t\\N\t["\\\\N"]',
        ],
        names=[
            "nm0000021\tAnn \\ Bee",
            "nm0000022\tRenée",
            "nm0000023\tCee\\NDee",
            "nm0000024\tTwins",
            "nm0000025\tPad",
            "nm0000026\tNull Person",
        ],
    )

    assert run(folder)[0] == 0

    alpha = Movie.objects.get(imdb_id="tt0000010")
    assert [(c.order, c.person.name, c.character) for c in alpha.cast.order_by("order")] == [
        (0, "Ann \\ Bee", "Back\\slash"),
        (1, "Renée", "Tab\there"),
        (2, "Cee\\NDee", "Zoë"),
        (3, "Twins", "Twin A / Twin B"),
        (4, "Pad", "Padded"),
        (5, "Null Person", "\\N"),
    ]
    first = snapshot()
    assert "created: 0, updated: 0, unchanged: 1" in run(folder)[1]
    assert snapshot() == first


def test_imdb_people_are_created_for_the_credits_kept_only(tmp_path: Path) -> None:
    """A cast beyond MAX_CAST is cut, and the people of the credits cut are not created."""
    from movies.rules import MAX_CAST

    count = MAX_CAST + 2
    folder = write_imdb(
        tmp_path / "imdb",
        crew=None,
        principals=[f'tt0000010\t{n}\tnm{n:07d}\tactor\t\\N\t["Role {n}"]' for n in range(1, count + 1)],
        names=[f"nm{n:07d}\tActor {n}" for n in range(1, count + 1)],
    )

    assert run(folder)[0] == 0

    alpha = Movie.objects.get(imdb_id="tt0000010")
    assert alpha.cast.count() == MAX_CAST
    assert alpha.cast.order_by("-order").first().character == f"Role {MAX_CAST}"  # type: ignore[union-attr]
    assert Person.objects.count() == MAX_CAST
    assert not Person.objects.filter(imdb_id=f"nm{count:07d}").exists()


def test_imdb_a_person_created_meanwhile_by_another_transaction_gets_the_credits(
    transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """People new to the catalogue are created last in the batch, with ON CONFLICT: one another transaction
    created between the batch's two credit statements is used, not duplicated, and keeps its credits."""
    import psycopg

    from conftest import live_database_url
    from movies.importers import ImdbSource

    original = ImdbSource._new_people

    def rival_first(cursor: psycopg.Cursor[Any]) -> None:
        with psycopg.connect(live_database_url(), autocommit=True) as rival:
            rival.execute(
                "INSERT INTO movies_person (name, imdb_id, created_at, updated_at)"
                " VALUES ('Keanu Reeves', 'nm0000206', now(), now()) ON CONFLICT DO NOTHING"
            )
        original(cursor)

    monkeypatch.setattr(ImdbSource, "_new_people", staticmethod(rival_first))

    code, out, _ = run(imdb_folder(tmp_path))

    assert code == 1  # the fixture's bad rows
    assert "created: 2," in out
    people = {person.imdb_id: person.pk for person in Person.objects.all()}
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert [(c.person_id, c.character) for c in matrix.cast.order_by("order")] == [
        (people["nm0000206"], "Neo"),
        (people["nm0000401"], "Morpheus"),
        (people["nm0005251"], "Trinity / Woman"),
    ]


def test_progress_counts_a_block_of_lines_as_that_many_rows() -> None:
    from movies.importers import Progress

    out = io.StringIO()
    blocks = [["a\n", "b\n"], ["c\n"]]

    assert list(Progress(out, tty=False, every=0.0).wrap(iter(blocks), "reading x", size=len)) == blocks
    assert [line.split(" rows")[0] for line in out.getvalue().splitlines()] == ["reading x: 2", "reading x: 3"]


def test_copy_text_escapes_what_copy_would_read_as_codes() -> None:
    from movies.importers import copy_text

    assert copy_text("plain Zoë") == "plain Zoë"
    assert copy_text("a\\b\tc\nd\re\\N") == "a\\\\b\\tc\\nd\\re\\\\N"
