"""
The docstrings' examples run, as the API reference shows them (issue 12).

Every ``>>>`` example in the package is run with the standard library's
``doctest`` against the installed package, one test per module, so that
``nox -s tests`` (the README's test command) fails when an example does.
An example that cannot run as written (one that needs an event loop or a
server) is written as a plain code block (``Example::``), not with ``>>>``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import socket

import pytest

import resilient_mcp


def _module_names() -> list[str]:
    """Every module of the package, subpackages included."""
    names = [resilient_mcp.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(
            resilient_mcp.__path__, prefix=f"{resilient_mcp.__name__}."
        )
    ]
    return sorted(names)


def _examples(name: str) -> list[doctest.DocTest]:
    """
    The docstrings of module *name* that hold ``>>>`` examples.

    The finder looks in the module's namespace for what the module defines
    (by ``__module__``, which the public modules rewrite on the names they
    re-export); a name that a module serves lazily through its
    ``__getattr__`` (the MCP client's) is not there until asked for, so
    every name in ``__all__`` is asked for too.
    """
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {test.name: test for test in finder.find(module)}
    for attr in getattr(module, "__all__", ()):
        if attr in vars(module):
            continue
        for test in finder.find(
            getattr(module, attr),
            f"{name}.{attr}",
            module=module,
            globs=dict(vars(module)),
        ):
            found.setdefault(test.name, test)
    return [test for test in found.values() if test.examples]


MODULES = _module_names()


def _no_network(*args: object) -> None:
    msg = f"a docstring example opened a connection: {args[1:]}"
    raise AssertionError(msg)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``>>>`` example in the module gives its output, offline."""
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    report = io.StringIO()
    for test in _examples(name):
        runner.run(test, out=report.write)

    assert 0 == runner.summarize(verbose=False).failed, report.getvalue()


def test_the_package_has_examples_to_run() -> None:
    """The doctests are not vacuous: the public classes' examples count."""
    with_examples = {test.name for name in MODULES for test in _examples(name)}

    assert {
        "resilient_mcp.CircuitBreaker",
        "resilient_mcp.LatencyRecorder",
        "resilient_mcp.instrumentation.Watchlist",
    } <= with_examples
