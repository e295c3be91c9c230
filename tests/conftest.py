"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from _redis_server import redis_server  # noqa: F401 (a fixture: fleet tests)
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


@pytest.fixture
def no_tracer_provider(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """
    No global OpenTelemetry tracer provider during the test, nor after it.

    OpenTelemetry lets a process set its provider once and has no public
    way to unset it, so this resets two private globals of
    ``opentelemetry.trace``, as OpenTelemetry's own test utilities do
    (``reset_trace_globals`` in opentelemetry-test-utils).  The MCP SDK's
    module-level ProxyTracer keeps the first real tracer it meets, again
    with no public way to forget it: it is reset too, so that a provider
    the test sets does not live on in every later in-process server (each
    span on a shut-down provider logs a warning; the soak run once
    collected 14,000 of them).  monkeypatch puts all of it back when the
    test ends.

    Returns:
        A function that resets the provider again, within the test.
    """
    from mcp.shared import _otel as mcp_otel  # noqa: PLC0415
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.util._once import Once  # noqa: PLC0415

    def reset() -> None:
        monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)

    reset()
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    monkeypatch.setattr(mcp_otel._tracer, "_real_tracer", None)
    return reset


@pytest.fixture
def spans(no_tracer_provider: Callable[[], None]) -> Iterator[Any]:
    """
    An SDK tracer provider, set globally for the test, exporting to memory.

    Yields:
        Its ``InMemorySpanExporter``.
    """
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        SimpleSpanProcessor,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
