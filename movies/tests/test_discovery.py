"""The movie list at scale: filters, search, ordering, pagination, and constant queries per request."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import serializers
from rest_framework.test import APIClient

from movieapi import pagination
from movieapi.pagination import ListPlan
from movies import search, selectors, views
from movies.models import Genre, Movie, Person
from movies.serializers import MovieSerializer
from movies.tests.factories import CastMemberFactory, GenreFactory, MovieFactory, PersonFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/movies/"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [movie["id"] for movie in response.json()["results"]]


def assert_problem(response: Any, parameter: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert parameter in response.json()["errors"], response.json()


@pytest.fixture
def catalogue(genres: dict[str, Genre], people: list[Person]) -> dict[str, Movie]:
    """A handful of movies with distinct genres, years, runtimes, ratings and credits."""
    action, drama, scifi = genres["action"], genres["drama"], genres["science-fiction"]
    director, actor, _ = people
    movies = {
        "matrix": MovieFactory.create(
            title="The Matrix",
            year=1999,
            runtime=136,
            overview="A hacker learns the truth about reality.",
            genres=[action, scifi],
            directors=[director],
        ),
        "heat": MovieFactory.create(
            title="Heat", year=1995, runtime=170, overview="A detective hunts a crew of thieves.", genres=[action]
        ),
        "her": MovieFactory.create(
            title="Her", year=2013, runtime=None, overview="A lonely writer and his computer.", genres=[drama, scifi]
        ),
        "spirited": MovieFactory.create(
            title="千と千尋の神隠し", year=2001, runtime=125, overview="Spirits and a bathhouse.", genres=[drama]
        ),
        "brat": MovieFactory.create(title="Брат", year=1997, runtime=99, overview="Петербург, девяностые."),
    }
    CastMemberFactory.create(movie=movies["heat"], person=actor, character="Neil", order=0)
    Movie.objects.filter(pk=movies["matrix"].pk).update(rating_count=2, rating_sum=17)  # 8.5
    Movie.objects.filter(pk=movies["heat"].pk).update(rating_count=1, rating_sum=8)  # 8.0
    Movie.objects.filter(pk=movies["brat"].pk).update(rating_count=1, rating_sum=9)  # 9.0
    return movies


def pk(catalogue: dict[str, Movie], *names: str) -> list[int]:
    return [catalogue[name].pk for name in names]


# ---- filters -----------------------------------------------------------------------------------


def test_genre_filter_requires_every_genre_repeated_or_comma_separated(
    anon: APIClient, catalogue: dict[str, Movie]
) -> None:
    assert ids(anon.get(URL, {"genre": "science-fiction"})) == pk(catalogue, "matrix", "her")
    assert ids(anon.get(URL + "?genre=action&genre=science-fiction")) == pk(catalogue, "matrix")
    assert ids(anon.get(URL, {"genre": "drama,science-fiction"})) == pk(catalogue, "her")


def test_range_filters(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    assert ids(anon.get(URL, {"year_min": 1997, "year_max": 2001})) == pk(catalogue, "matrix", "spirited", "brat")
    assert ids(anon.get(URL, {"runtime_min": 126, "runtime_max": 170})) == pk(catalogue, "matrix", "heat")
    assert ids(anon.get(URL, {"rating_min": "8.5"})) == pk(catalogue, "matrix", "brat")


def test_person_filter_matches_cast_and_directors(
    anon: APIClient, catalogue: dict[str, Movie], people: list[Person]
) -> None:
    assert ids(anon.get(URL, {"person": people[0].pk})) == pk(catalogue, "matrix")
    assert ids(anon.get(URL, {"person": people[1].pk})) == pk(catalogue, "heat")
    assert ids(anon.get(URL, {"person": people[2].pk})) == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"genre": "no-such-genre"}, "genre"),
        ({"genre": "Not A Slug"}, "genre"),
        ({"ordering": "budget"}, "ordering"),
        ({"ordering": "year,-nope"}, "ordering"),
        ({"year_min": "nineteen"}, "year_min"),
        ({"year_max": "1999.5"}, "year_max"),
        ({"year_min": "9" * 30}, "year_min"),
        ({"runtime_max": "-1"}, "runtime_max"),
        ({"rating_min": "11"}, "rating_min"),
        ({"rating_min": "NaN"}, "rating_min"),
        ({"person": "abc"}, "person"),
        ({"person": "9" * 30}, "person"),
        ({"person": "999999"}, "person"),
        ({"search": "x\x00y"}, "search"),
        ({"search": "x" * 201}, "search"),
        ({"genres": "action"}, "genres"),
        ({"page": "0"}, "page"),
        ({"page_size": "101"}, "page_size"),
    ],
)
def test_bad_values_are_400_naming_the_parameter(
    anon: APIClient, catalogue: dict[str, Movie], query: dict[str, str], parameter: str
) -> None:
    assert_problem(anon.get(URL, query), parameter)


def test_a_list_with_only_paging_parameters_skips_the_filterset(
    anon: APIClient, catalogue: dict[str, Movie], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the FilterSet (an empty filter), then without it: the same movies, by id.
    by_id = ids(anon.get(URL, {"page_size": "100", "search": ""}))
    assert by_id == sorted(by_id)
    assert len(by_id) == len(catalogue)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the FilterSet was built for a list without filter parameters")

    monkeypatch.setattr(views.MovieFilters, "__init__", refuse)
    assert ids(anon.get(URL, {"page_size": "100", "format": "json"})) == by_id
    assert anon.get(URL, {"page": "2", "page_size": "1"}).json()["results"][0]["id"] == by_id[1]


# ---- ordering ----------------------------------------------------------------------------------


def test_rating_ordering_puts_unrated_movies_last_in_both_directions(
    anon: APIClient, catalogue: dict[str, Movie]
) -> None:
    assert ids(anon.get(URL, {"ordering": "-rating"})) == pk(catalogue, "brat", "matrix", "heat", "spirited", "her")
    assert ids(anon.get(URL, {"ordering": "rating"})) == pk(catalogue, "heat", "matrix", "brat", "her", "spirited")


@pytest.mark.parametrize("key", ["title", "year", "runtime", "rating", "rating_count", "created_at"])
def test_every_ordering_key_in_both_directions_breaks_ties_by_id(anon: APIClient, key: str) -> None:
    movies = [MovieFactory.create(year=2000 + n % 2, runtime=100 + n % 2, title=f"T{n % 2}") for n in range(6)]
    for ascending in (True, False):
        listed = ids(anon.get(URL, {"ordering": key if ascending else f"-{key}"}))
        assert sorted(listed) == sorted(movie.pk for movie in movies)
        rows = {m["id"]: m for m in anon.get(URL, {"ordering": key}).json()["results"]}
        assert len(rows) == 6
    # With all created_at / rating ties resolved by id, the order is fully determined by the data.
    asc = ids(anon.get(URL, {"ordering": key}))
    desc = ids(anon.get(URL, {"ordering": f"-{key}"}))
    assert desc == list(reversed(asc))


def test_paging_through_ties_never_repeats_or_skips(anon: APIClient) -> None:
    movies = [MovieFactory.create(year=1990 + n % 3) for n in range(25)]
    seen: list[int] = []
    for page in range(1, 6):
        seen += ids(anon.get(URL, {"ordering": "-year", "page_size": "6", "page": str(page)}))
    assert sorted(seen) == sorted(movie.pk for movie in movies)
    assert len(seen) == len(set(seen))


# ---- search ------------------------------------------------------------------------------------


def test_search_ranks_title_above_overview(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    writer = MovieFactory.create(title="Matrices", overview="A film about the matrix of a life.")
    found = ids(anon.get(URL, {"search": "matrix"}))
    assert found[0] == catalogue["matrix"].pk
    assert writer.pk in found


def test_search_tolerates_typos_in_titles(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    assert ids(anon.get(URL, {"search": "matrx"}))[:1] == pk(catalogue, "matrix")


def test_search_overview_uses_english_stemming(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    assert ids(anon.get(URL, {"search": "hunting detectives"})) == pk(catalogue, "heat")


@pytest.mark.parametrize(
    "text", ["千と千尋の神隠し", "Брат", "Петербург", '"the matrix" -heat', "or -", "'", "a & b | !c"]
)
def test_search_handles_any_language_and_syntax(anon: APIClient, catalogue: dict[str, Movie], text: str) -> None:
    response = anon.get(URL, {"search": text})
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    "text", ["matrix", "the matrix", "hunting detectives", "matrx", "Брат", "matrix -heat", "her", "zzzqqq"]
)
@pytest.mark.parametrize("ranked", [True, False])
def test_search_over_the_whole_catalogue_answers_as_the_orm_path(
    catalogue: dict[str, Movie], text: str, ranked: bool
) -> None:
    # An unfiltered search sends the probes' sources as constant SQL (movies/sql.py); a filter that keeps every
    # movie sends them as the ORM compiles them. Same matches, order and counts.
    def outcome(queryset: Any) -> tuple[Any, ...]:
        result = search.search_movies(queryset, text, ranked=ranked)
        found = list(result.queryset.order_by(*result.order, "pk").values_list("pk", flat=True))
        return found, result.count, result.count_is_estimate, result.typo

    assert selectors.whole_catalogue(Movie.objects.all())
    assert not selectors.whole_catalogue(Movie.objects.filter(year__gte=0))
    whole = outcome(Movie.objects.all())
    assert whole == outcome(Movie.objects.filter(year__gte=0))
    if text in {"matrix", "the matrix", "matrx", "Брат"}:
        assert catalogue["brat" if text == "Брат" else "matrix"].pk in whole[0]


@pytest.mark.parametrize("text", ["matrix", "the matrix", "hunting detectives", "matrx", "Брат", "matrix -heat", "a"])
def test_a_ranked_search_pages_by_constant_sql_in_the_orm_order(catalogue: dict[str, Movie], text: str) -> None:
    # Over the whole catalogue the ranked ids come from SEARCH_RANKED_IDS_SQL, a typo's from its probe (one prepared
    # statement with the page's rows), not from the compiled queryset: same ids, same order, any page.
    MovieFactory.create(title="The Matrix Matrix", overview="matrix")  # ties and near-ties in rank
    result = search.search_movies(Movie.objects.all(), text)
    expected = list(result.queryset.order_by(*result.order).values_list("pk", flat=True))
    assert (result.page_ids is not None) == bool(expected)
    if result.page_ids is None:
        return
    marked = ListPlan(result.queryset.order_by(*result.order), page_ids_sql=result.page_ids)
    assert [row[0] for row in selectors.movie_page(marked, 0, 100)] == expected
    assert [row[0] for row in selectors.movie_page(marked, 1, 2)] == expected[1:3]
    assert selectors.movie_page(marked, len(expected), 5) == []


def test_search_finds_titles_in_other_scripts(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    assert ids(anon.get(URL, {"search": "Брат"}))[:1] == pk(catalogue, "brat")
    assert ids(anon.get(URL, {"search": "千と千尋の神隠し"}))[:1] == pk(catalogue, "spirited")


def test_search_with_explicit_ordering_and_filters(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    found = ids(anon.get(URL, {"search": "a", "ordering": "-year", "genre": "drama"}))
    assert found == sorted(found, key=lambda movie_id: -Movie.objects.get(pk=movie_id).year)


# ---- pagination --------------------------------------------------------------------------------


def test_a_filtered_page_compiles_its_ids_once_for_the_page_and_the_estimate(
    anon: APIClient, catalogue: dict[str, Movie], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination, "_planner_estimates", {})
    monkeypatch.setattr(pagination, "EXACT_COUNT_LIMIT", 1)  # so that the count is the planner's estimate
    with CaptureQueriesContext(connection) as queries:
        body = anon.get(URL, {"year_min": "1900", "ordering": "-year", "page_size": "2"}).json()
    assert body["count_is_estimate"] is True
    assert len(body["results"]) == 2
    statements = [query["sql"] for query in queries.captured_queries]
    (explained,) = [sql for sql in statements if sql.startswith("EXPLAIN")]
    (ids,) = [sql for sql in statements if sql.startswith('SELECT "movies_movie"."id"') and "LIMIT 3 OFFSET 0" in sql]
    assert explained == "EXPLAIN (FORMAT JSON) " + ids.removesuffix(" LIMIT 3 OFFSET 0")


def test_small_lists_have_an_exact_count(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    body = anon.get(URL, {"page_size": 2}).json()
    assert (body["count"], body["count_is_estimate"]) == (5, False)
    assert body["next"].endswith("page=2&page_size=2") or "page=2" in body["next"]
    assert body["previous"] is None
    last = anon.get(URL, {"page_size": 2, "page": 3}).json()
    assert (last["count"], last["next"], len(last["results"])) == (5, None, 1)
    assert "page=2" in last["previous"]
    assert anon.get(URL, {"page_size": 2, "page": 4}).status_code == 404


def test_a_filtered_lists_estimate_is_reused_by_its_pages(
    anon: APIClient, catalogue: dict[str, Movie], monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(pagination, "EXACT_COUNT_LIMIT", 2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE movies_movie")
    query = {"page_size": 1, "year_min": 1900}
    first = anon.get(URL, query).json()
    assert first["count_is_estimate"] is True
    with django_assert_num_queries(2):  # ids, rows: the estimate is the one page 1 asked for
        second = anon.get(URL, {**query, "page": 2}).json()
    assert second["count"] == first["count"]
    monkeypatch.setattr(pagination, "ESTIMATE_TTL_SECONDS", 0.0)
    with django_assert_num_queries(3):  # expired: asked again
        anon.get(URL, {**query, "page": 2})


def test_large_lists_get_a_flagged_estimate_and_exact_links(
    anon: APIClient, catalogue: dict[str, Movie], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination, "EXACT_COUNT_LIMIT", 2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE movies_movie")
    pagination._table_estimates.clear()
    for query in ({}, {"year_min": 1990}):
        body = anon.get(URL, {"page_size": 2, **query}).json()
        assert body["count_is_estimate"] is True
        assert body["count"] >= 3
        assert body["next"] is not None
    last = anon.get(URL, {"page_size": 2, "page": 3}).json()
    assert (last["count"], last["count_is_estimate"], last["next"]) == (5, False, None)


def test_schema_documents_count_is_estimate(anon: APIClient) -> None:
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert b"count_is_estimate" in schema.content


# ---- one representation, constant queries ----------------------------------------------------


def test_fast_representation_equals_the_declared_fields(catalogue: dict[str, Movie], people: list[Person]) -> None:
    CastMemberFactory.create(movie=catalogue["matrix"], person=people[2], character="Trinity «ü»", order=1)
    catalogue["matrix"].directors.add(PersonFactory.create(name="Aaron"))
    for movie in selectors.movie_queryset():
        plain = Movie.objects.get(pk=movie.pk)
        declared = serializers.Serializer.to_representation(MovieSerializer(), plain)
        assert MovieSerializer(movie).data == declared
        assert MovieSerializer(plain).data == declared


def many_movies(count: int) -> None:
    genres = [GenreFactory.create(slug=f"g{n}") for n in range(3)]
    people = [PersonFactory.create() for _ in range(4)]
    for n in range(count):
        movie = MovieFactory.create(genres=genres[: n % 3 + 1], directors=people[:1])
        for order, person in enumerate(people[1:]):
            CastMemberFactory.create(movie=movie, person=person, order=order)


@pytest.mark.parametrize("page_size", [1, 20, 100])
@pytest.mark.parametrize(
    ("query", "budget"), [({}, 3), ({"ordering": "-rating"}, 3), ({"genre": "g0", "year_min": "1990"}, 5)]
)
def test_list_queries_do_not_grow_with_the_page(
    anon: APIClient, django_assert_max_num_queries: Any, page_size: int, query: dict[str, str], budget: int
) -> None:
    many_movies(105)
    with django_assert_max_num_queries(budget):
        response = anon.get(URL, {"page_size": str(page_size), **query})
    assert len(ids(response)) == page_size


def test_detail_is_one_query(anon: APIClient, django_assert_num_queries: Any) -> None:
    many_movies(1)
    movie = Movie.objects.get()
    with django_assert_num_queries(1):
        assert anon.get(f"{URL}{movie.pk}/").status_code == 200


def test_versioned_patch_query_budget(curator_client: APIClient, django_assert_num_queries: Any) -> None:
    many_movies(1)
    movie = Movie.objects.get()
    # The token with its user and (a write) the user's permissions, then the write: one conditional UPDATE that
    # also finds a missing or changed movie and reads the new representation, in no transaction of its own (no
    # savepoint here, no BEGIN/COMMIT outside tests).
    with django_assert_num_queries(2) as captured:
        response = curator_client.patch(f"{URL}{movie.pk}/", {"runtime": 99, "version": movie.version}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == movie.version + 1
    assert any("UPDATE" in query["sql"] for query in captured.captured_queries)
    # What the write answered is what a read answers now, byte for byte, with the same ETag.
    again = curator_client.get(f"{URL}{movie.pk}/")
    assert (again.content, again["ETag"]) == (response.content, response["ETag"])
    assert again.json()["runtime"] == 99


@pytest.mark.parametrize("films", [1, 30])
def test_person_detail_queries_are_constant(anon: APIClient, django_assert_max_num_queries: Any, films: int) -> None:
    many_movies(films)
    person = Person.objects.order_by("id")[1]
    with django_assert_max_num_queries(3):
        body = anon.get(f"/api/v1/people/{person.pk}/").json()
    assert len(body["roles"]) == films


def test_person_detail_shows_the_first_films_and_counts_them_all(
    anon: APIClient, django_assert_max_num_queries: Any
) -> None:
    """An actor with 500 roles was a 280 KB answer: the detail caps each list and counts it; all of them are at
    movies/?person={id}, paginated."""
    shown = selectors.PERSON_FILMS_SHOWN
    many_movies(shown + 5)
    director, actor = Person.objects.order_by("id")[:2]
    earliest = list(Movie.objects.order_by("year", "id").values_list("id", flat=True)[:shown])
    with django_assert_max_num_queries(3):
        directed = anon.get(f"/api/v1/people/{director.pk}/").json()
    with django_assert_max_num_queries(3):
        acted = anon.get(f"/api/v1/people/{actor.pk}/").json()
    assert (directed["directed_count"], directed["roles_count"]) == (shown + 5, 0)
    assert [film["id"] for film in directed["directed"]] == earliest
    assert (acted["directed_count"], acted["roles_count"], acted["directed"]) == (0, shown + 5, [])
    assert [role["movie"]["id"] for role in acted["roles"]] == earliest
    everything = anon.get(URL, {"person": str(actor.pk), "page_size": "100"}).json()
    assert everything["count"] == shown + 5


# ---- connections -------------------------------------------------------------------------------


def test_psycopg_uses_its_compiled_implementation() -> None:
    assert psycopg.pq.__impl__ in {"binary", "c"}


def test_connections_are_reused_with_health_checks() -> None:
    database = settings.DATABASES["default"]
    conn_max_age = database["CONN_MAX_AGE"]
    assert conn_max_age is None or (isinstance(conn_max_age, int) and conn_max_age > 0)
    assert database["CONN_HEALTH_CHECKS"] is True


# ---- typo search: pages stable, counts estimated, queries constant -------------------------------


def test_typo_search_pages_neither_repeat_nor_skip_and_count_is_exact(anon: APIClient) -> None:
    # Eight equally near titles: ties of word similarity are broken by rating count (better known first), then id.
    movies = [MovieFactory.create(title=f"Matrix {word}", overview="") for word in "ABCDEFGH"]
    for movie, count in zip(movies, [3, 1, 4, 1, 5, 9, 2, 6], strict=True):
        Movie.objects.filter(pk=movie.pk).update(rating_count=count, rating_sum=count * 5)
        movie.rating_count = count
    MovieFactory.create(title="Heat", overview="")
    seen: list[int] = []
    bodies = [anon.get(URL, {"search": "matrx", "page_size": "3", "page": str(page)}).json() for page in (1, 2, 3)]
    for body in bodies:
        seen += [movie["id"] for movie in body["results"]]
    assert seen == [movie.pk for movie in sorted(movies, key=lambda movie: (-movie.rating_count, movie.pk))]
    # The typo probe returns the (at most SEARCH_CANDIDATES) candidates, so every page's count is exact.
    assert (bodies[0]["count"], bodies[0]["count_is_estimate"]) == (8, False)
    assert (bodies[2]["count"], bodies[2]["count_is_estimate"], bodies[2]["next"]) == (8, False, None)


def test_full_text_hits_are_not_mixed_with_typo_matches(anon: APIClient, catalogue: dict[str, Movie]) -> None:
    MovieFactory.create(title="Matrx", overview="")
    # `matrix` has full-text hits, so the trigram arm (which would also find "Matrx") is not used.
    assert ids(anon.get(URL, {"search": "matrix"})) == pk(catalogue, "matrix")
    assert ids(anon.get(URL, {"search": "matrx"}))[:1] != pk(catalogue, "matrix")


@pytest.mark.parametrize("text", ["matrix", "matrx", "zzqqxx", "the", "-matrix"])
@pytest.mark.parametrize("page_size", [1, 20])
def test_search_queries_do_not_grow_with_the_page(
    anon: APIClient, django_assert_max_num_queries: Any, text: str, page_size: int
) -> None:
    for n in range(25):
        MovieFactory.create(title=f"Matrix {n}", overview="")
    # Probe, page ids, rows, estimate, capped count.
    with django_assert_max_num_queries(5):
        response = anon.get(URL, {"search": text, "page_size": str(page_size)})
    assert len(ids(response)) == (page_size if "matr" in text and "-" not in text else 0)


# ---- stop words and bounded ranking ----------------------------------------------------------------


def test_stop_words_are_ignored_so_the_matrix_finds_the_matrix_first(
    anon: APIClient, catalogue: dict[str, Movie]
) -> None:
    reloaded = MovieFactory.create(title="Matrix Reloaded", overview="")
    writer = MovieFactory.create(title="Matrices", overview="A film about the matrix of a life.")
    found = ids(anon.get(URL, {"search": "the matrix"}))
    # "the" is not required (nor counted) in titles: the same movies as `matrix`, The Matrix first, titles first.
    assert found[0] == catalogue["matrix"].pk
    assert found.index(reloaded.pk) < found.index(writer.pk)
    assert sorted(found) == sorted(ids(anon.get(URL, {"search": "matrix"})))
    # Other languages' little words are not English stop words: they still match.
    french = MovieFactory.create(title="Le femme et la nuit", overview="")
    assert ids(anon.get(URL, {"search": "la nuit"})) == [french.pk]


@pytest.mark.parametrize(("text", "expected"), [("her", ["her"]), ("HER ", ["her"]), ("the", []), ("-matrix", [])])
def test_a_search_of_stop_words_only_looks_for_that_exact_title(
    anon: APIClient, catalogue: dict[str, Movie], text: str, expected: list[str]
) -> None:
    # "Her" has no word the index keeps (and "-matrix" none it can look up): the exact title, case aside, or nothing.
    MovieFactory.create(title="Her Story", overview="")
    body = anon.get(URL, {"search": text}).json()
    assert [movie["id"] for movie in body["results"]] == pk(catalogue, *expected)
    assert (body["count"], body["count_is_estimate"]) == (len(expected), False)


def test_ranking_is_bounded_to_the_first_candidates_and_says_so(
    anon: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 4)
    movies = [MovieFactory.create(title=f"Crimson {n}", overview="") for n in range(6)]
    overview_hit = MovieFactory.create(title="Other", overview="A crimson sky.")
    # Six title matches and one overview match, more than the four candidates: four titles are ranked and returned.
    pages = [anon.get(URL, {"search": "crimson", "page_size": "3", "page": str(page)}).json() for page in (1, 2)]
    seen = [movie["id"] for body in pages for movie in body["results"]]
    assert len(seen) == len(set(seen)) == 4
    assert set(seen) <= {movie.pk for movie in movies}
    assert (pages[0]["count"], pages[0]["count_is_estimate"]) == (4, True)
    # The last page knows the count too, and still says that it is not the number of matches.
    assert (pages[1]["count"], pages[1]["count_is_estimate"], pages[1]["next"]) == (4, True, None)
    assert anon.get(URL, {"search": "crimson", "page_size": "3", "page": "3"}).status_code == 404
    # Ranked within the candidates: equally near titles, so by id.
    assert seen == sorted(seen)
    # An explicit ordering is not a ranking: every match, in that order.
    by_year = ids(anon.get(URL, {"search": "crimson", "ordering": "year", "page_size": "100"}))
    assert sorted(by_year) == sorted([movie.pk for movie in movies] + [overview_hit.pk])


def test_typo_ranking_is_bounded_too(anon: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 2)
    for n in range(5):
        MovieFactory.create(title=f"Matrix {n}", overview="")
    body = anon.get(URL, {"search": "matrx", "page_size": "1"}).json()
    assert (body["count"], body["count_is_estimate"], len(body["results"])) == (2, True, 1)


# ---- title-first candidates ------------------------------------------------------------------------


def test_a_title_match_is_ranked_however_many_overviews_match_first(
    anon: APIClient, genres: dict[str, Genre], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 3)
    drama = genres["drama"]
    # More overview matches than candidates, stored before the title matches (so first in the GIN bitmap's order).
    crowd = [MovieFactory.create(title=f"Case {n}", overview="A detective story.", genres=[drama]) for n in range(6)]
    titled = MovieFactory.create(title="The Detective", overview="", genres=[drama])
    other_genre = MovieFactory.create(title="Detective Story", overview="")
    body = anon.get(URL, {"search": "detective"}).json()
    found = [movie["id"] for movie in body["results"]]
    # Both title matches are candidates and rank first; the overview matches fill the one slot left.
    assert set(found[:2]) == {titled.pk, other_genre.pk}
    assert len(found) == 3
    assert found[2] in {movie.pk for movie in crowd}
    assert (body["count"], body["count_is_estimate"]) == (3, True)
    # Filters apply to the title matches too: only the drama title, then two overview matches.
    found = ids(anon.get(URL, {"search": "detective", "genre": "drama"}))
    assert found[0] == titled.pk
    assert len(found) == 3
    assert other_genre.pk not in found


def test_more_title_matches_than_candidates_leaves_the_overviews_out(
    anon: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 2)
    for n in range(3):
        MovieFactory.create(title=f"Case {n}", overview="A detective story.")
    titled = {MovieFactory.create(title=f"Detective {n}", overview="").pk for n in range(3)}
    pages = [anon.get(URL, {"search": "detective", "page_size": "1", "page": str(page)}).json() for page in (1, 2)]
    seen = [movie["id"] for body in pages for movie in body["results"]]
    assert len(set(seen)) == 2
    assert set(seen) <= titled
    assert (pages[0]["count"], pages[0]["count_is_estimate"], pages[1]["next"]) == (2, True, None)


def test_a_title_match_must_match_the_whole_query(anon: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 2)
    for n in range(3):
        MovieFactory.create(title=f"Case {n}", overview="A crimson dawn.")
    # Its title matches `crimson -sky`, its overview does not: it is not a match, nor a candidate.
    excluded = MovieFactory.create(title="Crimson", overview="Under a grey sky.")
    tide = MovieFactory.create(title="Crimson Tide", overview="")
    body = anon.get(URL, {"search": "crimson -sky"}).json()
    found = [movie["id"] for movie in body["results"]]
    assert found[0] == tide.pk
    assert len(found) == 2
    assert excluded.pk not in found
    assert excluded.pk not in ids(anon.get(URL, {"search": "crimson -sky", "ordering": "title"}))


def test_every_match_is_a_candidate_when_there_are_few(anon: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "SEARCH_CANDIDATES", 4)
    overview_hits = [MovieFactory.create(title=f"Case {n}", overview="A detective story.").pk for n in range(2)]
    titled = [MovieFactory.create(title=f"Detective {n}", overview="").pk for n in range(2)]
    body = anon.get(URL, {"search": "detective"}).json()
    # Titles first (ties by id), then the overview matches; nothing counted twice, the count exact.
    assert [movie["id"] for movie in body["results"]] == titled + overview_hits
    assert (body["count"], body["count_is_estimate"]) == (4, False)
