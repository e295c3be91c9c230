"""
Where instrumentation attaches to the pipeline.

The pipeline does not import :mod:`resilient_mcp.instrumentation`: it
asks this module, on every call, whether a call tracer is on, and the
instrumentation package registers its own answer here when it is
imported (``resilient_mcp`` imports it).  Until then, and when nothing is
registered, no call is traced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class CallTracer(Protocol):
    """What the pipeline asks of a tracer (see ``instrumentation``)."""

    def start(self, operation: str) -> Any:
        """Start the span of a call to *operation*; make it current."""

    def finish(
        self,
        call: Any,
        *,
        outcome: str,
        attempts: int,
        breaker_name: str | None = None,
        breaker_state: Any = None,
        breaker_failures: int | None = None,
        bulkhead_name: str | None = None,
        bulkhead_wait: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how the call ended and end its span."""


def _no_tracer() -> CallTracer | None:
    return None


call_tracer: Callable[[], CallTracer | None] = _no_tracer
"""Asked on every call: the tracer for it, or ``None`` (tracing off)."""


def set_call_tracer(source: Callable[[], CallTracer | None]) -> None:
    """Make *source* the answer to "is a call tracer on?"."""
    global call_tracer  # noqa: PLW0603 (the registry is this one name)
    call_tracer = source
