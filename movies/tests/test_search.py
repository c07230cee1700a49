"""Search beyond the movie list's own tests: people and genres, accents, strict list parameters, indexes, the
migration that makes search accent-blind (docs/search.md)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from conftest import bearer_client
from movies import search
from movies.models import Genre, Movie, Person
from movies.sql import TYPO_MATCHES_SQL
from movies.tests.factories import GenreFactory, MovieFactory, PersonFactory

pytestmark = pytest.mark.django_db


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row.get("title") or row.get("name") for row in response.json()["results"]]


def assert_refused(response: Any, parameter: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert parameter in response.json()["errors"], response.json()


@pytest.fixture
def crew(db: None) -> dict[str, Person]:
    return {
        name: PersonFactory.create(name=name)
        for name in (
            "Stanley Kubrick",
            "Stanley Kubrick Jr",
            "Stanley Donen",
            "Jürgen Prochnow",
            "Zoë Kravitz",
            "Jean Reno",
            "Natalie Portman",
        )
    }


# ---- people and genres -------------------------------------------------------------------------


def test_people_search_finds_names_ranked_case_accent_and_typo_blind(anon: APIClient, crew: dict[str, Person]) -> None:
    url = "/api/v1/people/"
    assert names(anon.get(url, {"search": "kubrick"})) == ["Stanley Kubrick", "Stanley Kubrick Jr"]
    assert names(anon.get(url, {"search": "STANLEY"})) == ["Stanley Donen", "Stanley Kubrick", "Stanley Kubrick Jr"]
    assert names(anon.get(url, {"search": "jurgen"})) == ["Jürgen Prochnow"]
    assert names(anon.get(url, {"search": "zoe kravitz"})) == ["Zoë Kravitz"]
    assert names(anon.get(url, {"search": "Jürgen"})) == ["Jürgen Prochnow"]
    # No name has the word: the nearest names by trigrams, the nearer first.
    assert names(anon.get(url, {"search": "kubrik"})) == ["Stanley Kubrick", "Stanley Kubrick Jr"]
    assert names(anon.get(url, {"search": "prochnov"})) == ["Jürgen Prochnow"]
    assert names(anon.get(url, {"search": "zzqqxx"})) == []
    assert names(anon.get(url, {"search": "!!!"})) == []
    assert len(names(anon.get(url, {"search": ""}))) == len(crew)
    body = anon.get(url, {"search": "stanley"}).json()
    assert (body["count"], body["count_is_estimate"]) == (3, False)


def test_people_search_refuses_what_it_cannot_take(anon: APIClient, crew: dict[str, Person]) -> None:
    assert_refused(anon.get("/api/v1/people/", {"search": "x" * 201}), "search")
    assert_refused(anon.get("/api/v1/people/", {"search": "a\x00b"}), "search")
    assert_refused(anon.get("/api/v1/people/", {"search": "kubrick", "serach": "x"}), "serach")


def test_a_detail_ignores_the_lists_parameters(anon: APIClient, crew: dict[str, Person]) -> None:
    kubrick = crew["Stanley Kubrick"]
    assert anon.get("/api/v1/people/", {"search": "kubrick"}).json()["results"][0]["id"] == kubrick.pk
    assert anon.get(f"/api/v1/people/{kubrick.pk}/", {"search": "portman"}).status_code == 200


def test_typo_ranking_of_people_is_bounded_and_says_so(
    anon: APIClient, crew: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 1)
    body = anon.get("/api/v1/people/", {"search": "stanly"}).json()
    assert (body["count"], body["count_is_estimate"], len(body["results"])) == (1, True, 1)


def test_genre_search_by_name_or_slug(anon: APIClient, genres: dict[str, Genre]) -> None:
    GenreFactory.create(slug="film-noir", name="Film Noir")
    GenreFactory.create(slug="telenovela", name="Telenovela Clásica")
    url = "/api/v1/genres/"
    assert names(anon.get(url, {"search": "science"})) == ["Science Fiction"]
    assert names(anon.get(url, {"search": "science-fiction"})) == ["Science Fiction"]
    assert names(anon.get(url, {"search": "NOIR"})) == ["Film Noir"]
    assert names(anon.get(url, {"search": "clasica"})) == ["Telenovela Clásica"]
    assert names(anon.get(url, {"search": "dramma"})) == ["Drama"]
    assert names(anon.get(url, {"search": "qwzx"})) == []


# ---- every list: unknown parameters and paging -------------------------------------------------


# movies/ refused them already (test_discovery.py); these lists did not.
@pytest.mark.parametrize("url", ["/api/v1/genres/", "/api/v1/people/", "/api/v1/me/ratings/"])
def test_every_list_refuses_unknown_parameters_and_bad_paging(url: str, user: User, genres: Any, crew: Any) -> None:
    client = bearer_client(user)
    assert client.get(url).status_code == 200
    assert client.get(url, {"page_size": "100", "format": "json"}).status_code == 200
    assert_refused(client.get(url, {"foo": "1"}), "foo")
    assert_refused(client.get(url, {"page": "1", "q": "x", "sort": "name"}), "sort")
    for name, value in (("page", "0"), ("page_size", "0"), ("page_size", "101"), ("page", "x")):
        assert_refused(client.get(url, {name: value}), name)


def test_the_schema_documents_the_name_searches(anon: APIClient) -> None:
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/people/", "/api/v1/genres/"):
        parameters = {parameter["name"] for parameter in schema["paths"][path]["get"]["parameters"]}
        assert {"search", "page", "page_size"} <= parameters, parameters


# ---- accents -----------------------------------------------------------------------------------


@pytest.fixture
def french(db: None) -> dict[str, Movie]:
    return {
        "leon": MovieFactory.create(title="Léon", year=1994, overview="A hitman takes in a girl."),
        "amelie": MovieFactory.create(
            title="Le Fabuleux Destin d'Amélie Poulain", year=2001, overview="A shy waitress in Montmartre."
        ),
        "journey": MovieFactory.create(title="Leon's Long Journey", year=2010, overview="A café owner travels."),
        "naive": MovieFactory.create(title="Naïve Hearts", year=2012, overview="A soldier returns."),
    }


def test_movie_search_ignores_case_and_accents(anon: APIClient, french: dict[str, Movie]) -> None:
    expected = {
        "leon": "Léon",
        "LEON": "Léon",
        "Léon": "Léon",
        "amelie": "Le Fabuleux Destin d'Amélie Poulain",
        "AMÉLIE poulain": "Le Fabuleux Destin d'Amélie Poulain",
        "naive hearts": "Naïve Hearts",
        "cafe": "Leon's Long Journey",  # the overview side is accent-blind too
        "amellie": "Le Fabuleux Destin d'Amélie Poulain",  # a typo of an accented word
        "léonn": "Léon",
    }
    found = {text: names(anon.get("/api/v1/movies/", {"search": text}))[:1] for text in expected}
    assert found == {text: [title] for text, title in expected.items()}


def test_an_accent_does_not_lower_a_titles_rank(anon: APIClient, french: dict[str, Movie]) -> None:
    # "Léon" is the whole title for `leon`, as "Leon's Long Journey" is not: it comes first, accent or not.
    assert names(anon.get("/api/v1/movies/", {"search": "leon"})) == ["Léon", "Leon's Long Journey"]
    assert names(anon.get("/api/v1/movies/", {"search": "leon", "ordering": "year"})) == ["Léon", "Leon's Long Journey"]


def test_accent_blind_search_answers_the_same_over_the_whole_catalogue_and_filtered(french: dict[str, Movie]) -> None:
    # Over the whole catalogue the search sends constant SQL (movies/sql.py), filtered the ORM's: the same answers.
    def outcome(queryset: Any, text: str, ranked: bool) -> tuple[Any, ...]:
        result = search.search_movies(queryset, text, ranked=ranked)
        return list(result.queryset.order_by(*result.order, "pk").values_list("pk", flat=True)), result.count

    for text, title in {
        "leon": "leon",
        "amelie": "amelie",
        "amellie": "amelie",
        "cafe": "journey",
        "naive": "naive",
    }.items():
        for ranked in (True, False):
            found = outcome(Movie.objects.all(), text, ranked)
            assert found == outcome(Movie.objects.filter(year__gte=0), text, ranked), (text, ranked)
            assert found[0][:1] == [french[title].pk], (text, ranked)


# ---- indexes -----------------------------------------------------------------------------------


@pytest.fixture
def crowd(db: None) -> Iterator[None]:
    """Enough rows (analysed) that an index the search can use is the cheapest plan, as in production."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO movies_movie (title, year, overview, version, rating_count, rating_sum, created_at,"
            " updated_at) SELECT 'Film ' || n, 2000, 'Plot ' || n, 1, 0, 0, now(), now()"
            " FROM generate_series(1, 5000) AS n"
        )
        cursor.execute(
            "INSERT INTO movies_person (name, created_at, updated_at)"
            " SELECT 'Extra ' || n, now(), now() FROM generate_series(1, 5000) AS n"
        )
        # New rows wait in the GIN indexes' pending lists (VACUUM's job), which the planner prices high.
        for index in ("movie_title_trgm", "movie_search", "person_name_trgm", "person_name_search"):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        cursor.execute("ANALYZE movies_movie, movies_person")
    yield
    # ANALYZE writes the table sizes outside the transaction: measure them again without these rows, or later tests
    # of this database would take PostgreSQL's estimate of 5,000 movies for their count.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM movies_movie WHERE title LIKE 'Film %%'")
        cursor.execute("DELETE FROM movies_person WHERE name LIKE 'Extra %%'")
        cursor.execute("ANALYZE movies_movie, movies_person")


