"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from resilient_mcp.testing import run_virtual, set_testing


@pytest.fixture(autouse=True)
def _reset_testing_mode() -> Iterator[None]:
    """Every test starts and ends with real retry waits."""
    set_testing(False)
    yield
    set_testing(False)


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on trio and once on asyncio (through anyio)."""
    return str(request.param)


@pytest.fixture
def run(backend: str) -> Callable[..., Any]:
    """Run an async scenario on the test's backend, in virtual time."""

    def runner(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return run_virtual(fn, *args, backend=backend)

    return runner
