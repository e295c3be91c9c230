"""
What a policy asks of a shared state store.

A policy with ``store=None`` (the default) keeps its state in its own
fields, in-process, exactly as before: the in-process store is the
policy itself, and it costs nothing.  A policy given a store shares what
the fleet must agree on (a rate limiter's theoretical arrival time, a
retry budget's buckets, a circuit breaker's state and window) through
the operations below, each one atomic on the store's side, and keeps
its local state warm for when the store fails: every operation returns
``None`` instead of raising when the store is down or slower than its
timeout, and the policy then decides alone (it *fails open*).

Times on the store's side are the store's own clock (Redis ``TIME``), so
that processes on hosts whose clocks disagree still share one timeline;
the policies pass durations, never instants.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import attrs


REPORT: Final = 0  # a breaker's counts, or a read (no counts)
LEASE: Final = 1  # ask for the fleet's half-open probe lease
PROBE_CLOSED: Final = 2  # the lease holder's probes closed the circuit
PROBE_FAILED: Final = 3  # a lease holder's probe failed: open anew


@attrs.frozen
class BreakerShape:
    """
    What a store needs of a circuit breaker's config to share it.

    :meth:`StateStore.breaker` receives it; only a store implementation
    needs it.

    .. versionadded:: 0.1.0
    """

    width: float
    """Seconds per bucket of the fleet's window."""
    buckets: int
    """Buckets in the window."""
    threshold: int
    """Failures in the window that open the circuit (count mode)."""
    rate: float
    """Failure ratio that opens it (rate mode); ``0.0``: count mode."""
    minimum: int
    """Calls in the window before the ratio counts (rate mode)."""
    recovery: float
    """Seconds the circuit stays open, and a probe lease lasts."""


class StateStore(Protocol):
    """
    Shared state for the policies of many processes.

    :class:`RedisStore` is the one implementation; the interface is small
    so that another engine needs only these six methods.

    .. versionadded:: 0.1.0
    """

    def available(self) -> bool:
        """
        Whether a policy should ask the store now.

        ``False`` during an outage, between the store's attempts to
        reconnect: the policy then decides alone at once, without waiting
        for a timeout.
        """

    async def gcra(
        self, name: str, interval: float, tolerance: float, max_wait: float
    ) -> tuple[bool, float] | None:
        """
        Take a turn from the shared GCRA limiter *name*, if one is near.

        Args:
            name: The limiter's name (part of the key).
            interval: Seconds between turns (``period / rate``).
            tolerance: GCRA's tau, seconds (``interval * (burst - 1)``).
            max_wait: Seconds a caller may wait for its turn.

        Returns:
            ``(True, wait)``: a turn is reserved *wait* seconds from now
            (``0.0``: at once); ``(False, wait)``: the next turn is
            *wait* seconds away, more than *max_wait*, nothing reserved;
            ``None``: the store failed (the caller decides alone).
        """

    async def budget(
        self, name: str, delta: int, width: float, buckets: int
    ) -> int | None:
        """
        Add *delta* tokens to the shared retry budget *name*; read its sum.

        Args:
            name: The budget's name (part of the key).
            delta: Tokens to add to the current bucket (deposits minus
                withdrawals; ``0`` only reads).
            width: Seconds per bucket.
            buckets: Buckets in the window; older ones expire.

        Returns:
            The fleet's tokens in the window after the addition, or
            ``None``: the store failed.
        """

    async def breaker(
        self,
        name: str,
        shape: BreakerShape,
        generation: int,
        counts: tuple[int, int],
        op: int,
    ) -> tuple[int, float | None, bool] | None:
        """
        Report to the fleet's breaker *name*, and read its state.

        Args:
            name: The breaker's name (part of the key).
            shape: Its window, thresholds and recovery timeout.
            generation: The fleet's generation the report belongs to
                (``-1``: none known yet); a report of another generation
                moves nothing.
            counts: Calls and failures (of those calls) to add while the
                fleet's circuit is closed.
            op: ``0`` a report (counts, or a read without them), ``1``
                ask for the fleet's half-open probe lease, ``2`` the
                lease holder's probes closed the circuit, ``3`` a probe
                failed (open anew).

        Returns:
            ``(generation, wait, granted)``: the fleet's generation;
            ``None`` when its circuit is closed, else the seconds until a
            probe may start (``0.0``: half-open); whether the probe lease
            is now the caller's.  ``None``: the store failed.
        """

    def hold(self, name: str, seconds: float, tolerance: float) -> None:
        """
        Admit no call of the limiter *name* for *seconds*, fleet-wide.

        Sent without waiting (a server's ``Retry-After`` seen by one
        process holds them all); moves the shared TAT forward, never
        back, as :meth:`RateLimiter.hold` moves its own.  Nothing is
        sent while the store is unavailable.

        Args:
            name: The limiter's name (part of the key).
            seconds: How long to hold, from the store's now.
            tolerance: The limiter's tau, seconds (no burst after it).
        """

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """
        Run ``await fn()`` in the store's own task group, without waiting.

        For counts that need no answer on the call's path.

        Returns:
            ``False`` when the store is not open: *fn* will not run.
        """
