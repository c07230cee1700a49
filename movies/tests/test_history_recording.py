"""Every version of a movie aggregate is recorded by PostgreSQL in the writing transaction, whatever wrote it: the API,
the admin, each importer, a raw SQL session (a separate psycopg connection stands for psql). Each snapshot is what a
GET answered right after that write, without `rating` (docs/history.md)."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from conftest import live_database_url
from movies import history_sql
from movies.models import Genre, Movie, MovieVersion, Person
from movies.tests.factories import GenreFactory, MovieFactory, PersonFactory
from movies.tests.test_admin import change_url, form_data
from movies.tests.test_import_sources import imdb_folder, movielens_folder
from movies.versions import Actor

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/movies/"


def entries(movie_id: int) -> list[MovieVersion]:
    return list(MovieVersion.objects.filter(movie_id=movie_id).order_by("version"))


def shown(movie_id: int) -> dict[str, Any]:
    """What a GET answers now, without the rating (a snapshot's shape)."""
    response = APIClient().get(f"{URL}{movie_id}/")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    body.pop("rating")
    return body


def without_rating(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "rating"}


def raw_sql(*statements: str, params: list[Any] | None = None) -> None:
    """Statements in one transaction on a connection of their own, as a psql session sends them."""
    with psycopg.connect(live_database_url()) as session:
        for statement in statements:
            session.execute(statement, params if "%s" in statement else None)


@pytest.fixture
def catalogue(transactional_db: None) -> dict[str, Any]:
    """Genres and people the writes name (created without any movie: no history)."""
    return {
        "genres": [GenreFactory.create(slug="drama"), GenreFactory.create(slug="war")],
        "people": PersonFactory.create_batch(3),
    }


def test_api_writes_are_versions_whose_snapshots_are_what_get_answered(
    curator_client: APIClient, curator: Any, catalogue: dict[str, Any]
) -> None:
    people: list[Person] = catalogue["people"]
    created = curator_client.post(
        URL,
        {
            "title": "1917",
            "year": 2019,
            "genres": ["war"],
            "directors": [people[0].pk],
            "cast": [{"person": people[1].pk, "character": "Schofield"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    movie_id = created.json()["id"]
    seen = [shown(movie_id)]
    assert without_rating(created.json()) == seen[0]

    patched = curator_client.patch(f"{URL}{movie_id}/", {"runtime": 119, "version": 1}, format="json")
    assert patched.status_code == 200
    seen.append(shown(movie_id))
    assert without_rating(patched.json()) == seen[1]
    put = curator_client.put(
        f"{URL}{movie_id}/",
        {"title": "1917", "year": 2019, "genres": ["drama", "war"], "cast": [{"person": people[2].pk}], "version": 2},
        format="json",
    )
    assert put.status_code == 200
    seen.append(shown(movie_id))
    etag = APIClient().get(f"{URL}{movie_id}/")["ETag"]
    guarded = curator_client.patch(
        f"{URL}{movie_id}/", {"directors": [people[1].pk]}, format="json", HTTP_IF_MATCH=etag
    )
    assert guarded.status_code == 200
    seen.append(shown(movie_id))
    stale = curator_client.patch(f"{URL}{movie_id}/", {"runtime": 1, "version": 1}, format="json")
    assert stale.status_code == 409  # refused: no version
    assert curator_client.delete(f"{URL}{movie_id}/").status_code == 204

    recorded = entries(movie_id)
    assert [(entry.version, entry.kind) for entry in recorded] == [
        (1, "created"),
        (2, "updated"),
        (3, "updated"),
        (4, "updated"),
        (5, "deleted"),
    ]
    assert [entry.snapshot for entry in recorded[:4]] == seen
    assert recorded[4].snapshot == seen[3]  # a deleted movie's last state
    who = {"kind": "user", "id": curator.pk, "username": curator.username}
    assert all(entry.actor == who for entry in recorded)
    assert [entry.at for entry in recorded[:4]] == [
        datetime.datetime.fromisoformat(snapshot["updated_at"]) for snapshot in seen
    ]
    assert len({entry.xid for entry in recorded}) == 5  # five transactions


def test_a_curator_saving_in_the_admin_is_a_version_by_the_admin(curator: Any, catalogue: dict[str, Any]) -> None:
    curator.is_staff = True
    curator.save()
    web = Client()
    web.force_login(curator)
    movie = MovieFactory.create(title="Original", year=2001)
    response = web.post(change_url(movie), form_data(web, movie, title="Saved in the admin", runtime="99"))
    assert response.status_code == 302

    first, second = entries(movie.pk)
    assert (first.actor, second.actor) == (
        {"kind": "database"},
        {"kind": "admin", "id": curator.pk, "username": curator.username},
    )
    assert second.snapshot == shown(movie.pk)
    assert (second.snapshot["title"], second.snapshot["runtime"], second.version) == ("Saved in the admin", 99, 2)


def import_file(path: Path, *args: str) -> None:
    call_command("import_movies", str(path), *args, stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("source", ["json", "csv", "imdb", "movielens"])
def test_each_import_format_records_its_versions_naming_the_source(tmp_path: Path, source: str) -> None:
    if source == "json":
        path = tmp_path / "movies.json"
        path.write_text(
            json.dumps(
                [
                    {
                        "title": "The Matrix",
                        "year": 1999,
                        "imdb_id": "tt0133093",
                        "genres": ["action"],
                        "cast": [{"name": "Keanu Reeves", "character": "Neo"}],
                    }
                ]
            )
        )
    elif source == "csv":
        path = tmp_path / "movies.csv"
        path.write_text("title,year,imdb_id,genres\nThe Matrix,1999,tt0133093,action\n")
    else:
        path = imdb_folder(tmp_path) if source == "imdb" else movielens_folder(tmp_path)
    import_file(path)
    assert Movie.objects.exists()
    for movie in Movie.objects.all():
        (entry,) = entries(movie.pk)
        assert (entry.version, entry.kind, entry.actor) == (1, "created", {"kind": "import", "source": source})
        assert entry.snapshot == shown(movie.pk)

    # Again with a change: the matched movies move to version 2, relations included, and nothing else does.
    matrix = Movie.objects.get(imdb_id="tt0133093")
    if source in ("json", "csv"):
        path.write_text(path.read_text().replace("The Matrix", "The Matrix Revisited"))
    else:
        with psycopg.connect(live_database_url(), autocommit=True) as session:  # psql: the import will put it back
            session.execute("UPDATE movies_movie SET title = 'Changed in psql' WHERE id = %s", [matrix.pk])
    import_file(path)
    versions = [(entry.version, entry.actor["kind"]) for entry in entries(matrix.pk)]
    expected_last = {"kind": "import", "source": source}
    assert entries(matrix.pk)[-1].actor == expected_last
    assert [version for version, _ in versions] == list(range(1, Movie.objects.get(pk=matrix.pk).version + 1))
    assert entries(matrix.pk)[-1].snapshot == shown(matrix.pk)


def test_a_raw_update_in_psql_moves_the_version_and_is_recorded_as_the_database(catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Raw", year=2000)

    raw_sql("UPDATE movies_movie SET title = 'Raw, edited' WHERE id = %s", params=[movie.pk])

    first, second = entries(movie.pk)
    assert (second.version, second.kind, second.actor) == (2, "updated", {"kind": "database"})
    assert second.snapshot == shown(movie.pk)
    assert second.snapshot["title"] == "Raw, edited"
    assert second.at > first.at  # updated_at moved with the version


def test_raw_relation_changes_are_versions_once_per_transaction(catalogue: dict[str, Any]) -> None:
    drama, war = catalogue["genres"]
    people = catalogue["people"]
    with transaction.atomic():  # one transaction: one version
        movie = MovieFactory.create(title="Relations", year=2000, genres=[drama], directors=[people[0]])
    assert [entry.version for entry in entries(movie.pk)] == [1]

    raw_sql(
        'INSERT INTO movies_cast (movie_id, person_id, "character", "order") VALUES (%s, %s, \'A\', 0)',
        params=[movie.pk, people[1].pk],
    )
    assert shown(movie.pk)["version"] == 2
    with psycopg.connect(live_database_url()) as session:  # three statements, one transaction, one version
        session.execute("DELETE FROM movies_movie_genres WHERE movie_id = %s", [movie.pk])
        session.execute("INSERT INTO movies_movie_genres (movie_id, genre_id) VALUES (%s, %s)", [movie.pk, war.pk])
        session.execute("UPDATE movies_movie SET overview = 'All in one.' WHERE id = %s", [movie.pk])
        session.execute("UPDATE movies_cast SET \"character\" = 'B' WHERE movie_id = %s", [movie.pk])

    recorded = entries(movie.pk)
    assert [entry.version for entry in recorded] == [1, 2, 3]
    assert recorded[1].snapshot["cast"] == [
        {"person": {"id": people[1].pk, "name": people[1].name}, "character": "A", "order": 0}
    ]
    assert recorded[2].snapshot == shown(movie.pk)
    assert (recorded[2].snapshot["genres"], recorded[2].snapshot["overview"]) == (["war"], "All in one.")


def test_ratings_and_provenance_alone_are_not_versions(user_client: APIClient, catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Rated", year=2000)
    assert user_client.put(f"{URL}{movie.pk}/rating/", {"score": 8}, format="json").status_code == 201
    raw_sql('UPDATE movies_movie SET field_sources = \'{"title": "imdb"}\' WHERE id = %s', params=[movie.pk])
    assert [entry.version for entry in entries(movie.pk)] == [1]
    assert shown(movie.pk)["version"] == 1


def test_a_rolled_back_write_records_nothing(curator_client: APIClient, catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Kept", year=2000)
    with psycopg.connect(live_database_url()) as session:
        session.execute("UPDATE movies_movie SET title = 'Gone' WHERE id = %s", [movie.pk])
        session.execute(
            "INSERT INTO movies_movie_genres (movie_id, genre_id) VALUES (%s, %s)",
            [movie.pk, catalogue["genres"][0].pk],
        )
        session.rollback()
    with transaction.atomic():
        Movie.objects.filter(pk=movie.pk).update(title="Also gone")
        transaction.set_rollback(True)
    assert [entry.version for entry in entries(movie.pk)] == [1]
    assert entries(movie.pk)[0].snapshot == shown(movie.pk)


def test_a_version_never_moves_back_and_a_jump_records_every_version_on_the_way(catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Steady", year=2000)
    raw_sql("UPDATE movies_movie SET version = 3, title = 'Jumped by hand' WHERE id = %s", params=[movie.pk])
    with pytest.raises(psycopg.errors.CheckViolation, match="cannot move back"):
        raw_sql("UPDATE movies_movie SET version = 2 WHERE id = %s", params=[movie.pk])

    recorded = entries(movie.pk)
    assert [entry.version for entry in recorded] == [1, 2, 3]
    assert recorded[2].snapshot == shown(movie.pk)
    assert recorded[1].snapshot == {**recorded[2].snapshot, "version": 2}


def test_a_movie_deleted_in_psql_ends_its_history_with_its_last_state(catalogue: dict[str, Any]) -> None:
    people = catalogue["people"]
    with transaction.atomic():
        movie = MovieFactory.create(title="Doomed", year=2000, directors=[people[0]])
    last = shown(movie.pk)
    with psycopg.connect(live_database_url()) as session:  # as Django's cascade does: relations first
        session.execute("DELETE FROM movies_movie_directors WHERE movie_id = %s", [movie.pk])
        session.execute("DELETE FROM movies_movie WHERE id = %s", [movie.pk])

    _, gone = entries(movie.pk)
    assert (gone.version, gone.kind, gone.actor, gone.snapshot) == (2, "deleted", {"kind": "database"}, last)


def test_a_movie_created_and_deleted_in_one_transaction_leaves_no_history(catalogue: dict[str, Any]) -> None:
    with transaction.atomic():
        movie = MovieFactory.create(title="Never seen", year=2000)
        Movie.objects.filter(pk=movie.pk).delete()
    assert entries(movie.pk) == []


def test_the_actor_set_for_a_transaction_names_its_versions(catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Named", year=2000)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(history_sql.ACTOR_SET_SQL, [Actor.importer("imdb").as_json()])
        Movie.objects.filter(pk=movie.pk).update(title="Named by the import")
    assert entries(movie.pk)[-1].actor == {"kind": "import", "source": "imdb"}
    # The setting ends with its transaction: the next raw write is the database's.
    Movie.objects.filter(pk=movie.pk).update(title="Named by nobody")
    assert entries(movie.pk)[-1].actor == {"kind": "database"}


def test_times_are_written_as_the_api_writes_them(transactional_db: None) -> None:
    exact = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT movies_history_time(%s), movies_history_time(%s)",
            [exact, exact + datetime.timedelta(microseconds=7)],
        )
        assert cursor.fetchone() == ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000007Z")


def test_existing_movies_get_their_current_version_when_history_begins(catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Old", year=1990)
    Movie.objects.filter(pk=movie.pk).update(overview="Changed twice.")
    MovieVersion.objects.all().delete()  # as before the migration

    with connection.cursor() as cursor:
        cursor.execute(history_sql.HISTORY_BACKFILL_SQL)

    (entry,) = entries(movie.pk)
    assert (entry.version, entry.kind, entry.actor, entry.snapshot) == (
        2,
        "updated",
        {"kind": "database"},
        shown(movie.pk),
    )


def test_purge_history_keeps_recent_versions_and_each_movies_latest(catalogue: dict[str, Any], settings: Any) -> None:
    old, busy = MovieFactory.create(title="Old", year=1990), MovieFactory.create(title="Busy", year=1990)
    for title in ("Busy 2", "Busy 3"):
        Movie.objects.filter(pk=busy.pk).update(title=title)
    long_ago = timezone.now() - datetime.timedelta(days=40)
    MovieVersion.objects.filter(version__lt=3).update(at=long_ago)
    out = io.StringIO()

    call_command("purge_history", stdout=out)
    assert "nothing purged" in out.getvalue()
    settings.HISTORY_RETENTION_DAYS = 30
    call_command("purge_history", stdout=out)

    assert [entry.version for entry in entries(old.pk)] == [1]  # old, but its latest
    assert [entry.version for entry in entries(busy.pk)] == [3]
    assert "purged 2 version(s)" in out.getvalue()


def test_the_sql_names_the_models_tables_and_columns() -> None:
    assert Movie._meta.db_table == "movies_movie"
    assert MovieVersion._meta.db_table == "movies_movieversion"
    assert {Movie.genres.through._meta.db_table, Movie.directors.through._meta.db_table, "movies_cast"} == set(
        history_sql.RELATION_TABLES
    )
    columns = {field.column for field in MovieVersion._meta.concrete_fields}
    assert columns == {"id", "movie_id", "version", "kind", "at", "actor", "snapshot", "xid"}
    assert set(history_sql.TRACKED_COLUMNS) <= {field.column for field in Movie._meta.concrete_fields}
    assert Genre._meta.db_table == "movies_genre"


def test_a_deleted_movies_id_is_never_reused(catalogue: dict[str, Any]) -> None:
    movie = MovieFactory.create(title="Gone for good", year=2000)
    Movie.objects.filter(pk=movie.pk).delete()
    with pytest.raises(psycopg.errors.UniqueViolation, match="never reused"):
        raw_sql(
            "INSERT INTO movies_movie (id, title, year, overview, version, rating_count, rating_sum, created_at,"
            " updated_at) VALUES (%s, 'Impostor', 2000, '', 1, 0, 0, now(), now())",
            params=[movie.pk],
        )
    assert [(entry.version, entry.kind) for entry in entries(movie.pk)] == [(1, "created"), (2, "deleted")]


@pytest.mark.django_db
def test_the_functions_that_query_run_without_jit() -> None:
    """The snapshot's plan is pinned to index scans; a plan made so can cost more than jit_above_cost, and each call
    would compile its statements before running them (a bulk load's recording then ran for over 17 minutes)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'movies_history_%%' AND prolang = "
            "(SELECT oid FROM pg_language WHERE lanname = 'plpgsql') AND 'jit=off' = ANY(coalesce(proconfig, '{}'))"
        )
        without_jit = {name for (name,) in cursor.fetchall()}
    assert {"movies_history_snapshot", "movies_history_record", "movies_history_relations"} <= without_jit
