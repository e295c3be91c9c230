"""
Virtual time for asyncio, the counterpart of trio's ``MockClock``.

:class:`VirtualTimeEventLoop` is an asyncio event loop whose clock only
moves when every task is blocked: then it jumps straight to the next timer,
like ``trio.testing.MockClock(autojump_threshold=0)``.  Sleeps of an hour
take no real time, and ``loop.time()`` reads exactly the sum of the delays.

The loop knows when it is idle, so it also answers
:func:`wait_all_tasks_blocked` without looking inside asyncio's tasks:
asyncio's event loop polls its selector with a timeout of zero while any
callback or task step is ready to run, and with the time to the next timer
(or ``None``) only when nothing is.  That second kind of poll, with no I/O
ready, is the moment every task is blocked: the selector wakes the waiters
then, before it would jump the clock, as trio does (trio's ``_run.py``
wakes ``wait_all_tasks_blocked`` in preference to an autojump).
"""

from __future__ import annotations

import asyncio
import selectors

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar


T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Polls for I/O; when there is none, jumps the clock to the timer."""

    def __init__(self, loop: VirtualTimeEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        # Nothing can run: every task is blocked.
        if self._loop.wake_idle_waiters():
            return []  # they run next; time stays where it is
        if timeout is None:
            # No timer at all: only I/O (or another thread) can wake us.
            result: list[tuple[selectors.SelectorKey, int]]
            result = super().select(None)
            return result
        self._loop.advance(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """
    An asyncio loop on a virtual clock that starts at 0 and autojumps.

    Use it as a loop factory: ``asyncio.Runner(loop_factory=...)``, or
    ``anyio.run(fn, backend="asyncio", backend_options={"loop_factory":
    VirtualTimeEventLoop})``, or simply :func:`run_virtual`.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self._idle_waiters: list[asyncio.Future[None]] = []
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """The virtual time, in seconds."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by *seconds*."""
        self._virtual_now += seconds

    async def wait_until_idle(self) -> None:
        """
        Return once every task of the loop is blocked.

        The loop's own ``wait_all_tasks_blocked``: what
        :func:`~resilient_mcp.testing.wait_all_tasks_blocked` awaits on
        this loop.

        .. versionadded:: 0.1.0
        """
        waiter: asyncio.Future[None] = self.create_future()
        self._idle_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._idle_waiters:  # cancelled before woken
                self._idle_waiters.remove(waiter)

    def wake_idle_waiters(self) -> bool:
        """
        Wake every task in :meth:`wait_until_idle`; say if there was one.

        The loop's selector calls it when nothing can run.
        """
        waiters, self._idle_waiters = self._idle_waiters, []
        woken = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
                woken = True
        return woken


def run_virtual(
    fn: Callable[..., Awaitable[T]], *args: Any, backend: str = "trio"
) -> T:
    """
    Run ``fn(*args)`` on *backend* ("trio" or "asyncio") in virtual time.

    On trio the clock is ``MockClock(autojump_threshold=0)``; on asyncio it
    is :class:`VirtualTimeEventLoop`.  Both start at 0.

    .. versionadded:: 0.1.0
    """
    import anyio  # noqa: PLC0415

    if backend == "trio":
        from trio.testing import MockClock  # noqa: PLC0415

        options: dict[str, Any] = {"clock": MockClock(autojump_threshold=0)}
    elif backend == "asyncio":
        options = {"loop_factory": VirtualTimeEventLoop}
    else:
        msg = f"backend must be 'trio' or 'asyncio', got {backend!r}"
        raise ValueError(msg)
    return anyio.run(fn, *args, backend=backend, backend_options=options)


async def wait_all_tasks_blocked() -> None:
    """
    Return once every other task is blocked, without moving virtual time.

    On trio this is :func:`trio.testing.wait_all_tasks_blocked`.  On a
    :class:`VirtualTimeEventLoop` the loop wakes the caller as soon as
    nothing else can run, before it would move the clock.  On any other
    asyncio loop, where time is real, it is
    :func:`anyio.wait_all_tasks_blocked`, which polls every 0.1 s.

    .. versionadded:: 0.1.0
    """
    import sniffio  # noqa: PLC0415

    if sniffio.current_async_library() == "trio":
        import trio.testing  # noqa: PLC0415

        await trio.testing.wait_all_tasks_blocked()
        return
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualTimeEventLoop):
        await loop.wait_until_idle()
    else:
        import anyio  # noqa: PLC0415

        await anyio.wait_all_tasks_blocked()