def plan(sql: str, params: list[Any]) -> str:
    """The plan with sequential scans off (5,000 short rows are cheaper to read whole than a GIN index)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    return text


def queryset_plan(queryset: Any) -> str:
    """The plan of the queryset's condition (without its ordering, which an id or name index could serve)."""
    sql, params = queryset.order_by().query.sql_with_params()
    return plan(sql, list(params))


def test_accent_blind_searches_are_answered_by_indexes(
    crew: dict[str, Person], french: dict[str, Movie], crowd: None
) -> None:
    assert "movie_title_trgm" in plan(TYPO_MATCHES_SQL, ["matrx"])
    # A filter no index serves, so that the plan shows the trigram index answering the search's own condition.
    result = search.search_movies(Movie.objects.exclude(overview="-"), "leonn", ranked=False)
    assert result.typo
    assert "movie_title_trgm" in queryset_plan(result.queryset)
    assert "movie_search" in queryset_plan(search.search_movies(Movie.objects.all(), "leon", ranked=False).queryset)
    assert "person_name_search" in queryset_plan(search.search_people(Person.objects.all(), "jurgen").queryset)
    with CaptureQueriesContext(connection) as queries:
        assert list(search.search_people(Person.objects.all(), "prochnov").queryset.values_list("name", flat=True)) == [
            "Jürgen Prochnow"
        ]
    probe = next(query["sql"] for query in queries if "%>" in query["sql"])
    assert "person_name_trgm" in plan(probe.replace("%", "%%"), [])


