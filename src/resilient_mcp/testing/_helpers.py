"""Small helpers for tests of code built on resilient_mcp."""

from __future__ import annotations

import contextlib

from typing import TYPE_CHECKING

from .._retry import _set_testing


if TYPE_CHECKING:
    from .._breaker import CircuitBreaker


class _InjectedFailureError(Exception):
    """The failure :func:`fail_once` feeds a breaker."""


def set_testing(on: bool = True) -> None:
    """
    Turn retry waits off (``on=True``) or back on.

    With testing on, every retry happens at once: no backoff, no jitter,
    no ``Retry-After``.  The number of attempts is unchanged.

    .. versionadded:: 0.1.0
    """
    _set_testing(on)


async def fail_once(breaker: CircuitBreaker) -> None:
    """
    Make one call through *breaker* that fails, and swallow the error.

    .. versionadded:: 0.1.0
    """

    async def failing() -> None:
        raise _InjectedFailureError("injected by resilient_mcp.testing")

    with contextlib.suppress(_InjectedFailureError):
        await breaker.call(failing)
