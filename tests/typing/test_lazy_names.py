"""
Type checkers are shown every public name, the lazy MCP names included.

``resilient_mcp/__init__.py`` lists them twice: in an ``if TYPE_CHECKING``
import that mypy and pyright read, and in ``_MCP_NAMES`` that the module
``__getattr__`` serves at run time.  A name in one list only would be
untyped for users, or missing at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from pathlib import Path

import resilient_mcp


def type_checking_names() -> set[str]:
    """The names imported under ``if TYPE_CHECKING:`` in __init__.py."""
    tree = ast.parse(Path(resilient_mcp.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and "TYPE_CHECKING" == node.test.id
        ):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                names.update(alias.name for alias in statement.names)
    return names


def test_type_checkers_see_every_lazy_name():
    """The TYPE_CHECKING import and _MCP_NAMES list the same names."""
    lazy = resilient_mcp._MCP_NAMES

    assert lazy == type_checking_names()
    assert lazy <= set(resilient_mcp.__all__)


def test_lazy_names_still_load_lazily():
    """Importing resilient_mcp does not import the SDK; a lazy name does."""
    code = (
        "import sys, resilient_mcp\n"
        "before = 'mcp' in sys.modules\n"
        "client = resilient_mcp.ResilientMCPClient\n"
        "print(before, 'mcp' in sys.modules, client.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout

    assert "False True resilient_mcp\n" == out


def test_the_typing_checks_use_every_public_name():
    """tests/typing/ imports each name in __all__, so mypy checks it."""
    imported: set[str] = set()
    for path in Path(__file__).parent.glob("*.py"):
        if path.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and "resilient_mcp" == (
                node.module
            ):
                imported.update(alias.name for alias in node.names)

    assert set() == set(resilient_mcp.__all__) - imported
