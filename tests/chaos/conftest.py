"""
Fixtures of the chaos suite (issue 6), and what it shares with tests/mcp.

The real servers (stdio and HTTP subprocesses, killed and restarted at
will) come from ``tests/mcp/conftest.py``: that file is loaded here under
a name of its own (``tests/mcp`` is no package, and ``mcp`` would clash
with the SDK anyway) and its fixtures re-exported.  The load and soak
workloads (``_load.py``) are loaded the same way and handed to the tests
by the ``workloads`` fixture.

Every test module here carries ``pytestmark = pytest.mark.chaos``, so
``pytest -m chaos`` runs the suite alone.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest
import trio


if TYPE_CHECKING:
    from types import ModuleType


def _load(path: Path, name: str) -> ModuleType:
    """Import the file at *path* as module *name* (once)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


HERE: Final = Path(__file__).resolve().parent


_mcp_fixtures = _load(
    HERE.parent / "mcp" / "conftest.py", "_resilient_mcp_chaos_mcp_fixtures"
)
_workloads = _load(HERE / "_load.py", "_resilient_mcp_chaos_workloads")

# The fixtures (pytest registers fixtures found in a conftest's namespace).
server_log = _mcp_fixtures.server_log
stdio_params = _mcp_fixtures.stdio_params
session_config = _mcp_fixtures.session_config
http_server = _mcp_fixtures.http_server
free_port = _mcp_fixtures.free_port
# And the helpers.
HTTPServerProcess = _mcp_fixtures.HTTPServerProcess
STARTUP_TIMEOUT: Final[float] = _mcp_fixtures.STARTUP_TIMEOUT
SERVER_MODULE: Final[str] = _mcp_fixtures.SERVER_MODULE
child_env = _mcp_fixtures.child_env

SOAK_ENV: Final = "RESILIENT_MCP_SOAK_SECONDS"


@pytest.fixture
def workloads() -> ModuleType:
    """The mixed-fault workloads and their books (``_load.py``)."""
    return _workloads


@pytest.fixture
def soak_seconds() -> float:
    """How long the soak run lasts; skips it unless the variable is set."""
    value = os.environ.get(SOAK_ENV)
    if not value:
        pytest.skip(f"the soak run needs {SOAK_ENV}=<seconds> (nox -s chaos)")
    return float(value)


@pytest.fixture
def trio_tasks() -> Any:
    """Count the tasks alive in this trio run (a leak detector)."""

    def count() -> int:
        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(
                walk(child)
                for nursery in task.child_nurseries
                for child in nursery.child_tasks
            )

        return walk(trio.lowlevel.current_root_task())

    return count