# ---- the migration ------------------------------------------------------------------------------


def test_the_unaccent_wrapper_is_immutable_and_made_without_superuser_too() -> None:
    migration = importlib.import_module("movies.migrations.0008_unaccent_search")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT provolatile, l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            "WHERE proname = 'immutable_unaccent'"
        )
        assert cursor.fetchall() == [("i", "c")]  # the test database's owner is a superuser
        # A database owner that is not a superuser cannot create a C function: the migration makes a SQL one.
        cursor.execute("CREATE ROLE movieapi_search_test NOLOGIN")
        cursor.execute("CREATE SCHEMA movieapi_search_test AUTHORIZATION movieapi_search_test")
        cursor.execute("SET LOCAL ROLE movieapi_search_test")
        cursor.execute("SET LOCAL search_path = movieapi_search_test, public")
        cursor.execute(migration.CREATE_FUNCTION)
        cursor.execute(
            "SELECT l.lanname, p.provolatile, movieapi_search_test.immutable_unaccent('Léon Amélie Ærø') "
            "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE proname = 'immutable_unaccent' AND nspname = 'movieapi_search_test'"
        )
        assert cursor.fetchall() == [("sql", "i", "Leon Amelie AEro")]
        cursor.execute("RESET ROLE")
        cursor.execute("RESET search_path")
    # The test's transaction is rolled back: role and schema go with it.


@pytest.mark.django_db(transaction=True)
def test_the_migration_goes_back_and_forth() -> None:
    MovieFactory.create(title="Léon", year=1994)
    call_command("migrate", "movies", "0007", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*) FROM movies_movie WHERE search_vector @@ to_tsquery('simple', 'leon')")
        assert cursor.fetchone() == (0,)  # before: accents count
    call_command("migrate", "movies", verbosity=0)
    assert list(search.search_movies(Movie.objects.all(), "leon").queryset.values_list("title", flat=True)) == ["Léon"]


# ---- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def web(curator: User) -> Any:
    from django.test import Client

    curator.is_staff = True
    curator.save()
    client = Client()
    client.force_login(curator)
    return client


def test_the_admin_searches_as_the_api(web: Any, movie: Movie, french: dict[str, Movie], crew: Any) -> None:
    def listed(url: str) -> str:
        response = web.get(url)
        assert response.status_code == 200
        return response.content.decode()

    assert "The Matrix" in listed("/admin/movies/movie/?q=matrx")
    page = listed("/admin/movies/movie/?q=leon")
    assert "Léon" in page
    assert "Naïve Hearts" not in page
    assert "Naïve Hearts" in listed("/admin/movies/movie/?q=NAIVE")
    assert "Jürgen Prochnow" in listed("/admin/movies/person/?q=jurgen")
    assert "Stanley Kubrick" in listed("/admin/movies/person/?q=kubrik")
    assert "Science Fiction" in listed("/admin/movies/genre/?q=sciense")
    autocomplete = web.get(
        "/admin/autocomplete/",
        {"term": "jurgen", "app_label": "movies", "model_name": "movie", "field_name": "directors"},
    )
    assert [r["text"] for r in autocomplete.json()["results"]] == ["Jürgen Prochnow"]
