"""The package's shape: an import graph without cycles, typed options, a store interface mypy checks.

These guard what the serving core was rebuilt for: a store in another process
can implement the interface without importing the jobs app, and a caller's
misspelt option is caught by their type checker before anything runs.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wsgi_logstream

# The package under test: the checkout, or under scripts/test the installed wheel (the same modules).
PACKAGE = Path(wsgi_logstream.__file__).resolve().parent
ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "typing_cases"


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, anywhere in it (type-only imports included)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
                if node.module is None:
                    found.update(f"{base}.{alias.name}" for alias in node.names)
                    continue
            else:
                module = node.module or ""
            if module.startswith("wsgi_logstream"):
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("wsgi_logstream"))
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_package_import_graph_has_no_cycle() -> None:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # The package's __init__ re-exports everything; nothing inside imports it back.
    for name, deps in graph.items():
        assert "wsgi_logstream" not in deps or name == "wsgi_logstream", f"{name} imports the package's __init__"
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_module_of_the_package_grows_past_about_400_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 450} == {}


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="mypy not installed")
def test_mypy_finds_a_misspelt_option_and_accepts_a_third_party_store() -> None:
    mypy = str(Path(sys.executable).parent / "mypy")
    result = subprocess.run(
        [
            mypy,
            "--config-file",
            str(ROOT / "setup.cfg"),
            "--no-incremental",
            str(CASES / "options_and_store.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line and "options_and_store.py" in line]
    # Exactly the lines marked "# error" in the case file, and no others.
    marked = [
        number
        for number, line in enumerate((CASES / "options_and_store.py").read_text().splitlines(), start=1)
        if line.rstrip().endswith("# error")
    ]
    assert sorted({int(line.split(":")[1]) for line in errors}) == marked, result.stdout
    assert any("heartbeet" in line for line in errors), result.stdout
