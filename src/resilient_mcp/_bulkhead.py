"""
The bulkhead: a CapacityLimiter plus a bounded memory channel queue.

The limiter holds the running calls and the channel the waiting ones.

A call first tries to take a slot without waiting.  Only when that fails
does it reserve a place in the queue (a ``send_nowait`` into a memory
channel whose buffer is ``queue_size`` long) and wait on the limiter; a
full channel means a full queue, and the call is rejected at once.  The
limiter is FIFO, so waiting calls are served in arrival order.

Each call borrows its slot on behalf of a fresh token rather than of its
task, so one task may hold slots of the same bulkhead more than once (a
tool that calls another tool through the same client).
"""

from __future__ import annotations

import contextlib
import math
import weakref

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, final

import anyio
import attrs

from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
)

from ._config import BulkheadConfig
from ._errors import BulkheadError, CallTimeout
from ._metrics import LatencyHistogram
from ._timeouts import (
    WOULD_BLOCK,
    DeadlineExpired,
    current_time,
    deadline_scope,
    new_limiter,
    rejection_checkpoint,
)


T = TypeVar("T")


@attrs.frozen(kw_only=True)
class BulkheadMetrics:
    """
    A snapshot of a bulkhead's counters.

    Every call that entered is in exactly one of ``active_requests``,
    ``queued_requests``, ``rejected_requests``, ``completed_requests`` and
    ``abandoned_requests``.

    .. versionadded:: 0.1.0
    """

    name: str
    """The bulkhead's name (its ``resource_name``)."""
    max_concurrent_requests: int
    """The configured number of slots."""
    queue_size: int
    """The configured number of waiting places."""
    active_requests: int
    """Calls running now."""
    queued_requests: int
    """Calls waiting for a slot now."""
    rejected_requests: int
    """Calls rejected at once because the queue was full."""
    completed_requests: int
    """Calls that ran and ended (returned, raised, timed out or were
    cancelled while running)."""
    abandoned_requests: int
    """Calls that left the queue without running (timed out or cancelled
    while waiting)."""
    timed_out_requests: int
    """Calls ended by ``request_timeout`` (while waiting or running)."""
    average_wait_time: float
    """Mean seconds spent queued, over the calls admitted to run."""
    p50_wait_time: float
    """Median seconds spent queued, over the calls admitted to run."""
    p95_wait_time: float
    """95th percentile of the seconds spent queued."""
    p99_wait_time: float
    """99th percentile of the seconds spent queued."""
    max_wait_time: float
    """Longest time spent queued, in seconds."""


def _config_or_default(config: BulkheadConfig | None) -> BulkheadConfig:
    return BulkheadConfig() if config is None else config


