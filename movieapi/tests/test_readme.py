"""The README tells the truth about what it can check against the repository itself."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

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
    assert {"install-browser", "install-redis", "install-nginx"} <= set(prerequisites.group(1).split())
    for package in ("redis-server", "chromium", "chromium-driver", "nginx"):
        assert package in makefile
        assert f"`{package}`" in README


# ---- links and the project layout --------------------------------------------------------------------------

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file: lowercased, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(path.read_text(encoding="utf-8")), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(page: Path) -> list[str]:
    """The relative links of a page whose file or anchor does not exist."""
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        linked = (page.parent / name).resolve() if name else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve_to_files_and_headings(page: Path) -> None:
    assert _broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section: `with code`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-section-with-code) [self](#title) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [no heading](other.md#nowhere)\n```\n[in code](ignored.md)\n```\n# Title\n",
        encoding="utf-8",
    )
    assert _broken_links(page) == ["missing.md", "other.md#nowhere"]


SKIPPED_DIRS = {".git", ".venv", ".data", "__pycache__", "node_modules", ".cache", "results"}


def test_nothing_in_the_repository_points_outside_it() -> None:
    outside = "/".join(["..", "shared"])  # spelled so that this file does not match itself
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS and not name.endswith("_cache")]
        for name in files:
            path = Path(folder) / name
            if outside in path.read_bytes().decode("utf-8", "replace"):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _layout_entries() -> list[Path]:
    """The paths the README's "Project layout" block names: a line's names come before two spaces."""
    section = README.split("## Project layout", 1)[1]
    block = section.split("```", 2)[1].split("\n", 1)[1]
    entries, parent = [], ROOT
    for line in block.splitlines():
        if not line.strip():
            continue
        indented = line.startswith(" ")
        names = re.split(r"\s{2,}", line.strip())[0].split()
        for name in names:
            entries.append((parent if indented else ROOT) / name)
        if not indented and names[0].endswith("/"):
            parent = ROOT / names[0]
    return entries


def test_the_project_layout_names_only_what_exists() -> None:
    entries = _layout_entries()
    assert len(entries) > 30
    assert [str(path.relative_to(ROOT)) for path in entries if not path.exists()] == []


@pytest.mark.parametrize("package", ["movieapi", "movies"])
def test_the_project_layout_names_every_module_of_the_packages(package: str) -> None:
    named = {"/".join(path.relative_to(ROOT).parts[:2]) for path in _layout_entries()}
    present = {
        f"{package}/{path.name}"
        for path in (ROOT / package).iterdir()
        if path.name not in {"__init__.py", "__pycache__"} and (path.suffix == ".py" or path.is_dir())
    }
    assert sorted(present - named) == []
