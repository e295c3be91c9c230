"""
Sphinx configuration of the documentation site (``nox -s docs``).

The pages are the Markdown files in this directory, read by MyST; the API
reference (api.md) is autodoc over the public modules, with Google-style
docstrings read by napoleon.  The build runs with ``-W``: a warning (a
broken cross-reference, a heading anchor that does not exist, a page left
out of the toctree) fails it.
"""

from __future__ import annotations

import importlib
import inspect
import sys

from importlib.metadata import version as _version
from pathlib import Path
from typing import TYPE_CHECKING

from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

import resilient_mcp


if TYPE_CHECKING:
    from sphinx.application import Sphinx


logger = logging.getLogger(__name__)


# The MCP names load on first use (resilient_mcp.__getattr__), and autodoc
# lists a module's members from its namespace: load each once.
for _name in resilient_mcp.__all__:
    getattr(resilient_mcp, _name)

project = "resilient-mcp"
author = "the resilient-mcp developers"
copyright = "2026, the resilient-mcp developers"  # noqa: A001
release = _version("resilient-mcp")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `[text](pipeline.md#every-rejection-is-a-checkpoint)`: MyST makes these
# anchors from the headings, down to ####.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_attr_annotations = True

# A console example whose output the lexer cannot read is still shown,
# highlighted "relaxed" (Sphinx says so with this warning); it is not a
# broken page, so it does not fail the build.
suppress_warnings = ["misc.highlighting_failure"]

html_theme = "alabaster"
html_title = f"resilient-mcp {release}"


# A constant or type alias re-exported by a public module (JitterMode,
# testing.chaos.Fault, ...) has no __module__ and no docstring where it is
# imported, so automodule leaves it out: api.md names each one with
# autodata, the build fails if one is missing there, and its docstring is
# read where it is defined.
PUBLIC_MODULES = (
    "resilient_mcp",
    "resilient_mcp.instrumentation",
    "resilient_mcp.testing",
    "resilient_mcp.testing.chaos",
)


def _reexported_data(module_name: str) -> list[str]:
    """The names in a module's ``__all__`` that are data, not code."""
    module = importlib.import_module(module_name)
    return [
        name
        for name in module.__all__
        if not (
            inspect.isclass(getattr(module, name))
            or inspect.isroutine(getattr(module, name))
        )
    ]


def _home_docstring(module_name: str, name: str) -> list[str]:
    """The docstring written under *name* where the public module got it."""
    value = getattr(sys.modules[module_name], name)
    for home, module in sorted(sys.modules.items()):
        if (
            home.startswith("resilient_mcp.")
            and home not in PUBLIC_MODULES
            and vars(module).get(name) is value
        ):
            docs = ModuleAnalyzer.for_module(home).find_attr_docs()
            if ("", name) in docs:
                return list(docs["", name])
    return []


def _check_api_lists_data(app: Sphinx) -> None:
    api = Path(app.srcdir, "api.md").read_text()
    for module_name in PUBLIC_MODULES:
        for name in _reexported_data(module_name):
            if f"autodata:: {module_name}.{name}\n" not in api:
                logger.warning(
                    "api.md: no autodata for %s.%s", module_name, name
                )


def _add_home_docstring(  # noqa: PLR0917 (Sphinx's event signature)
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    lines: list[str],
) -> None:
    del app, obj, options
    module_name, _, attr = name.rpartition(".")
    if what == "data" and module_name in PUBLIC_MODULES:
        # Never the value's own type's docstring (float's, frozenset's).
        lines[:] = _home_docstring(module_name, attr)


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _check_api_lists_data)
    app.connect("autodoc-process-docstring", _add_home_docstring)
