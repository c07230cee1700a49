"""The fast-path ledger (docs/performance.md, "Fast paths") and the code agree: every row points at a definition
whose header names it, and at an equality test that exists; every header in the code has its row."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import ROOT

LEDGER = ROOT / "docs" / "performance.md"
PRODUCTION = ("movies", "movieapi")
_HEADER = re.compile(r"Fast path: (.+?)\.$")


class Row(NamedTuple):
    name: str
    module: str
    symbol: str
    test: str


def ledger_rows(text: str) -> list[Row]:
    """The rows of the table under "## Fast paths" (the columns: name, where, replaces, figure, test, switch off)."""
    section = text.split("\n## Fast paths\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| name ", "|---")):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == 6, line
        module, symbol = cells[1].strip("`").split(":")
        rows.append(Row(cells[0], module, symbol, cells[4].strip("`")))
    return rows


ROWS = ledger_rows(LEDGER.read_text())


def _names(node: ast.stmt) -> list[str]:
    """The names a statement defines: a class's, a function's, an assignment's targets."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [target.id for target in node.targets if isinstance(target, ast.Name)]
    return []


def definition(tree: ast.Module, dotted: str) -> ast.stmt | None:
    """The class, function or assignment named by a dotted path (Class.method) in a module's syntax tree."""
    body: list[ast.stmt] = tree.body
    found: ast.stmt | None = None
    for part in dotted.split("."):
        found = next((node for node in body if part in _names(node)), None)
        if found is None:
            return None
        body = getattr(found, "body", [])
    return found


def header(source: str, node: ast.stmt) -> str:
    """A definition's header: its docstring when that starts as a header, else the comment block directly above it
    (and above its decorators)."""
    docstring = ast.get_docstring(node) if isinstance(node, ast.FunctionDef | ast.ClassDef) else None
    if docstring and docstring.startswith("Fast path:"):
        return docstring
    lines = source.splitlines()
    start = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))]) - 1
    block: list[str] = []
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
        block.insert(0, lines[start].lstrip()[1:].strip())
    return "\n".join(block)


def test_the_ledger_lists_the_fast_paths() -> None:
    assert len(ROWS) >= 15
    assert len({row.name for row in ROWS}) == len(ROWS), "two rows share a name"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_row_points_at_its_headed_definition_and_an_existing_test(row: Row) -> None:
    module = importlib.import_module(row.module)
    target: object = module
    for part in row.symbol.split("."):
        assert hasattr(target, part), f"{row.module}:{row.symbol} does not exist"
        target = getattr(target, part)
    source = Path(module.__file__ or "").read_text()
    node = definition(ast.parse(source), row.symbol)
    assert node is not None, f"{row.module}:{row.symbol} is not defined in {row.module}"
    text = header(source, node)
    assert text.splitlines()[0] == f"Fast path: {row.name}.", f"{row.symbol}'s header does not name {row.name!r}"
    assert f"Equal: {row.test}" in " ".join(text.split()), f"{row.symbol}'s header names another test"
    path, name = row.test.split("::")
    test_file = ROOT / path
    assert test_file.is_file(), f"{path} does not exist"
    assert re.search(rf"^def {re.escape(name)}\(", test_file.read_text(), re.M), f"no {name} in {path}"


def test_every_fast_path_header_in_the_code_has_its_row() -> None:
    named = set()
    for package in PRODUCTION:
        for path in (ROOT / package).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            for line in path.read_text().splitlines():
                match = _HEADER.search(line.strip().lstrip("#").strip().lstrip('"'))
                if match and line.strip().startswith(("#", '"""Fast path:', "Fast path:")):
                    named.add(match.group(1))
    assert named == {row.name for row in ROWS}
