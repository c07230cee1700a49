"""Two tabs of a real browser (headless Chromium from Debian) editing one movie in the admin on a live gunicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from conftest import curators_group, headless_chromium
from movies.tests.factories import MovieFactory

pytestmark = [pytest.mark.live, pytest.mark.slow]

PASSWORD = "a-long-enough-password-7"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (conftest.headless_chromium) that waits for elements to appear."""
    with headless_chromium() as driver:
        driver.implicitly_wait(10)
        yield driver


def wait_for_text(driver: Any, text: str) -> None:
    """Wait until the page shows text: a click returns before the next page has loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: text in d.page_source)


def save_title(driver: Any, title: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "id_title")
    field.clear()
    field.send_keys(title)
    driver.find_element(By.NAME, "_save").click()


def test_the_second_tab_to_save_gets_the_conflict_and_overwrites_nothing(
    transactional_db: None, live_server_factory: Callable[..., Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    curator = User.objects.create_user("browser-curator", password=PASSWORD, is_staff=True)
    curator.groups.add(curators_group())
    movie = MovieFactory.create(title="The Matrix", year=1999)
    server = live_server_factory(workers=2, env={"STATIC_MANIFEST": "0"})
    change_url = f"{server.url}/admin/movies/movie/{movie.pk}/change/"

    browser.get(f"{server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(curator.username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    wait_for_text(browser, "Site administration")

    browser.get(change_url)
    tab_a = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(change_url)

    save_title(browser, "Saved in tab B")
    wait_for_text(browser, "was changed successfully")

    browser.switch_to.window(tab_a)
    save_title(browser, "Saved in tab A")

    wait_for_text(browser, "changed by someone else")
    error = browser.find_element(By.CSS_SELECTOR, ".errornote, .errorlist.nonfield").text
    assert error
    page = browser.page_source
    assert "changed by someone else" in page
    assert "you opened version 1, and it is now at version 2" in page
    movie.refresh_from_db()
    assert (movie.title, movie.version) == ("Saved in tab B", 2)
    # The admin's Content-Security-Policy (movieapi/middleware.py) blocked nothing it needs.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert [message for message in console if "Content Security Policy" in message] == []
