"""`python manage.py …` just works: settings read `.env` (the environment wins) and the key `make run` generated;
production without a usable key is one line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PRINT_SETTINGS = "from django.conf import settings; print(settings.SECRET_KEY); print(','.join(settings.ALLOWED_HOSTS))"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """An empty folder for this test's .env and .data (the checkout's own must not count)."""
    (tmp_path / "data").mkdir()
    return tmp_path


def manage(local: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a controlled environment: only PATH, DATABASE_URL, the test's .env and data folder, and env."""
    controlled = {
        "PATH": os.environ["PATH"],
        # None of these commands connects; a fixed URL keeps the embedded PostgreSQL from starting for them.
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/settings-only",
        "MOVIEAPI_ENV_FILE": str(local / ".env"),
        "MOVIEAPI_DATA_DIR": str(local / "data"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=controlled, capture_output=True, text=True, timeout=120
    )


def new_key() -> str:
    return secrets.token_urlsafe(50)


def test_env_file_gives_the_secret_key_and_settings(local: Path) -> None:
    key = new_key()
    (local / ".env").write_text(
        f"# a comment\nDJANGO_SECRET_KEY={key}\nDJANGO_ALLOWED_HOSTS='api.example.com,localhost'\n", encoding="utf-8"
    )
    assert manage(local, "check").returncode == 0
    result = manage(local, "shell", "-v", "0", "-c", PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [key, "api.example.com,localhost"]


def test_the_environment_wins_over_the_env_file(local: Path) -> None:
    (local / ".env").write_text(f"DJANGO_SECRET_KEY={new_key()}\nDJANGO_ALLOWED_HOSTS=from-file\n", encoding="utf-8")
    key = new_key()
    result = manage(local, "shell", "-v", "0", "-c", PRINT_SETTINGS, DJANGO_SECRET_KEY=key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [key, "from-file"]
    result = manage(local, "shell", "-v", "0", "-c", PRINT_SETTINGS, DJANGO_SECRET_KEY=key, DJANGO_ALLOWED_HOSTS="env")
    assert result.stdout.split() == [key, "env"]


@pytest.mark.parametrize("debug", ["0", "1"])
def test_without_a_key_the_one_make_run_generated_is_used(local: Path, debug: str) -> None:
    key = new_key()
    (local / "data" / "secret_key").write_text(key + "\n", encoding="utf-8")
    result = manage(local, "shell", "-v", "0", "-c", PRINT_SETTINGS, DJANGO_DEBUG=debug)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "manage.py: DJANGO_SECRET_KEY is not set"),
        ("short-key", "manage.py: DJANGO_SECRET_KEY is too weak"),
        ("a" * 60, "manage.py: DJANGO_SECRET_KEY is too weak"),
    ],
)
def test_production_without_a_usable_key_is_one_clear_line(local: Path, key: str, message: str) -> None:
    env = {"DJANGO_SECRET_KEY": key} if key else {}
    result = manage(local, "check", DJANGO_DEBUG="0", **env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "DJANGO_SECRET_KEY is not set"),
        ("short-key", "DJANGO_SECRET_KEY is too weak"),
        ("django-insecure-" + "k" * 50, "DJANGO_SECRET_KEY is too weak"),
    ],
)
def test_gunicorn_without_a_usable_key_in_production_stops_in_one_line(local: Path, key: str, message: str) -> None:
    """The master checks the settings before any worker boots: one logged line and exit 1, no traceback loop."""
    controlled = {
        "PATH": os.environ["PATH"],
        "MOVIEAPI_ENV_FILE": str(local / ".env"),
        "MOVIEAPI_DATA_DIR": str(local / "data"),
        "DJANGO_DEBUG": "0",
        "PORT": "0",
        "TMPDIR": str(local),  # where gunicorn.conf.py makes its metrics folder
        **({"DJANGO_SECRET_KEY": key} if key else {}),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "movieapi.wsgi", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=controlled,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert message in output
    assert "Traceback" not in output
    assert not list(local.glob("movieapi-metrics-*"))  # removed on the way out
    assert "Booting worker" not in output


@pytest.mark.parametrize("command", [("runserver", "--noreload", "127.0.0.1:0"), ("check",)])
def test_manage_py_refuses_a_short_key_in_production(local: Path, command: tuple[str, ...]) -> None:
    result = manage(local, *command, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="s3cr3t-but-short")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("manage.py: DJANGO_SECRET_KEY is too weak"), result.stderr


PRINT_HSTS = "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD)"


@pytest.mark.parametrize(("preload", "expected"), [(None, "31536000 False"), ("1", "31536000 True")])
def test_hsts_preload_is_opt_in(local: Path, preload: str | None, expected: str) -> None:
    """Preloading is hard to undo (browsers ship the list), so production sends HSTS without it unless asked."""
    env = {"DJANGO_HSTS_PRELOAD": preload} if preload else {}
    result = manage(local, "shell", "-v", "0", "-c", PRINT_HSTS, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=new_key(), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_socket_folder_in_the_url_is_the_host_that_dbshell_uses(local: Path) -> None:
    """The embedded server's URL names its socket folder as `?host=`; dbshell (psql) needs it as HOST."""
    shown = (
        "from django.db import connection as c; "
        "print(c.settings_dict['HOST'], c.client.settings_to_cmd_args_env(c.settings_dict, [])[0])"
    )
    result = manage(
        local,
        "shell",
        "-v",
        "0",
        "-c",
        shown,
        DATABASE_URL="postgresql://postgres:@/movieapi?host=/srv/pg-sockets",
        DJANGO_DEBUG="1",
    )
    assert result.returncode == 0, result.stderr
    host, args = result.stdout.split(" ", 1)
    assert host == "/srv/pg-sockets"
    assert "'-h', '/srv/pg-sockets'" in args
