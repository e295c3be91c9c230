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

The limiter is native to the backend that runs the call (trio's own on
trio, anyio's on asyncio), and a limiter of one backend cannot make a
caller of the other wait.  So whenever the bulkhead is idle (nothing
running, nothing queued) and the running backend is not the limiter's,
the bulkhead makes a new limiter for it; a call on the other backend
while calls still hold slots is refused with a ``RuntimeError`` that says
so (issue 12, item 9).
"""

from __future__ import annotations

import contextlib
import weakref

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, final

import anyio
import attrs

from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
)

from ._adaptive_limit import AdaptiveLimit, Permit
from ._config import BulkheadConfig
from ._engine import Plan
from ._errors import BulkheadError, CallTimeout
from ._metrics import LatencyHistogram
from ._policy import PolicyBase
from ._timeouts import (
    WOULD_BLOCK,
    checkpoint,
    current_time,
    deadline_scope,
    new_limiter,
    on_trio,
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
    limit: int
    """The slots now: ``max_concurrent_requests``, or for an adaptive
    bulkhead the limit its algorithm set last.

    .. versionadded:: 0.1.0"""
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
    """Calls that left without running: timed out or cancelled while
    waiting, or cancelled at the checkpoint of their rejection."""
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
class Bulkhead(PolicyBase):
    """
    Limit how many calls run at once, and how many may wait their turn.

    Like the watertight compartments of a ship's hull: a flood of calls to
    one slow service fills its own compartment and stops there, instead of
    sinking every other part of the application with it.  At most
    ``max_concurrent_requests`` calls run at once, at most ``queue_size``
    more wait, and any further call is rejected at once with
    :class:`BulkheadError`.
    With ``BulkheadConfig(adaptive=...)`` the number of slots follows the
    measured latency instead (:class:`AdaptiveLimitConfig`).

    >>> tools = Bulkhead(BulkheadConfig(name="tools"))
    >>> # result = await tools.call(session.call_tool, "echo", {"x": 1})

    Args:
        config: The configuration; ``None`` for the defaults.

    .. versionadded:: 0.1.0
    """

    config: BulkheadConfig = attrs.field(
        default=None, converter=_config_or_default
    )

    # Created on first use, native to the running backend, and made anew
    # when an idle bulkhead is used on the other backend.
    _limiter: Any = attrs.field(init=False, default=None)
    _limiter_on_trio: bool = attrs.field(init=False, default=False)
    # BulkheadConfig.adaptive's algorithm, fed by leave().
    _adaptive: AdaptiveLimit | None = attrs.field(init=False, default=None)
    _queue_in: MemoryObjectSendStream[None] = attrs.field(init=False)
    _queue_out: MemoryObjectReceiveStream[None] = attrs.field(init=False)
    # The plans of call() and call_nowait(), made on first use.
    _plan: Plan | None = attrs.field(init=False, default=None)
    _nowait_plan: Plan | None = attrs.field(init=False, default=None)
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
        if config.adaptive is not None:
            self._adaptive = AdaptiveLimit(config.adaptive)
        self._queue_in, self._queue_out = anyio.create_memory_object_stream[
            None
        ](config.queue_size)
        # The bulkhead has no lifetime of its own to close the channel in;
        # close it when the bulkhead goes away (anyio warns otherwise).
        weakref.finalize(self, _close_streams, self._queue_in, self._queue_out)

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self.config.name!r}: {self._active}/"
            f"{self.limit} active, {self._queued}/"
            f"{self.config.queue_size} queued, {self._rejected} rejected>"
        )

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self.config.name

    @property
    def limit(self) -> int:
        """
        The slots now: fixed, or the adaptive limit's latest value.

        .. versionadded:: 0.1.0
        """
        adaptive = self._adaptive
        return (
            self.config.max_concurrent_requests
            if adaptive is None
            else adaptive.limit
        )

    @property
    def where(self) -> str:
        """What the bulkhead is called in errors: ``bulkhead 'x'``."""
        return f"bulkhead {self.config.name!r}"

    @property
    def time_limit(self) -> float | None:  # type: ignore[override]
        """``request_timeout``: seconds for the wait plus the run."""
        return self.config.request_timeout

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
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(call_policies=(self,))
        return await plan.run(fn, args)

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
        plan = self._nowait_plan
        if plan is None:
            plan = self._nowait_plan = Plan(call_policies=(_NoQueue(self),))
        return await plan.run(fn, args)

    # -- the policy interface -------------------------------------------

    def enter_nowait(self, now: float) -> object:
        """
        Take a free slot at once.

        Returns:
            The permit for :meth:`leave`: the token the slot is borrowed
            for (a fresh one per call, so that one task may hold several
            slots of the same bulkhead).

        Raises:
            trio.WouldBlock: No slot is free: :meth:`enter` queues.
        """
        adaptive = self._adaptive
        borrower = (
            object() if adaptive is None else Permit(now, self._active + 1)
        )
        limiter = self._limiter
        if limiter is None or self._limiter_on_trio is not on_trio():
            limiter = self._make_limiter()
        limiter.acquire_on_behalf_of_nowait(borrower)
        self._zero_waits += 1
        self._active += 1
        return borrower

    async def enter(self, now: float) -> object:
        """
        Wait in the queue for a slot, from the arrival time *now*.

        Raises:
            BulkheadError: The queue is full too (after a checkpoint).
            CallTimeout: ``request_timeout`` passed while waiting.
        """
        try:
            self._queue_in.send_nowait(None)
        except anyio.WouldBlock:
            full = True
        else:
            full = False
        if full:  # outside the `except` block: no traceback kept alive
            # The checkpoint first: a caller cancelled there gets its
            # cancellation and is not counted as rejected (the pipeline
            # counts it cancelled too: one outcome per call).
            try:
                await checkpoint()
            except BaseException:
                self._abandoned += 1
                raise
            raise self.refuse(queue_full=True)
        self._queued += 1
        borrower = object() if self._adaptive is None else Permit(now, 0)
        timeout = self.config.request_timeout
        # No scope at all without a deadline: each costs memory per waiter.
        scope: Any = (
            contextlib.nullcontext()
            if timeout is None
            else deadline_scope(now + timeout)
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
            waited = current_time() - now
            self._waited_calls += 1
            self._wait_sum += waited
            self._wait_hist.record(waited)
            self._active += 1
            if type(borrower) is Permit:  # it starts running now
                borrower.started = now + waited
                borrower.inflight = self._active
            return borrower
        # Only our own deadline gets here: an outer cancellation propagates.
        assert timeout is not None  # noqa: S101
        self._timed_out += 1
        raise CallTimeout(timeout, self.where)

    def leave(
        self,
        permit: object,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """Give back the slot *permit* holds, however the call ended."""
        adaptive = self._adaptive
        if adaptive is not None:
            # A new limit first, so that the release wakes no call that
            # a smaller limit would keep waiting.
            limit = adaptive.sample(permit, now, error)
            if limit is not None:
                self._limiter.total_tokens = limit
        self._active -= 1
        self._completed += 1
        self._limiter.release_on_behalf_of(permit)

    def withdraw(self, error: Exception) -> None:
        """A rejection whose caller was cancelled: counted as abandoned."""
        self._rejected -= 1
        self._abandoned += 1

    def expired(self, permit: object) -> CallTimeout:
        """Count a call that outlived ``request_timeout``; its error."""
        self._timed_out += 1
        timeout = self.config.request_timeout
        assert timeout is not None  # noqa: S101
        return CallTimeout(timeout, self.where)

    def refuse(self, *, queue_full: bool) -> BulkheadError:
        """
        Count a rejected call, and return the error to raise.

        Args:
            queue_full: Whether the call was refused a place in the queue
                (else it did not try to queue: :meth:`call_nowait`).
        """
        self._rejected += 1
        return BulkheadError(self.config.name, queue_full=queue_full)

    def _make_limiter(self) -> Any:
        """
        A limiter for the running backend, replacing one of the other.

        Raises:
            RuntimeError: Calls on the other backend still hold or wait
                for slots: the two backends cannot share the limiter.
        """
        if self._active or self._queued:
            other = "asyncio" if on_trio() else "trio"
            raise RuntimeError(
                f"{self.where} is in use on {other} ({self._active} "
                f"running, {self._queued} queued); a bulkhead serves one "
                "backend at a time: wait for those calls to end, or give "
                "each event loop its own bulkhead"
            )
        self._limiter_on_trio = on_trio()
        self._limiter = new_limiter(self.limit)
        return self._limiter

    def _flushed_wait_histogram(self) -> LatencyHistogram:
        hist = self._wait_hist
        if self._zero_waits:
            # Calls that found a free slot waited zero seconds; they are
            # added to the histogram in one batch here, not one by one on
            # the hot path.
            hist.record_us(0, self._zero_waits)
            self._waited_calls += self._zero_waits
            self._zero_waits = 0
        return hist

    def wait_histogram(self) -> LatencyHistogram:
        """
        A copy of the histogram of the seconds calls waited for a slot.

        One value per call admitted to run (0 for a call that found a free
        slot), since the bulkhead was created: what the ``*_wait_time``
        fields of :meth:`metrics` summarise, and what the Prometheus
        exporter turns into buckets.

        .. versionadded:: 0.1.0
        """
        return self._flushed_wait_histogram().copy()

    def metrics(self) -> BulkheadMetrics:
        """
        Take a snapshot of the bulkhead's counters.

        Returns:
            A frozen :class:`BulkheadMetrics`.
        """
        hist = self._flushed_wait_histogram()
        admitted = self._waited_calls
        return BulkheadMetrics(
            name=self.config.name,
            max_concurrent_requests=self.config.max_concurrent_requests,
            limit=self.limit,
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


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class _NoQueue(PolicyBase):
    """A bulkhead that never queues: the policy of ``call_nowait``."""

    bulkhead: Bulkhead

    @property
    def name(self) -> str:
        return self.bulkhead.name

    @property
    def time_limit(self) -> float | None:  # type: ignore[override]
        return self.bulkhead.time_limit

    def enter_nowait(self, now: float) -> object:
        try:
            return self.bulkhead.enter_nowait(now)
        except WOULD_BLOCK:
            pass
        raise self.bulkhead.refuse(queue_full=False)

    def leave(
        self,
        permit: object,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        self.bulkhead.leave(permit, now, elapsed, error)

    def expired(self, permit: object) -> CallTimeout:
        return self.bulkhead.expired(permit)

    def withdraw(self, error: Exception) -> None:
        self.bulkhead.withdraw(error)
