"""
The one place that reads the event loop's clock and builds deadlines.

Library code never calls :func:`time.monotonic`: every duration is measured
with the running event loop's clock, so :class:`trio.testing.MockClock`
(and the virtual-time asyncio loop in :mod:`resilient_mcp.testing`) drive
every delay, window and timeout.  Every timeout is a cancel scope with a
deadline; a scope with no deadline is never entered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ._errors import CallTimeout


T = TypeVar("T")

current_time = anyio.current_time
"""Seconds on the running event loop's clock."""

current_effective_deadline = anyio.current_effective_deadline
"""The deadline that applies to the calling task (``inf`` for none)."""

checkpoint = anyio.lowlevel.checkpoint
"""A full checkpoint: check for cancellation, and let other tasks run."""


async def run_with_deadline(
    deadline: float,
    timeout: float,  # noqa: ASYNC109 (only quoted in the error message)
    where: str,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
) -> T:
    """
    Await ``fn(*args)`` inside a cancel scope ending at *deadline*.

    Args:
        deadline: Absolute time on the event loop's clock.
        timeout: The relative limit *deadline* came from, for the message.
        where: What imposed the limit, for the message.
        fn: The operation.
        args: Its positional arguments.

    Returns:
        What the operation returned.

    Raises:
        CallTimeout: The deadline passed and the operation was cancelled.
    """
    with anyio.CancelScope(deadline=deadline) as scope:
        return await fn(*args)
    # Reached only when our own scope swallowed its cancellation; a
    # cancellation from an enclosing scope propagates through the `with`.
    assert scope.cancel_called  # noqa: S101
    raise CallTimeout(timeout, where)
