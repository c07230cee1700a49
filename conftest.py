"""Fixtures shared by every test package: API clients, users, and a live gunicorn on the test database."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from knox.models import AuthToken
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent
# The same permissions migration 0002 gives the `curators` group.
CATALOGUE_PERMISSIONS = [
    *(
        f"{action}_{model}"
        for model in ("movie", "genre", "person", "castmember")
        for action in ("add", "change", "delete", "view")
    ),
    "view_rating",
]


# ---- users and clients -------------------------------------------------------------------------


def curators_group() -> Group:
    """The `curators` group with its permissions (transactional tests flush what migrations made)."""
    group, _ = Group.objects.get_or_create(name="curators")
    group.permissions.set(
        Permission.objects.filter(content_type__app_label="movies", codename__in=CATALOGUE_PERMISSIONS)
    )
    return group


def bearer_client(user: User) -> APIClient:
    """An APIClient that sends a fresh bearer token for user."""
    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user("plain", "plain@example.com", "a-long-enough-password-1")


@pytest.fixture
def curator(db: None) -> User:
    curator = User.objects.create_user("curator", "curator@example.com", "a-long-enough-password-2")
    curator.groups.add(curators_group())
    return curator


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("staff", "staff@example.com", "a-long-enough-password-3", is_staff=True)


@pytest.fixture
def user_client(user: User) -> APIClient:
    return bearer_client(user)


@pytest.fixture
def curator_client(curator: User) -> APIClient:
    return bearer_client(curator)


@pytest.fixture
def staff_client(staff: User) -> APIClient:
    return bearer_client(staff)


@pytest.fixture(autouse=True, scope="session")
def _fresh_throttle_buckets() -> None:
    """Rate-limit counters of this run (in-process and live servers) start empty: a prefix no run used."""
    prefix = f"movieapi-test-{os.urandom(6).hex()}:"
    os.environ["THROTTLE_KEY_PREFIX"] = prefix
    settings.THROTTLE_KEY_PREFIX = prefix


@pytest.fixture(autouse=True)
def _fresh_count_estimates() -> None:
    """Each test's lists ask PostgreSQL for estimates afresh (workers reuse them for ESTIMATE_TTL_SECONDS)."""
    from movieapi import pagination

    pagination._table_estimates.clear()
    pagination._planner_estimates.clear()


# ---- a live gunicorn ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def _embedded_server_url() -> str:
    """The embedded server's URL, asked once per test run: asking starts (or finds) the server, and the change
    feed's writer threads connect often."""
    from movieapi.embedded_db import embedded_database_url

    return embedded_database_url(settings.DATA_DIR / "postgres")


def live_database_url() -> str:
    """The URL of the test database pytest-django created (DATABASE_URL, or the embedded server's)."""
    from django.db import connection

    base = os.environ.get("DATABASE_URL", "")
    if not base:
        base = _embedded_server_url()
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@dataclass
class LiveServer:
    """A gunicorn running movieapi.wsgi in its own process group."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_gunicorn(
    tmp_dir: Path, *, workers: int = 4, env: dict[str, str] | None = None, args: list[str] | None = None
) -> LiveServer:
    """Start `gunicorn movieapi.wsgi -c gunicorn.conf.py` on a free port and wait until /healthz answers."""
    port = free_port()
    server_env = {
        **os.environ,
        "DATABASE_URL": live_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(workers),
        # Generous limits so that tests not about throttling are never throttled.
        "THROTTLE_ANON_RATE": "1000000/min",
        "THROTTLE_USER_RATE": "1000000/min",
        "THROTTLE_AUTH_RATE": "1000000/min",
        "THROTTLE_GLOBAL_RATE": "1000000/s",
        "THROTTLE_ADMIN_LOGIN_IP_RATE": "1000000/min",
        "THROTTLE_ADMIN_LOGIN_USERNAME_RATE": "1000000/min",
        **(env or {}),
    }
    log = tmp_dir / f"gunicorn-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "movieapi.wsgi", "-c", "gunicorn.conf.py", *(args or [])],
            cwd=ROOT,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log=log, env=server_env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not become healthy:\n{server.output()}")


@pytest.fixture(scope="session")
def live_server_factory(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveServer]]:
    """Start gunicorns on the test database; all are stopped at the end of the session."""
    servers: list[LiveServer] = []
    tmp_dir = tmp_path_factory.mktemp("gunicorn")

    def start(**kwargs: Any) -> LiveServer:
        with django_db_blocker.unblock():
            server = start_gunicorn(tmp_dir, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_gunicorn(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """One shared gunicorn with 4 workers; tests using it also need `transactional_db`."""
    return live_server_factory(workers=4)


# ---- a headless browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextlib.contextmanager
def headless_chromium(*, network_log: bool = False) -> Iterator[Any]:
    """Headless Chromium through Selenium with a fresh profile (`make install-browser` installs it); with
    network_log, the DevTools network events are kept for `driver.get_log("performance")`; the console always is,
    for `driver.get_log("browser")`."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: `make install-browser` should have installed them")
        pytest.skip("chromium / chromium-driver not installed (make install-browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium keeps calling out, and this machine refuses every call.
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The console is kept for `driver.get_log("browser")` (a Content-Security-Policy violation shows there).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if network_log else {})})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
