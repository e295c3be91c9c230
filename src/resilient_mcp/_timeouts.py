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

# trio.current_time() is three Python calls deep (the public wrapper, the
# runner, the clock); the clock itself is one.  The hot paths read the
# clock two to four times per call, so they go to it directly, through the
# thread's run context that trio.current_time() itself reads.  A trio that
# moved it gets the public function instead (a test checks both agree).
_TRIO_RUN: Any = getattr(
    getattr(getattr(trio, "_core", None), "_run", None),
    "GLOBAL_RUN_CONTEXT",
    None,
)

# anyio dispatches every call through sniffio and a backend class, which
# costs more than the policies themselves (anyio.current_time is about 3x
# trio.current_time, anyio.CancelScope about 4x trio.CancelScope).  trio
# marks its thread while it runs (sniffio's thread-local name is "trio"),
# so one attribute read picks trio's own primitives; everything else goes
# through anyio, which on asyncio is the reference implementation anyway.

WOULD_BLOCK: Final = (trio.WouldBlock, anyio.WouldBlock)
"""What ``*_nowait`` raises on either backend."""


def on_trio() -> bool:
    """Whether the calling thread is running trio right now."""
    return _sniffio.name == "trio"


def current_time() -> float:
    """Seconds on the running event loop's clock."""
    if _sniffio.name == "trio":
        if _TRIO_RUN is None:  # pragma: no cover
            return trio.current_time()
        now: float = _TRIO_RUN.runner.clock.current_time()
        return now
    return asyncio.get_running_loop().time()


def clock_and_scope() -> tuple[Callable[[], float], Callable[..., Any]]:
    """
    The running loop's clock and its cancel scope class, looked up once.

    For a hot path that reads the clock more than once and may enter a
    scope: one backend check instead of one per use.  The clock is the
    running trio clock's ``current_time`` (what :func:`trio.current_time`
    returns, one call instead of three) or the asyncio loop's ``time``;
    the scope class is :class:`trio.CancelScope` or
    :class:`anyio.CancelScope`.
    """
    global _trio_pair  # noqa: PLW0603 (a cache, replaced whole)
    if _sniffio.name == "trio":
        if _TRIO_RUN is None:  # pragma: no cover
            return _TRIO_PUBLIC_PAIR
        clock = _TRIO_RUN.runner.clock
        cached = _trio_pair
        if cached[0] is clock:
            return cached[1]
        pair = (clock.current_time, trio.CancelScope)
        _trio_pair = (clock, pair)
        return pair
    return asyncio.get_running_loop().time, anyio.CancelScope


_TRIO_PUBLIC_PAIR: Final = (trio.current_time, trio.CancelScope)
# The last trio clock seen, and its pair: a run's clock is fixed for the
# run, so most calls find it here and build nothing.  One tuple, replaced
# whole, so that threads running trio each find a consistent pair.
_trio_pair: tuple[object, tuple[Callable[[], float], Callable[..., Any]]] = (
    None,
    _TRIO_PUBLIC_PAIR,
)


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
    on the paths that must checkpoint without doing anything else (a
    rejection by an open circuit or a full bulkhead).
    """
    if _sniffio.name == "trio":
        return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (awaited by caller)
    return anyio.lowlevel.checkpoint()


REJECTIONS_PER_SCHEDULE_POINT: Final = 64
"""A fast-fail rejection lets other tasks run once in this many."""

_rejections = 0


def rejection_checkpoint() -> Awaitable[None]:
    """
    The checkpoint of a fast-fail rejection (open circuit, full bulkhead).

    ``await rejection_checkpoint()`` before raising the rejection.  It is
    always a cancel point: a cancelled caller gets its cancellation, not
    the rejection.  It is a schedule point (a full :func:`checkpoint`) on
    one rejection in :data:`REJECTIONS_PER_SCHEDULE_POINT`, counted
    across the thread's rejections, so that a loop that keeps hitting an
    open circuit still lets the other tasks run.  Yielding on every
    rejection would cost more than the rest of the rejection three times
    over (a trio schedule point is about 5 us), where failing fast is the
    point, as in Polly and resilience4j, which throw at once.
    """
    global _rejections  # noqa: PLW0603 (one counter per process, by design)
    _rejections += 1
    if _rejections % REJECTIONS_PER_SCHEDULE_POINT:
        if _sniffio.name == "trio":
            return trio.lowlevel.checkpoint_if_cancelled()  # noqa: ASYNC105
        return anyio.lowlevel.checkpoint_if_cancelled()
    return checkpoint()


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


class DeadlineExpired(BaseException):
    """
    An enclosing policy's deadline passed inside a merged cancel scope.

    To enter one cancel scope per attempt instead of one per policy, the
    bulkhead hands its deadline down and the innermost timeout enters one
    scope for the earlier of the two.  When it was the enclosing deadline
    that passed, this is raised instead of a timeout, so that the inner
    policies treat it like a cancellation (not counted, not retried) and
    the policy that owns the deadline turns it into its own CallTimeout.
    It is a BaseException for that reason, and never leaves the library.
    """


class DeadlinePassed(BaseException):
    """
    A :class:`DeadlineAware` operation's deadline passed: it was cancelled.

    Raised by the operation, in place of the cancellation its own scope
    caught, for the policy that handed it the deadline, which turns it into
    a :class:`CallTimeout` or a :class:`DeadlineExpired` exactly as if its
    own scope had caught the cancellation.  A BaseException, like the
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
    usual.  The pipeline's fast path and :func:`run_bounded` know it.
    """

    __slots__ = ("run",)

    def __init__(self, run: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        self.run = run

    def __call__(self, *args: Any) -> Coroutine[Any, Any, Any]:
        return self.run(math.inf, *args)


async def run_bounded(  # noqa: PLR0917 (hot path: no kwargs)
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    timeout: float | None,  # noqa: ASYNC109 (applied inside)
    where: str,
    outer_deadline: float,
    now: float,
) -> T:
    """
    Await ``fn(*args)`` until ``now + timeout`` or *outer_deadline*.

    One cancel scope, for whichever comes first; none if both are
    infinite.

    Raises:
        CallTimeout: Our own *timeout* passed first.
        DeadlineExpired: *outer_deadline* passed first (or at once).
    """
    own = math.inf if timeout is None else now + timeout
    deadline = own
    # A comparison, not min(): no call on the hot path.
    if outer_deadline < own:
        deadline = outer_deadline
    if deadline == math.inf:
        return await fn(*args)
    if type(fn) is DeadlineAware:
        try:
            return await fn.run(deadline, *args)  # type: ignore[no-any-return]
        except DeadlinePassed:
            pass
    else:
        with deadline_scope(deadline):
            return await fn(*args)
    # Only our own scope's cancellation gets here; an outer one propagates.
    if own < outer_deadline:
        assert timeout is not None  # noqa: S101
        raise CallTimeout(timeout, where)
    raise DeadlineExpired
