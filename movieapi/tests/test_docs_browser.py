"""The docs pages in a real browser (headless Chromium) on a live gunicorn: they render, and nothing they load
comes from another host (docs/http.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import LiveServer, headless_chromium

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (conftest.headless_chromium) that records its network events."""
    with headless_chromium(network_log=True) as driver:
        yield driver


def network_events(driver: Any) -> list[dict[str, Any]]:
    """The DevTools Network.* events logged since the last call."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [event for event in events if event["method"].startswith("Network.")]


@pytest.mark.parametrize("path", ["/api/redoc/", "/api/docs/"])
def test_the_docs_pages_render_and_load_nothing_from_another_host(
    transactional_db: None, live_server_factory: Callable[..., LiveServer], browser: Any, path: str
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    server = live_server_factory(workers=2, env={"STATIC_MANIFEST": "0"})
    origin = urlsplit(server.url).netloc
    browser.get(server.url + path)
    # An operation's summary from the schema: the page fetched the schema and rendered it.
    WebDriverWait(browser, 30).until(lambda driver: "List movies" in driver.page_source)

    events = network_events(browser)
    sent = {
        event["params"]["requestId"]: event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
        and event["params"].get("documentURL", "").startswith(server.url)
        and event["params"]["request"]["url"].startswith(("http:", "https:"))
    }
    answered = {event["params"]["requestId"] for event in events if event["method"] == "Network.responseReceived"}
    blocked = {
        event["params"]["requestId"]: event["params"].get("blockedReason")
        for event in events
        if event["method"] == "Network.loadingFailed"
    }
    assert any(urlsplit(url).path == "/api/schema/" for url in sent.values()), sent
    elsewhere = {request: url for request, url in sent.items() if urlsplit(url).netloc != origin}
    # Redoc's bundle asks for the Redocly logo from its CDN; the page's policy stops it in the browser.
    assert not elsewhere.keys() & answered, elsewhere
    assert all(blocked.get(request) == "csp" for request in elsewhere), (elsewhere, blocked)
    assert not any("fonts.googleapis.com" in url or "fonts.gstatic.com" in url for url in sent.values())
