"""export_movies: `.gz` names for every format, each movie's catalogue id, the API's values, constant queries."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from movies.models import Genre, Movie, Person
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory
from movies.tests.test_export import catalogue, empty_catalogue, filled  # noqa: F401 (filled is a fixture)

pytestmark = pytest.mark.django_db


def export(path: Path, *args: str) -> None:
    call_command("export_movies", str(path), *args, stderr=io.StringIO())


def read_back(path: Path) -> list[dict[str, Any]]:
    """The records of an export, read as its format (by the name before .gz)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        text = stream.read()
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines()]
    if name.endswith(".json"):
        return list(json.loads(text))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [{**row, "directors": json.loads(row["directors"]), "cast": json.loads(row["cast"])} for row in rows]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_gz_name_is_that_format_compressed_and_imports_back(tmp_path: Path, filled: list[Any], fmt: str) -> None:  # noqa: F811
    path = tmp_path / f"export.{fmt}.gz"
    export(path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic number
    records = read_back(path)
    assert len(records) == 25
    assert [int(record["id"]) for record in records] == list(Movie.objects.order_by("id").values_list("id", flat=True))

    empty_catalogue()
    result = io.StringIO()
    call_command("import_movies", str(path), stdout=result, stderr=io.StringIO())
    assert catalogue() == filled
    assert "created: 25" in result.getvalue()


def test_no_partial_file_is_left_and_the_id_is_the_first_csv_column(tmp_path: Path, filled: list[Any]) -> None:  # noqa: F811
    path = tmp_path / "export.csv"
    export(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,title,year,runtime,overview,imdb_id,genres,directors,cast"


def test_exported_values_are_the_apis(tmp_path: Path, filled: list[Any], anon: APIClient) -> None:  # noqa: F811
    path = tmp_path / "export.jsonl"
    export(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == Movie.objects.count()
    people = dict(Person.objects.values_list("name", "imdb_id"))
    for record in records:
        shown = anon.get(f"/api/v1/movies/{record['id']}/").json()
        same = ("id", "title", "year", "runtime", "overview", "imdb_id", "genres")
        assert {name: record[name] for name in same} == {name: shown[name] for name in same}
        assert record["directors"] == [
            {"name": person["name"], "imdb_id": people[person["name"]]} for person in shown["directors"]
        ]
        assert record["cast"] == [
            {"name": role["person"]["name"], "imdb_id": people[role["person"]["name"]], "character": role["character"]}
            for role in shown["cast"]
        ]


def make_movies(count: int, genres: list[Genre], people: list[Person]) -> None:
    for n in range(count):
        movie = MovieFactory.create(genres=genres[: 1 + n % 3], directors=people[n % 4 : n % 4 + 2])
        for order, person in enumerate(people[: 1 + n % 5]):
            CastMemberFactory.create(movie=movie, person=person, character=f"Role {order}", order=order)


def count_queries(tmp_path: Path, batch_size: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        export(tmp_path / "count.jsonl", "--batch-size", str(batch_size))
    return len(queries)


def test_the_number_of_queries_depends_on_batches_not_on_movies(tmp_path: Path) -> None:
    genres = [GenreFactory.create(slug=f"g{n}") for n in range(3)]
    people = [PersonFactory.create() for _ in range(6)]
    make_movies(3, genres, people)
    one_batch = count_queries(tmp_path, 4)  # 3 movies: one batch
    make_movies(12, genres, people)
    four_batches = count_queries(tmp_path, 4)  # 15 movies: four batches
    # Per batch: genres, directors and cast in one query each (the movies come from one server-side cursor).
    assert four_batches - one_batch == 3 * 3
    assert one_batch <= 1 + 3 + 2  # the movies' cursor, one batch, the transaction's set-up
    assert count_queries(tmp_path, 1000) == one_batch  # 15 movies in one batch: as many queries as 3
