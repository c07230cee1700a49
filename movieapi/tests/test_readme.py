"""The README tells the truth about what it can check against the repository itself."""

from __future__ import annotations

import json
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_no_reference_to_files_outside_the_repository() -> None:
    docs = [README, *(path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md"))]
    for text in docs:
        assert not re.findall(r"(?<![\w.])\.\./[\w./-]+|/work/\w+", text)


def test_the_sample_size_is_the_fixtures() -> None:
    films = len(json.loads((ROOT / "movies" / "fixtures" / "sample_movies.json").read_bytes()))
    stated = re.findall(r"sample_movies\.json`, ([\d,]+\+?) real films", README)
    assert stated == [f"{films:,}"]


def test_what_make_test_needs_is_said_and_installed_by_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    prerequisites = re.search(r"^test: (.*)$", makefile, re.MULTILINE)
    assert prerequisites
    assert {"install-browser", "install-redis"} <= set(prerequisites.group(1).split())
    for package in ("redis-server", "chromium", "chromium-driver"):
        assert package in makefile
        assert f"`{package}`" in README
