"""The admin's movie history (movies/admin_history.py): versions with diffs, the revert button, conflict messages."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import User
from django.test import Client

from movies import services
from movies.models import Movie
from movies.tests.history_recording import record
from movies.tests.test_admin import change_url, form_data
from movies.versions import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(curator: User) -> Client:
    curator.is_staff = True
    curator.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    return client


@pytest.fixture
def edited(movie: Movie) -> Movie:
    """The Matrix at version 3: runtime 137, then the title changed, each version recorded."""
    record(movie.pk)
    services.movie_update(
        movie_id=movie.pk, expected_version=1, data={"runtime": 137}, actor=Actor("user", id=1, username="alice")
    )
    record(movie.pk, actor={"kind": "user", "id": 1, "username": "alice"})
    services.movie_update(movie_id=movie.pk, expected_version=2, data={"title": "Matrix"}, actor=Actor.importer("imdb"))
    record(movie.pk, actor={"kind": "import", "source": "imdb"})
    return movie


def history_url(movie: Movie) -> str:
    return f"/admin/movies/movie/{movie.pk}/history/"


def csrf(client: Client, url: str) -> str:
    client.get(url)
    return client.cookies["csrftoken"].value


def test_the_history_page_lists_versions_with_who_and_what_changed(web: Client, edited: Movie) -> None:
    page = html.unescape(web.get(history_url(edited)).content.decode())
    assert "runtime: 136 → 137" in page
    assert "title: The Matrix → Matrix" in page
    assert "alice (API)" in page
    assert "import (imdb)" in page
    assert page.count("Revert to this version") == 2  # not the current version
    assert f'href="/admin/movies/movie/{edited.pk}/history/"' in web.get(change_url(edited)).content.decode()


def test_the_revert_button_writes_a_new_version(web: Client, edited: Movie) -> None:
    token = csrf(web, history_url(edited))
    refused = web.post(f"/admin/movies/movie/{edited.pk}/revert/1/", {"based_on": "3"})
    assert refused.status_code == 403  # no CSRF token
    response = web.post(
        f"/admin/movies/movie/{edited.pk}/revert/1/", {"based_on": "3", "csrfmiddlewaretoken": token}, follow=True
    )
    assert "Reverted to version 1" in response.content.decode()
    edited.refresh_from_db()
    assert (edited.title, edited.runtime, edited.version) == ("The Matrix", 136, 4)


def test_a_stale_revert_is_refused_with_what_changed(web: Client, edited: Movie) -> None:
    token = csrf(web, history_url(edited))
    response = web.post(
        f"/admin/movies/movie/{edited.pk}/revert/1/", {"based_on": "2", "csrfmiddlewaretoken": token}, follow=True
    )
    page = html.unescape(response.content.decode())
    assert "Nothing was reverted" in page
    assert "title: The Matrix → Matrix" in page
    edited.refresh_from_db()
    assert edited.version == 3


def test_the_conflict_message_of_a_stale_form_shows_what_changed(web: Client, movie: Movie) -> None:
    record(movie.pk)
    stale = form_data(web, movie, title="Curator A's title")
    services.movie_update(
        movie_id=movie.pk, expected_version=1, data={"runtime": 140}, actor=Actor("user", id=1, username="bob")
    )
    record(movie.pk, actor={"kind": "user", "id": 1, "username": "bob"})
    page = html.unescape(web.post(change_url(movie), stale).content.decode())
    assert "it is now at version 2" in page
    assert "Version 2 by bob (API)" in page
    assert "runtime: 136 → 140" in page


def test_history_and_revert_need_the_change_permission(movie: Movie) -> None:
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    client = Client()
    client.force_login(viewer)
    record(movie.pk)
    assert client.get(history_url(movie)).status_code == 403
    assert client.post(f"/admin/movies/movie/{movie.pk}/revert/1/", {"based_on": "1"}).status_code == 403
