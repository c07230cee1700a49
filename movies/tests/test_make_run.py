"""`make run` on a catalogue that holds data changes nothing: the sample loads into an empty catalogue only."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from conftest import ROOT, live_database_url
from movies.models import Movie
from movies.tests.factories import MovieFactory

SAMPLE = ROOT / "movies" / "fixtures" / "sample_movies.json"


def make_run_commands() -> list[list[str]]:
    """The `manage.py` commands of the Makefile's `run` recipe, in order (collectstatic writes files, not data)."""
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no run: target in the Makefile"
    commands = [shlex.split(args) for args in re.findall(r"manage\.py ([^&;\\\n]+)", recipe.group(1))]
    return [command for command in commands if command[0] != "collectstatic"]


def start(tmp_path: Path) -> str:
    """What `make run` does before serving, against the test database; the commands' output."""
    env = {
        **os.environ,
        "DATABASE_URL": live_database_url(),
        "MOVIEAPI_ENV_FILE": str(tmp_path / ".env"),
        "MOVIEAPI_DATA_DIR": str(tmp_path),
    }
    output = ""
    for command in make_run_commands():
        result = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        output += result.stdout + result.stderr
    return output


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_restart_keeps_a_curators_edit(tmp_path: Path, curator_client: APIClient) -> None:
    films = len(json.loads(SAMPLE.read_bytes()))
    first = start(tmp_path)
    assert Movie.objects.count() == films

    movie = Movie.objects.order_by("id").first()
    assert movie is not None
    url = f"/api/v1/movies/{movie.pk}/"
    etag = curator_client.get(url)["ETag"]
    edit = {"runtime": (movie.runtime or 90) + 1, "overview": "A curator's overview."}
    response = curator_client.patch(url, edit, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.content
    edited = response.json()

    second = start(tmp_path)
    after = curator_client.get(url).json()
    assert (after["runtime"], after["overview"], after["version"]) == (edit["runtime"], edit["overview"], 2)
    assert after == edited
    assert Movie.objects.count() == films
    assert set(Movie.objects.exclude(pk=movie.pk).values_list("version", flat=True)) == {1}
    assert f"catalogue empty: loading the bundled sample ({films:,} films)" in first
    assert "catalogue not empty: skipped loading the bundled sample" in second


@pytest.mark.django_db
def test_load_sample_leaves_any_catalogue_with_a_movie_alone(tmp_path: Path) -> None:
    kept = MovieFactory.create(title="Only one", year=2001)
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        call_command("load_sample", stdout=stream)
    assert "skipped" in out.read_text()
    assert list(Movie.objects.values_list("pk", "version")) == [(kept.pk, 1)]
