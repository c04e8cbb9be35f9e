"""The package's shape: layers that import only downward, no cycles, small modules.

The layers and their contracts are in pyproject.toml ([tool.importlinter]) and
docs/architecture.md; `lint-imports` is the tool that checks them. A new import that
reaches up a layer, or one between tuner.study and tuner.tracking, fails here.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tuner"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
# Argument tables: one add_argument after another, longer than a screen by nature.
ARGUMENT_TABLES = {("tuner/cli/parser.py", "build_parser")}


def test_the_import_contracts_hold():
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script) if script.is_file() else shutil.which("lint-imports") or "lint-imports"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(
                        graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_of_tuner_imports_itself_through_others():
    # Imports under TYPE_CHECKING and inside functions count: a cycle is a knot to read.
    graph = grimp.build_graph("tuner")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    (tmp_path / "knot").mkdir()
    (tmp_path / "knot" / "__init__.py").write_text("")
    (tmp_path / "knot" / "a.py").write_text("from knot import b\n")
    (tmp_path / "knot" / "b.py").write_text("from knot import c\n")
    (tmp_path / "knot" / "c.py").write_text("import knot.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("knot")) == [["knot.a", "knot.b", "knot.c"]]


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"split {path.name}: one concept each"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            where = (str(path.relative_to(ROOT)), node.name)
            if lines > MAX_FUNCTION_LINES and where not in ARGUMENT_TABLES:
                long.append(f"{node.name} ({lines} lines)")
    assert not long, f"{path.name}: {', '.join(long)}"
