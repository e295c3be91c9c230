"""
The health monitor: a background task that logs warning signs.

Every interval it compares the watched objects' counters with those of
the previous tick, so that each line is about *that* interval: a success
rate computed over the process's whole life would hide an outage behind
hours of good traffic (a monitor that divides the cumulative totals
would; this one does not).
"""

from __future__ import annotations

import logging
import math
import weakref

from typing import TYPE_CHECKING, Final, NoReturn

import anyio
import anyio.abc
import attrs

from ._watch import Watchlist


if TYPE_CHECKING:
    from ._watch import Reading


DEFAULT_INTERVAL: Final = 30.0  # seconds between checks
DEFAULT_SUCCESS_RATE_THRESHOLD: Final = 0.95  # ratio


@attrs.frozen(kw_only=True)
class HealthReport:
    """
    What happened in one health-monitor interval.

    .. versionadded:: 0.1.0
    """

    successful_requests: int
    """Pipeline calls that returned."""
    failed_requests: int
    """Pipeline calls that raised (rejections and timeouts included)."""
    circuit_breaker_trips: int
    """Times a watched circuit opened."""
    bulkhead_rejections: int
    """Calls a watched bulkhead rejected."""

    @property
    def success_rate(self) -> float | None:
        """
        Successes over successes plus failures; ``None`` with no calls.

        Cancelled calls are neither, and do not count.
        """
        finished = self.successful_requests + self.failed_requests
        return self.successful_requests / finished if finished else None


@attrs.define(eq=False)
class _Baseline:
    """The counters seen at the last tick, per object (held weakly)."""

    counts: weakref.WeakKeyDictionary[object, tuple[int, ...]] = attrs.field(
        factory=weakref.WeakKeyDictionary
    )

    def advance(self, reading: Reading) -> HealthReport:
        """The report since the last call; *reading* becomes the base."""
        # An object first seen now was watched during the interval (or
        # created in it): all its counts so far belong to this interval.
        successes = failures = trips = rejections = 0
        for pipeline, p in reading.pipelines:
            ok, failed = self._delta(
                pipeline, (p.successful_requests, p.failed_requests)
            )
            successes += ok
            failures += failed
        for breaker, b in reading.breakers:
            trips += self._delta(breaker, (b.trips,))[0]
        for bulkhead, h in reading.bulkheads:
            rejections += self._delta(bulkhead, (h.rejected_requests,))[0]
        return HealthReport(
            successful_requests=successes,
            failed_requests=failures,
            circuit_breaker_trips=trips,
            bulkhead_rejections=rejections,
        )

    def _delta(self, obj: object, now: tuple[int, ...]) -> tuple[int, ...]:
        before = self.counts.get(obj, (0,) * len(now))
        self.counts[obj] = now
        return tuple(n - b for n, b in zip(now, before, strict=True))


def _format_ratio(ratio: float) -> str:
    """0.95 -> '95%', 0.999 -> '99.9%'."""
    return f"{ratio * 100:.6g}%"


def log_health_report(
    report: HealthReport,
    *,
    success_rate_threshold: float = DEFAULT_SUCCESS_RATE_THRESHOLD,
    logger: logging.Logger | None = None,
) -> None:
    """
    Log the warning signs in *report*, as :func:`run_health_monitor` does.

    Logs, at WARNING, each that applies, in this order:
    ``Success rate below 95%: 87.50%`` (only when calls ended in the
    interval), ``Circuit breaker trips detected: 2`` and ``Bulkhead
    rejections: 3``.

    .. versionadded:: 0.1.0
    """
    log = logger if logger is not None else logging.getLogger("resilient_mcp")
    rate = report.success_rate
    if rate is not None and rate < success_rate_threshold:
        log.warning(
            "Success rate below %s: %.2f%%",
            _format_ratio(success_rate_threshold),
            rate * 100,
        )
    if report.circuit_breaker_trips:
        log.warning(
            "Circuit breaker trips detected: %d", report.circuit_breaker_trips
        )
    if report.bulkhead_rejections:
        log.warning("Bulkhead rejections: %d", report.bulkhead_rejections)


async def run_health_monitor(
    watchlist: Watchlist,
    *,
    interval: float = DEFAULT_INTERVAL,
    success_rate_threshold: float = DEFAULT_SUCCESS_RATE_THRESHOLD,
    logger: logging.Logger | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """
    Every *interval* seconds, log what went wrong in the last interval.

    Like a nurse's round: every half hour, check each patient's chart for
    what changed since the last round, and call the doctor only about
    that.  Start it in a task group you own; it runs until cancelled::

        async with anyio.create_task_group() as tg:
            await tg.start(run_health_monitor, watchlist)

    Each tick compares the watched objects' counters with the previous
    tick's and logs on *logger*, at WARNING (see
    :func:`log_health_report`):

    - ``Success rate below 95%: 87.50%``: the watched pipelines' successes
      over their successes plus failures in the interval, when below
      *success_rate_threshold* and at least one call ended;
    - ``Circuit breaker trips detected: N``: circuits that opened;
    - ``Bulkhead rejections: N``: calls rejected by a full bulkhead.

    Ticks follow the event loop's clock, at exact multiples of *interval*
    after the start, unless a tick runs late; then the next one comes a
    full *interval* after it.

    Args:
        watchlist: The objects to check.
        interval: Seconds between checks.
        success_rate_threshold: The ratio (0 to 1) below which the success
            rate is logged.
        logger: Where to log; ``None`` for the ``resilient_mcp`` logger.
        task_status: Started once the first counters are taken: what
            happens after that counts.

    Raises:
        ValueError: *interval* is not a positive finite number, or the
            threshold is not between 0 and 1.

    .. versionadded:: 0.1.0
    """
    if not 0 < interval < math.inf:
        raise ValueError(
            f"interval must be finite seconds > 0, got {interval!r}"
        )
    if not 0 <= success_rate_threshold <= 1:
        raise ValueError(
            "success_rate_threshold must be a ratio from 0 to 1, got "
            f"{success_rate_threshold!r}"
        )
    baseline = _Baseline()
    baseline.advance(watchlist.read())
    next_tick = anyio.current_time() + interval
    task_status.started()
    while True:
        await anyio.sleep_until(next_tick)
        log_health_report(
            baseline.advance(watchlist.read()),
            success_rate_threshold=success_rate_threshold,
            logger=logger,
        )
        next_tick += interval
        now = anyio.current_time()
        if next_tick <= now:
            next_tick = now + interval