def _close_streams(*streams: Any) -> None:
    for stream in streams:
        stream.close()


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class Bulkhead:
    """
    Limit how many calls run at once, and how many may wait their turn.

    Like the watertight compartments of a ship's hull: a flood of calls to
    one slow service fills its own compartment and stops there, instead of
    sinking every other part of the application with it.  At most
    ``max_concurrent_requests`` calls run at once, at most ``queue_size``
    more wait, and any further call is rejected at once with
    :class:`BulkheadError`.

    >>> tools = Bulkhead(BulkheadConfig(name="tools"))
    >>> # result = await tools.call(session.call_tool, "echo", {"x": 1})

    Args:
        config: The configuration; ``None`` for the seed's defaults.

    .. versionadded:: 0.1.0
    """

    config: BulkheadConfig = attrs.field(
        default=None, converter=_config_or_default
    )

    # Created on first use, native to the running backend: a bulkhead
    # belongs to one event loop, like the limiter inside it.
    _limiter: Any = attrs.field(init=False, default=None)
    _queue_in: MemoryObjectSendStream[None] = attrs.field(init=False)
    _queue_out: MemoryObjectReceiveStream[None] = attrs.field(init=False)
    _timeout: float | None = attrs.field(init=False)
    _where: str = attrs.field(init=False)
    _active: int = attrs.field(init=False, default=0)
    _queued: int = attrs.field(init=False, default=0)
    _rejected: int = attrs.field(init=False, default=0)
    _completed: int = attrs.field(init=False, default=0)
    _abandoned: int = attrs.field(init=False, default=0)
    _timed_out: int = attrs.field(init=False, default=0)
    _waited_calls: int = attrs.field(init=False, default=0)
    _wait_sum: float = attrs.field(init=False, default=0.0)
    _zero_waits: int = attrs.field(init=False, default=0)
    _wait_hist: LatencyHistogram = attrs.field(
        init=False, factory=LatencyHistogram
    )

    def __attrs_post_init__(self) -> None:
        config = self.config
        self._queue_in, self._queue_out = anyio.create_memory_object_stream[
            None
        ](config.queue_size)
        # The bulkhead has no lifetime of its own to close the channel in;
        # close it when the bulkhead goes away (anyio warns otherwise).
        weakref.finalize(self, _close_streams, self._queue_in, self._queue_out)
        self._timeout = config.request_timeout
        self._where = f"bulkhead {config.name!r}"

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self.config.name!r}: {self._active}/"
            f"{self.config.max_concurrent_requests} active, {self._queued}/"
            f"{self.config.queue_size} queued, {self._rejected} rejected>"
        )

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self.config.name

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)`` in a slot, waiting in the queue if need be.

        Args:
            fn: An async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned.

        Raises:
            BulkheadError: No slot was free and the queue was full; *fn*
                was not called.
            CallTimeout: ``request_timeout`` passed while waiting or
                running.
            Exception: Whatever *fn* raised, unchanged.
        """
        borrower = object()
        limiter = self._limiter or self._make_limiter()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except WOULD_BLOCK:
            pass
        else:
            self._zero_waits += 1
            return await self._run(fn, args, borrower)
        # Wait outside the `except` block: inside it, the WouldBlock and its
        # traceback would stay alive for the whole wait (about 1.4 KB per
        # queued caller).
        return await self._call_queued(fn, args, borrower)

    async def call_nowait(
        self, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """
        Run ``await fn(*args)`` only if a slot is free right now.

        Raises:
            BulkheadError: No slot was free (``queue_full`` is False: the
                call did not try to queue).
            CallTimeout: ``request_timeout`` passed while running.
            Exception: Whatever *fn* raised, unchanged.
        """
        borrower = object()
        limiter = self._limiter or self._make_limiter()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except WOULD_BLOCK:
            self._rejected += 1
            await rejection_checkpoint()
            raise BulkheadError(self.config.name, queue_full=False) from None
        self._zero_waits += 1
        return await self._run(fn, args, borrower)

    async def call_deferring_deadline(
        self, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """
        Like :meth:`call`, but hand the deadline to *fn* instead of a scope.

        On the fast path (a free slot) *fn* is called as
        ``fn(deadline, *args)`` with the absolute time ``request_timeout``
        ends (``inf`` for none), and must enforce it in its own cancel
        scope, raising :class:`~resilient_mcp._timeouts.DeadlineExpired`
        when it passes; the bulkhead then raises its
        :class:`CallTimeout`.  That saves the pipeline one cancel scope per
        call.  A queued call waits and runs inside the bulkhead's own
        scope, and *fn* gets ``inf``.
        """
        borrower = object()
        limiter = self._limiter or self._make_limiter()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except WOULD_BLOCK:
            queued = True
        else:
            queued = False
        if queued:  # outside the `except` block, as in call()
            return await self._call_queued(fn, (math.inf, *args), borrower)
        self._zero_waits += 1
        self._active += 1
        try:
            timeout = self._timeout
            if timeout is None:
                return await fn(math.inf, *args)
            try:
                return await fn(current_time() + timeout, *args)
            except DeadlineExpired:
                self._timed_out += 1
                raise CallTimeout(timeout, self._where) from None
        finally:
            self._active -= 1
            self._completed += 1
            limiter.release_on_behalf_of(borrower)

    def _make_limiter(self) -> Any:
        self._limiter = new_limiter(self.config.max_concurrent_requests)
        return self._limiter

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        borrower: object,
    ) -> T:
        self._active += 1
        try:
            timeout = self._timeout
            if timeout is None:
                return await fn(*args)
            with deadline_scope(current_time() + timeout):
                return await fn(*args)
            self._timed_out += 1
            raise CallTimeout(timeout, self._where)
        finally:
            self._active -= 1
            self._completed += 1
            self._limiter.release_on_behalf_of(borrower)

    async def _call_queued(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        borrower: object,
    ) -> T:
        try:
            self._queue_in.send_nowait(None)
        except anyio.WouldBlock:
            self._rejected += 1
            await rejection_checkpoint()
            raise BulkheadError(self.config.name, queue_full=True) from None
        self._queued += 1
        start = current_time()
        timeout = self._timeout
        # No scope at all without a deadline: each costs memory per waiter.
        scope: Any = (
            contextlib.nullcontext()
            if timeout is None
            else deadline_scope(start + timeout)
        )
        with scope:
            try:
                await self._limiter.acquire_on_behalf_of(borrower)
            except BaseException:
                self._abandoned += 1
                raise
            finally:
                self._queued -= 1
                self._queue_out.receive_nowait()
            waited = current_time() - start
            self._waited_calls += 1
            self._wait_sum += waited
            self._wait_hist.record(waited)
            self._active += 1
            try:
                return await fn(*args)
            finally:
                self._active -= 1
                self._completed += 1
                self._limiter.release_on_behalf_of(borrower)
        # Only our own deadline gets here: an outer cancellation propagates.
        assert timeout is not None  # noqa: S101
        self._timed_out += 1
        raise CallTimeout(timeout, self._where)

    def metrics(self) -> BulkheadMetrics:
        """
        Take a snapshot of the bulkhead's counters.

        Returns:
            A frozen :class:`BulkheadMetrics`.
        """
        hist = self._wait_hist
        if self._zero_waits:
            # Calls that found a free slot waited zero seconds; they are
            # added to the histogram in one batch here, not one by one on
            # the hot path.
            hist.record_us(0, self._zero_waits)
            self._waited_calls += self._zero_waits
            self._zero_waits = 0
        admitted = self._waited_calls
        return BulkheadMetrics(
            name=self.config.name,
            max_concurrent_requests=self.config.max_concurrent_requests,
            queue_size=self.config.queue_size,
            active_requests=self._active,
            queued_requests=self._queued,
            rejected_requests=self._rejected,
            completed_requests=self._completed,
            abandoned_requests=self._abandoned,
            timed_out_requests=self._timed_out,
            average_wait_time=self._wait_sum / admitted if admitted else 0.0,
            p50_wait_time=hist.percentile(50),
            p95_wait_time=hist.percentile(95),
            p99_wait_time=hist.percentile(99),
            max_wait_time=hist.max(),
        )
