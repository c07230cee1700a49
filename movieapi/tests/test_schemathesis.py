"""schemathesis against a live gunicorn: the schema says exactly what the server accepts and answers.

Every check and every phase (examples, coverage, fuzzing, stateful), with a fixed seed, once as a curator (the
token fetched by logging in, again whenever a run logs it out) and once anonymous. The exceptions schemathesis
is told about are in schemathesis.toml, each a rule the server checks against its data. SCHEMATHESIS_SEED and
SCHEMATHESIS_MAX_EXAMPLES run it with another seed or more examples (docs/openapi.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from conftest import ROOT, LiveServer, curators_group
from movies.models import CastMember, Genre, Movie, Person

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261124"))
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
CURATOR_PASSWORD = "a-long-enough-password-2"

# The curator's run logs in through the API and again whenever an answer is 401 (a run may log itself out).
CURATOR_AUTH = """
[auth.dynamic.openapi.knoxApiToken]
path = "/api/v1/tokens/"
payload = {{ username = "{username}", password = "{password}" }}
extract_selector = "/token"
"""


def seed_catalogue() -> User:
    """A few genres, people and movies, a plain user, and the curator the run logs in as."""
    drama, _ = Genre.objects.get_or_create(slug="drama", defaults={"name": "Drama"})
    genres = [drama, Genre.objects.get_or_create(slug="thriller", defaults={"name": "Thriller"})[0]]
    people = [
        Person.objects.create(name="Lana Wachowski", imdb_id="nm0905154"),
        Person.objects.create(name="Keanu Reeves", imdb_id="nm0000206"),
        Person.objects.create(name="Jean Reno"),
    ]
    for number, (title, year) in enumerate([("The Matrix", 1999), ("Léon", 1994), ("Amélie", 2001)]):
        movie = Movie.objects.create(title=title, year=year, runtime=100 + number, imdb_id=f"tt{1000000 + number}")
        movie.genres.set(genres[: number + 1] if number < 2 else [drama])
        movie.directors.set(people[:1])
        CastMember.objects.create(movie=movie, person=people[1 + number % 2], character="Someone", order=0)
    User.objects.create_user("plain", "plain@example.com", "a-long-enough-password-1")
    curator = User.objects.create_user("curator", "curator@example.com", CURATOR_PASSWORD)
    curator.groups.add(curators_group())
    return curator


def run_schemathesis(server: LiveServer, config: Path) -> subprocess.CompletedProcess[str]:
    """One schemathesis run of every check and phase against the server's schema. The checks are enabled in
    schemathesis.toml, not with --checks: a command-line choice would override its per-operation exceptions."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{server.url}/api/schema/",
            "--phases=examples,coverage,fuzzing,stateful",
            f"--seed={SEED}",
            f"--max-examples={MAX_EXAMPLES}",
            "--generation-database=none",
            "--workers=1",  # hypothesis reads lambda sources through ast, which is not thread-safe on 3.11
            "--no-color",
        ],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.mark.parametrize("identity", ["curator", "anonymous"])
def test_schemathesis_finds_nothing(
    identity: str, live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    curator = seed_catalogue()
    server = live_server_factory(workers=2)
    config = (ROOT / "schemathesis.toml").read_text()
    if identity == "curator":
        config += CURATOR_AUTH.format(username=curator.username, password=CURATOR_PASSWORD)
    (tmp_path / "schemathesis.toml").write_text(config)
    result = run_schemathesis(server, tmp_path / "schemathesis.toml")
    report = result.stdout[-20000:] + result.stderr[-5000:]
    errors = [line for line in server.output().splitlines() if "Traceback" in line or '"level": "ERROR"' in line]
    assert result.returncode == 0, f"schemathesis ({identity}, seed {SEED}) failed:\n{report}\n\nserver: {errors}"
