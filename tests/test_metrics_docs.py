"""
The metrics pages name only public API (issue 12, item 18).

A name the library defines (one in the ``__all__`` of any of its modules,
private ones included) that a page shows in code must be exported by a
public module: ``resilient_mcp``, ``resilient_mcp.instrumentation`` or
``resilient_mcp.testing``.  So a page cannot promise a name that users
can only reach through a private module.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from pathlib import Path

import pytest

import resilient_mcp
import resilient_mcp.instrumentation
import resilient_mcp.testing


DOCS = Path(__file__).parent.parent / "docs"
PAGES = ["metrics.md", "observability.md", "bulkhead.md", "throttling.md"]
PUBLIC_MODULES = {
    "resilient_mcp": resilient_mcp,
    "resilient_mcp.instrumentation": resilient_mcp.instrumentation,
    "resilient_mcp.testing": resilient_mcp.testing,
}
PUBLIC = {name for m in PUBLIC_MODULES.values() for name in m.__all__}

SPAN = re.compile(r"`([^`\n]+)`")
IMPORT = re.compile(
    r"from (resilient_mcp[\w.]*) import (\([^)]*\)|[^\n]+)", re.MULTILINE
)
QUALIFIED = re.compile(r"^resilient_mcp((?:\.\w+)+)")
LEADING = re.compile(
    r"^(?:resilient_mcp\.(?:instrumentation\.|testing\.)?)?([A-Za-z_]\w*)"
)


def library_names():
    """Every name in the __all__ of any resilient_mcp module."""
    names = set()
    for info in pkgutil.walk_packages(
        resilient_mcp.__path__, "resilient_mcp."
    ):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        names.update(getattr(module, "__all__", ()))
    return names


INTERNAL = library_names() - PUBLIC


def named_in_code(text):
    """(name, where) of the library names a page shows in code."""
    found = [
        (name, f"from {module} import {name}")
        for module, names in IMPORT.findall(text)
        for name in re.findall(r"\w+", names.strip("()"))
    ]
    for span in SPAN.findall(text):
        leading = LEADING.match(span)
        if leading is not None:
            found.append((leading.group(1), f"`{span}`"))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_issue_12_item_18_pages_name_only_exported_names(page):
    """Every library name a page shows in code is exported publicly."""
    text = (DOCS / page).read_text()

    unexported = sorted(
        {where for name, where in named_in_code(text) if name in INTERNAL}
    )

    assert [] == unexported


@pytest.mark.parametrize("page", PAGES)
def test_issue_12_item_18_imports_in_pages_work(page):
    """Every `from resilient_mcp... import X` of a page is in its __all__."""
    text = (DOCS / page).read_text()

    missing = [
        f"{module}.{name}"
        for module, names in IMPORT.findall(text)
        for name in re.findall(r"\w+", names.strip("()"))
        if name not in PUBLIC_MODULES[module].__all__
    ]

    assert [] == missing


@pytest.mark.parametrize("page", PAGES)
def test_issue_12_item_18_qualified_names_resolve(page):
    """`resilient_mcp.X` in a page names a public module's export."""
    text = (DOCS / page).read_text()
    bad = []
    for span in SPAN.findall(text):
        matched = QUALIFIED.match(span)
        if matched is None:
            continue
        parts = matched.group(1).lstrip(".").split(".")
        module = "resilient_mcp"
        if parts[0] in {"instrumentation", "testing"}:
            module = f"resilient_mcp.{parts.pop(0)}"
        if not parts:
            continue  # the module itself
        # A class or function, not an OpenTelemetry attribute name such as
        # resilient_mcp.bulkhead.name.
        api = parts[0][0].isupper() or module != "resilient_mcp"
        if api and parts[0] not in PUBLIC_MODULES[module].__all__:
            bad.append(span)

    assert [] == bad


def test_issue_12_item_18_the_check_sees_internal_names():
    """The check would catch a page that names an unexported name."""
    page = "Use `read_hlog(path)` and `HlogWriter`, not `LatencyRecorder`."

    assert {"read_hlog", "HlogWriter"} == {
        name for name, _ in named_in_code(page) if name in INTERNAL
    }
