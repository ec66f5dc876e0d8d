"""The two import rules import-linter cannot state (its contracts are in pyproject.toml and
run as ``lint-imports``): no module of dealbridge imports itself back through others, not
even through its own package's ``__init__`` (import-linter compares sibling packages only),
and no function imports a dealbridge module, the way cycles used to be dodged."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import connector

PACKAGE = Path(connector.__file__).parent


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("connector", cache_dir=None)


def test_no_module_imports_itself_back_through_others(graph: grimp.ImportGraph) -> None:
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.add(" -> ".join((importer, *back)))
    assert sorted(cycles) == []


def _function_imports(path: Path) -> list[str]:
    """``file:line module`` for each import of a connector module inside a function."""
    found = []
    for function in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith((".", "connector")):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}")
    return found


def test_no_function_imports_a_dealbridge_module() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _function_imports(path)]
    assert found == []
