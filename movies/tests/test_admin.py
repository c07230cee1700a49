"""The curators' admin: versioned saves, conflicts, constant queries, permissions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from movies import services
from movies.models import Genre, Movie, Person
from movies.tests.factories import CastMemberFactory, MovieFactory, PersonFactory
from movies.versions import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_curator(curator: User) -> User:
    """The conftest curator, able to enter the admin (create_curator sets is_staff)."""
    curator.is_staff = True
    curator.save()
    return curator


@pytest.fixture
def web(admin_curator: User) -> Client:
    client = Client()
    client.force_login(admin_curator)
    return client


def change_url(movie: Movie) -> str:
    return f"/admin/movies/movie/{movie.pk}/change/"


def form_data(client: Client, movie: Movie, **changes: Any) -> dict[str, Any]:
    """The change form as a browser would submit it, read from the page."""
    page = client.get(change_url(movie)).content.decode()
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input[^>]*\sname="([^"]+)"[^>]*value="([^"]*)"', page):
        data[name] = value
    for name, body in re.findall(r'<textarea[^>]*\sname="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        data[name] = body.strip()
    for name, options in re.findall(r'<select[^>]*\sname="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        selected = re.findall(r'<option value="([^"]*)"[^>]*selected', options)
        if selected:
            data[name] = selected if name in ("genres", "directors") else selected[0]
    data.pop("_save", None)
    data.update(changes)
    return data


def test_saving_through_the_admin_bumps_the_version_once_and_writes_the_cast(
    web: Client, movie: Movie, people: list[Person]
) -> None:
    newcomer = PersonFactory.create(name="Hugo Weaving")
    data = form_data(web, movie, title="The Matrix (1999 cut)")
    assert data["based_on_version"] == "1"
    # Reorder: Trinity first; add Smith at the end.
    data["cast-0-position"], data["cast-1-position"] = "5", "1"
    data.update({"cast-2-person": str(newcomer.pk), "cast-2-character": "Smith", "cast-2-position": "9"})

    response = web.post(change_url(movie), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("The Matrix (1999 cut)", 2)
    assert [(c.character, c.order) for c in movie.cast.order_by("order")] == [("Trinity", 0), ("Neo", 1), ("Smith", 2)]
    assert sorted(movie.genres.values_list("slug", flat=True)) == ["action", "science-fiction"]


def test_a_stale_form_gets_a_conflict_error_naming_the_current_version(web: Client, movie: Movie) -> None:
    stale = form_data(web, movie, title="Curator A's title")
    services.movie_update(
        movie_id=movie.pk, expected_version=1, data={"title": "Saved by the API"}, actor=Actor("user", 1, "api")
    )

    response = web.post(change_url(movie), stale)

    assert response.status_code == 200
    page = response.content.decode()
    assert "changed by someone else" in page
    assert "it is now at version 2" in page
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("Saved by the API", 2)


def test_two_curators_on_the_same_movie_only_the_first_save_wins(
    web: Client, movie: Movie, admin_curator: User
) -> None:
    other = Client()
    other.force_login(User.objects.create_user("second", password="x", is_staff=True, is_superuser=True))
    form_a = form_data(web, movie, title="A")
    form_b = form_data(other, movie, title="B")

    assert web.post(change_url(movie), form_a).status_code == 302
    response = other.post(change_url(movie), form_b)

    assert response.status_code == 200
    assert "it is now at version 2" in response.content.decode()
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("A", 2)


def test_adding_a_movie_through_the_admin_starts_at_version_1(web: Client, genres: dict[str, Genre]) -> None:
    person = PersonFactory.create(name="Greta Gerwig")
    response = web.post(
        "/admin/movies/movie/add/",
        {
            "title": "Lady Bird",
            "year": "2017",
            "runtime": "94",
            "overview": "",
            "imdb_id": "",
            "genres": [str(genres["drama"].pk)],
            "directors": [str(person.pk)],
            "cast-TOTAL_FORMS": "1",
            "cast-INITIAL_FORMS": "0",
            "cast-0-person": str(person.pk),
            "cast-0-character": "Cameo",
            "cast-0-position": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    movie = Movie.objects.get(title="Lady Bird")
    assert (movie.version, movie.imdb_id, movie.cast.get().character) == (1, None, "Cameo")


def test_deleting_through_the_admin(web: Client, movie: Movie) -> None:
    response = web.post(f"/admin/movies/movie/{movie.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Movie.objects.filter(pk=movie.pk).exists()


def test_a_person_with_credits_cannot_be_deleted(web: Client, movie: Movie, people: list[Person]) -> None:
    response = web.post(f"/admin/movies/person/{people[0].pk}/delete/", {"post": "yes"}, follow=True)
    assert "credit" in response.content.decode()
    assert Person.objects.filter(pk=people[0].pk).exists()


def changelist_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("query", ["", "?q=film", "?genre=drama&decade=1990&rating=none"])
def test_changelist_queries_do_not_grow_with_the_page(web: Client, genres: dict[str, Genre], query: str) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            movie = MovieFactory.create(title="Film", genres=[genres["drama"], genres["action"]])
            CastMemberFactory.create(movie=movie, order=0)

    add(2)
    few = changelist_queries(web, "/admin/movies/movie/" + query)
    add(30)
    many = changelist_queries(web, "/admin/movies/movie/" + query)
    assert few == many
    with CaptureQueriesContext(connection) as queries:
        web.get("/admin/movies/movie/" + query)
    # No exact count over the whole table: at most a capped count.
    assert not any(re.search(r'SELECT COUNT\(\*\) AS "__count" FROM "movies_movie"\s*$', q["sql"]) for q in queries)


def test_search_is_the_apis_search(web: Client, movie: Movie) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = web.get("/admin/movies/movie/?q=matr")
    assert "The Matrix" in response.content.decode()
    # A word begun (`matr`) is not a word of any title: the typo arm's trigrams find it, accent-blind and indexed.
    assert any("immutable_unaccent" in q["sql"] for q in queries), [q["sql"] for q in queries]
    autocomplete = web.get(
        "/admin/autocomplete/",
        {"term": "keanu", "app_label": "movies", "model_name": "movie", "field_name": "directors"},
    )
    assert [r["text"] for r in autocomplete.json()["results"]] == ["Keanu Reeves"]


@pytest.mark.parametrize("field_name", ["genres", "directors"])
@pytest.mark.parametrize("term", ["\x00", "kea\x00nu"])
def test_autocomplete_with_a_nul_finds_nothing(web: Client, movie: Movie, field_name: str, term: str) -> None:
    """A NUL in `term` reached PostgreSQL (DataError, a 500); no stored text holds one, so nothing matches."""
    autocomplete = web.get(
        "/admin/autocomplete/",
        {"term": term, "app_label": "movies", "model_name": "movie", "field_name": field_name},
    )
    assert autocomplete.status_code == 200
    assert autocomplete.json()["results"] == []


@pytest.mark.parametrize("changelist", ["movie", "person", "genre"])
def test_changelist_search_with_a_nul_is_refused_by_the_admin(web: Client, movie: Movie, changelist: str) -> None:
    response = web.get(f"/admin/movies/{changelist}/", {"q": "\x00"})
    assert response.status_code == 200
    assert "Null characters are not allowed." in response.content.decode()


def test_curators_can_view_ratings_but_not_change_them_nor_users(web: Client) -> None:
    assert web.get("/admin/movies/rating/").status_code == 200
    assert web.get("/admin/movies/rating/add/").status_code == 403
    assert web.get("/admin/auth/user/").status_code == 403
    assert web.get("/admin/auth/group/").status_code == 403
    for model in ("movie", "genre", "person"):
        assert web.get(f"/admin/movies/{model}/").status_code == 200
        assert web.get(f"/admin/movies/{model}/add/").status_code == 200


def test_staff_without_the_group_sees_no_catalogue(staff: User) -> None:
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/movies/movie/").status_code == 403


def test_a_plain_user_cannot_enter_the_admin(user: User) -> None:
    client = Client()
    client.force_login(user)
    assert client.get("/admin/movies/movie/").status_code == 302  # to the login page


def test_create_curator_makes_staff(db: None) -> None:
    from django.core.management import call_command

    call_command(
        "create_curator", "newcurator", "--password", "a-long-enough-password-9", stdout=__import__("io").StringIO()
    )
    user = User.objects.get(username="newcurator")
    assert user.is_staff
    assert user.groups.filter(name="curators").exists()


def test_a_write_landing_between_the_form_check_and_the_save_is_not_overwritten(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form's check passed, then another connection committed version 2: the atomic write refuses."""
    import psycopg

    from conftest import curators_group, live_database_url

    curator = User.objects.create_user("racer", password="x", is_staff=True)
    curator.groups.add(curators_group())
    client = Client()
    client.force_login(curator)
    movie = MovieFactory.create(title="Original")
    data = form_data(client, movie, title="From the admin")
    real_update = services.movie_update
    raced: list[bool] = []

    def update_after_a_rival(**kwargs: Any) -> services.MovieWritten:
        if not raced:
            raced.append(True)
            with psycopg.connect(live_database_url(), autocommit=True) as rival:
                rival.execute(
                    "UPDATE movies_movie SET title = 'Rival', version = version + 1 WHERE id = %s", [movie.pk]
                )
        return real_update(**kwargs)

    monkeypatch.setattr(services, "movie_update", update_after_a_rival)
    response = client.post(change_url(movie), data)

    assert response.status_code == 200
    assert "it is now at version 2" in response.content.decode()
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("Rival", 2)


def test_an_admin_save_records_the_curator_for_the_fields_it_changed_and_shows_provenance(
    web: Client, movie: Movie
) -> None:
    """Provenance is visible on the change page; a save claims only what the curator changed (docs/loading-data.md)."""
    Movie.objects.filter(pk=movie.pk).update(field_sources={"title": "imdb", "runtime": "ours:sample_movies.json"})
    page = web.get(change_url(movie)).content.decode()
    assert "Field sources" in page
    assert "title: imdb, year: unknown, runtime: ours:sample_movies.json" in page

    response = web.post(change_url(movie), form_data(web, movie, runtime="140"))

    assert response.status_code == 302, response.content.decode()[:3000]
    movie.refresh_from_db()
    assert (movie.runtime, movie.version) == (140, 2)
    assert movie.field_sources == {"title": "imdb", "runtime": "curator"}
