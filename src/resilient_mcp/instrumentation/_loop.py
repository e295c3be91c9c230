"""
A way into a running event loop from a foreign thread, with a timeout.

:class:`~._watch.Watchlist` reads its objects in the event loop's thread;
this module finds the loop running in this thread, and hands a call to
it from any other thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars

from collections.abc import Callable
from typing import TypeVar, final

import attrs
import sniffio


T = TypeVar("T")


class LoopFinishedError(Exception):
    """The event loop a :class:`LoopHandle` points to has finished."""


@final
@attrs.frozen
class LoopHandle:
    """
    A way into one running event loop from any other thread.

    Each backend's own public entry point for foreign threads does the
    work: :meth:`trio.lowlevel.TrioToken.run_sync_soon` on trio and
    :meth:`asyncio.loop.call_soon_threadsafe` on asyncio.  (AnyIO's
    ``from_thread.run_sync(..., token=...)`` is the portable one, but it
    waits without a timeout; see :func:`call_in_loop`.)
    """

    schedule: Callable[[Callable[[], None]], None]
    """Schedules a callback in the loop and returns at once.

    Raises :class:`LoopFinishedError` once the loop has finished."""


def this_threads_loop() -> LoopHandle | None:
    """The event loop running in this thread, if any."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    if library == "trio":
        return _trio_handle()
    if library == "asyncio":
        return _asyncio_handle(asyncio.get_running_loop())
    return None  # pragma: no cover - a loop AnyIO does not support


def _trio_handle() -> LoopHandle:
    import trio  # noqa: PLC0415 - loaded already: trio is running

    token = trio.lowlevel.current_trio_token()

    def schedule(fn: Callable[[], None]) -> None:
        try:
            # The caller's context, as anyio.from_thread does.
            token.run_sync_soon(contextvars.copy_context().run, fn)
        except trio.RunFinishedError:
            raise LoopFinishedError from None

    return LoopHandle(schedule)


def _asyncio_handle(loop: asyncio.AbstractEventLoop) -> LoopHandle:
    def schedule(fn: Callable[[], None]) -> None:
        # A callback is no task, so sniffio (and through it AnyIO) cannot
        # tell which library runs it unless told, as anyio.from_thread
        # tells it.
        context = contextvars.copy_context()
        context.run(sniffio.current_async_library_cvar.set, "asyncio")
        try:
            loop.call_soon_threadsafe(fn, context=context)
        except RuntimeError:
            if loop.is_closed():
                raise LoopFinishedError from None
            raise

    return LoopHandle(schedule)


def call_in_loop(
    loop: LoopHandle,
    fn: Callable[[], T],
    timeout: float,
) -> T:
    """
    Run ``fn()`` in *loop*, waiting at most *timeout* seconds.

    ``anyio.from_thread.run_sync`` waits forever, which deadlocks when the
    loop thread is itself blocked waiting for this thread (a loop that
    calls an OpenTelemetry ``force_flush`` while the periodic reader is
    collecting).  This schedules the call without waiting and waits on a
    future with a timeout instead.

    Raises:
        LoopFinishedError: The loop has finished.
        TimeoutError: The loop did not run *fn* within *timeout*.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return  # the caller gave up waiting
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the waiting thread
            future.set_exception(exc)

    loop.schedule(run)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(
            f"the event loop did not answer within {timeout:g}s"
        ) from None
