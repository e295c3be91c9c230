"""The architecture's rules, checked on the source (docs/development.md)."""

from __future__ import annotations

import ast
import subprocess
import sys

from pathlib import Path

import resilient_mcp


PACKAGE = Path(resilient_mcp.__file__).parent
MAX_LINES = 500


def _modules():
    """Every module of the package: its dotted name and its path."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports_at_load(module: str, path: Path) -> set[str]:
    """The package's modules *module* imports when it is imported."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    # Module level only: imports inside functions are lazy, and those under
    # `if TYPE_CHECKING:` never run.
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            target = _resolve(module, node, is_package)
            if node.module:  # `from .x import y`: x, or x.y if a module
                found.add(target)
            # `from . import x` imports the module x, not the package.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    known = dict(_modules())
    return {name for name in found if name in known and name != module}


def test_no_module_is_over_500_lines():
    """A reader can hold any module in their head."""
    sizes = {
        name: len(path.read_text().splitlines()) for name, path in _modules()
    }

    assert {} == {n: s for n, s in sizes.items() if s > MAX_LINES}


def test_no_import_cycle():
    """The modules import each other bottom-up, never in a circle."""
    graph = {name: _imports_at_load(name, path) for name, path in _modules()}
    # A package imports its own modules to re-export them; that is not a
    # cycle of the layers, so a package's edges to its children go.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(f"{name}.")}
    state: dict[str, int] = {}
    cycles = []

    def visit(name, path):
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path, target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])

    assert [] == cycles


def test_the_pipeline_does_not_import_instrumentation():
    """Instrumentation attaches through hooks; the core never imports it."""
    core = [
        "resilient_mcp._pipeline",
        "resilient_mcp._engine",
        "resilient_mcp._policy",
        "resilient_mcp._breaker",
        "resilient_mcp._breaker_core",
        "resilient_mcp._bulkhead",
        "resilient_mcp._rate_limiter",
        "resilient_mcp._retry",
        "resilient_mcp._retry_budget",
        "resilient_mcp._timeouts",
    ]
    paths = dict(_modules())

    for name in core:
        imported = _imports_at_load(name, paths[name])
        assert [] == [
            i for i in imported if i.startswith("resilient_mcp.instrument")
        ], name


def test_importing_the_package_does_not_import_the_sdk():
    """Importing resilient_mcp stays light: the SDK loads on first use."""
    code = "import sys, resilient_mcp; print('mcp' in sys.modules)"

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )

    assert "False" == out.stdout.strip()
