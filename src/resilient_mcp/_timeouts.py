"""
The one place that reads the event loop's clock and builds deadlines.

Library code never calls :func:`time.monotonic`: every duration is measured
with the running event loop's clock, so :class:`trio.testing.MockClock`
(and the virtual-time asyncio loop in :mod:`resilient_mcp.testing`) drive
every delay, window and timeout.  Every timeout is a cancel scope with a
deadline; a scope with no deadline is never entered.
"""

from __future__ import annotations

import asyncio
import math

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar, final

import anyio
import trio

from sniffio import thread_local as _sniffio

from ._errors import CallTimeout


T = TypeVar("T")

# anyio dispatches every call through sniffio and a backend class, which
# costs more than the policies themselves (anyio.current_time is about 3x
# trio.current_time, anyio.CancelScope about 4x trio.CancelScope).  trio
# marks its thread while it runs (sniffio's public thread-local name is
# "trio"), so one attribute read picks trio's own primitives; everything
# else goes through anyio, which on asyncio is the reference
# implementation anyway.

WOULD_BLOCK: Final = (trio.WouldBlock, anyio.WouldBlock)
"""What ``*_nowait`` raises on either backend."""

# The public functions that find the running clock, bound once: resolving
# trio.lowlevel.current_clock through two modules on every call costs
# about a third of the lookup itself.  The clock is still looked up on
# every call (see clock()), never kept across calls.
_trio_clock: Final = trio.lowlevel.current_clock
_running_loop: Final = asyncio.get_running_loop


def on_trio() -> bool:
    """Whether the calling thread is running trio right now."""
    return _sniffio.name == "trio"


def current_time() -> float:
    """Seconds on the running event loop's clock."""
    if _sniffio.name == "trio":
        return trio.current_time()
    return asyncio.get_running_loop().time()


def clock() -> Callable[[], float]:
    """
    The running event loop's clock, to read more than once.

    ``now = clock()`` then ``now()`` for each reading: one lookup of the
    running loop, where :func:`current_time` makes one per reading.  On
    trio it is the run's clock (:func:`trio.lowlevel.current_clock`), whose
    ``current_time`` is what :func:`trio.current_time` returns; on asyncio
    the loop's ``time``.
    """
    if _sniffio.name == "trio":
        return _trio_clock().current_time
    return _running_loop().time


def current_effective_deadline() -> float:
    """The deadline that applies to the calling task (``inf`` for none)."""
    if _sniffio.name == "trio":
        return trio.current_effective_deadline()
    return anyio.current_effective_deadline()


def checkpoint() -> Awaitable[None]:
    """
    A full checkpoint: check for cancellation, and let others run.

    ``await checkpoint()``, as if it were a coroutine function; it hands
    back the backend's own checkpoint to await, one coroutine frame fewer
    on the paths that must checkpoint without doing anything else.  Every
    rejection (an open circuit, a full bulkhead) is one, as trio's
    conventions ask of every call into an async API: the caller may be
    cancelled there, and other tasks get to run, so that a loop hammering
    an open circuit cannot starve them.
    """
    if _sniffio.name == "trio":
        return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (awaited by caller)
    return anyio.lowlevel.checkpoint()


async def sleep(seconds: float) -> None:
    """Sleep on the running event loop's clock; cancellable."""
    if _sniffio.name == "trio":
        await trio.sleep(seconds)
    else:
        await anyio.sleep(seconds)


def deadline_scope(deadline: float) -> trio.CancelScope | anyio.CancelScope:
    """A cancel scope that cancels its body at *deadline*."""
    if _sniffio.name == "trio":
        return trio.CancelScope(deadline=deadline)
    return anyio.CancelScope(deadline=deadline)


def new_limiter(tokens: int) -> trio.CapacityLimiter | anyio.CapacityLimiter:
    """A CapacityLimiter native to the running backend."""
    if _sniffio.name == "trio":
        return trio.CapacityLimiter(tokens)
    return anyio.CapacityLimiter(tokens)


@final
class Timeout:
    """
    The policy that bounds each attempt: a time limit and nothing else.

    The pipeline enters one cancel scope for the earliest limit of its
    policies; when this one's passes, the attempt fails with
    :class:`CallTimeout` (a failure the breaker counts and the retry may
    retry).

    Args:
        seconds: The limit, in seconds.
        where: What imposes it, for the error (``"pipeline 'x'"``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("time_limit", "where")

    passive: Final = True
    """Only a time limit: the pipeline need not enter it or tell it."""

    def __init__(self, seconds: float, *, where: str) -> None:
        self.time_limit: float = seconds
        self.where: str = where

    @property
    def name(self) -> str:
        """What imposes the limit."""
        return self.where

    def __repr__(self) -> str:
        return f"<Timeout {self.time_limit:g}s ({self.where})>"

    def enter_nowait(self, now: float) -> None:
        """Admit every attempt: a timeout only limits time."""

    async def enter(self, now: float) -> None:  # pragma: no cover
        """Never awaited: :meth:`enter_nowait` never blocks."""

    def leave(
        self,
        permit: None,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """Nothing to count: the pipeline counts the outcomes."""

    def expired(self, permit: None) -> CallTimeout:
        """The error of an attempt that outlived the limit."""
        return CallTimeout(self.time_limit, self.where)


class DeadlineExpired(BaseException):
    """
    A call policy's deadline passed inside an attempt's cancel scope.

    The engine enters one cancel scope per attempt, for the earlier of the
    attempt's limit and the call's (a bulkhead's ``request_timeout``, say).
    When it was the call's deadline that passed, this is raised instead of
    a timeout, so that the attempt policies and the retry treat it like a
    cancellation (not counted, not retried) and the call policy that owns
    the deadline turns it into its own error (``expired``).  It is a
    BaseException for that reason, and never leaves the library.
    """


class DeadlinePassed(BaseException):
    """
    A :class:`DeadlineAware` operation's deadline passed: it was cancelled.

    Raised by the operation, in place of the cancellation its own scope
    caught, for the engine that handed it the deadline, which turns it into
    the policy's :class:`CallTimeout` or a :class:`DeadlineExpired` exactly
    as if its own scope had caught the cancellation.  A BaseException, like the
    cancellation it stands for, so that what lies between (a per-tool
    breaker, say) treats it as one; it never leaves the library.
    """


@final
class DeadlineAware:
    """
    An operation that enforces a deadline in a cancel scope of its own.

    Some operations enter a cancel scope anyway (an in-process MCP call
    registers one, so that its session can end it); a policy that hands
    such an operation its deadline saves a scope of its own (about 50
    Python calls on trio).  ``await op.run(deadline, *args)`` runs it until
    the event-loop time *deadline* (``math.inf``: no limit), and raises
    :class:`DeadlinePassed` if that passed first.  Called like any other
    async callable, ``await op(*args)``, it runs without a deadline, so the
    layers that do not know about it enter their scopes around it as
    usual.  The engine (:mod:`._engine`) knows it.
    """

    __slots__ = ("run",)

    def __init__(self, run: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        self.run = run

    def __call__(self, *args: Any) -> Coroutine[Any, Any, Any]:
        return self.run(math.inf, *args)
