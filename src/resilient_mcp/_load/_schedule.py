"""
The open-loop scheduler: requests start on a timetable, not on answers.

A closed-loop load generator sends the next request when the previous one
has answered.  When the server stalls, it stops sending, and the requests
that real callers would have sent during the stall are never made nor
measured: coordinated omission (Gil Tene, "How NOT to Measure Latency").
:func:`run_open_loop` does what wrk2 does instead: request *i* is
*intended* to start at ``origin + i / rate``, whatever became of the
others, and its latency is measured from that intended start.  The time
from its actual start (its service time) is recorded apart, so that the
two can be compared: the difference is time spent waiting to be sent.
"""

from __future__ import annotations

import math

from collections.abc import Awaitable, Callable
from typing import Any, Final, final

import anyio
import attrs

from .._timeouts import current_time
from ._series import LATENCY, SERVICE, SeriesLog


DEFAULT_MAX_IN_FLIGHT: Final = 1000  # requests running at once
DEFAULT_DRAIN: Final = 30.0  # seconds for requests in flight at the end
LATE: Final = 0.001  # seconds after its intended time a start is late


def _fail(inst: object, attribute: attrs.Attribute[Any], rule: str) -> None:
    value = getattr(inst, attribute.name, None)
    raise ValueError(
        f"{type(inst).__name__}.{attribute.name} must be {rule}, got {value!r}"
    )


def _positive(
    inst: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        _fail(inst, attribute, "a finite number > 0")


def _non_negative(
    inst: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        _fail(inst, attribute, "a finite number of seconds >= 0")


def _count(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool)):
        _fail(inst, attribute, "an integer >= 1")
    if value < 1:
        _fail(inst, attribute, "an integer >= 1")


@attrs.frozen(kw_only=True)
class LoadPlan:
    """
    The timetable of an open-loop run.

    >>> plan = LoadPlan(rate=50, duration=2)
    >>> plan.offered, plan.intended(1)
    (100, 0.02)

    Raises:
        ValueError: A value is out of range; the message names the field.

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_positive)
    """Requests per second, started at even intervals."""
    duration: float = attrs.field(validator=_positive)
    """Seconds during which requests are started."""
    max_in_flight: int = attrs.field(
        default=DEFAULT_MAX_IN_FLIGHT, validator=_count
    )
    """The most requests running at once.  A request whose time has come
    while this many run waits for one to end (its latency counting from
    its intended start); one that has not started by the end of
    ``duration`` (the cap, or a generator too busy to keep up) is shed:
    counted, never started."""
    drain: float = attrs.field(default=DEFAULT_DRAIN, validator=_non_negative)
    """Seconds the requests still running at the end of ``duration`` get
    to finish; those still running then are cancelled and counted as
    unfinished."""

    @property
    def offered(self) -> int:
        """How many requests the timetable holds: ``i / rate < duration``."""
        count = math.ceil(self.rate * self.duration)
        while count > 0 and (count - 1) / self.rate >= self.duration:
            count -= 1  # rate * duration rounded up past a whole number
        return count

    def intended(self, index: int) -> float:
        """When request *index* is meant to start, seconds from the origin."""
        return index / self.rate


@final
@attrs.define(eq=False)
class Tally:
    """
    What became of every request of the timetable.

    ``offered == started + shed`` and ``started == succeeded + failed +
    unfinished``, once :func:`run_open_loop` has returned.

    .. versionadded:: 0.1.0
    """

    offered: int
    """Requests in the timetable."""
    started: int = 0
    """Requests started."""
    shed: int = 0
    """Requests never started by the end of the duration: ``max_in_flight``
    were running, or the generator itself fell that far behind."""
    succeeded: int = 0
    """Requests that returned a result that is not an error."""
    failed: int = 0
    """Requests that raised, or returned an error result."""
    tool_errors: int = 0
    """Of ``failed``: the results that were errors (``is_error``)."""
    unfinished: int = 0
    """Requests still running when the drain ended (cancelled)."""
    late_starts: int = 0
    """Requests that started more than a millisecond after their intended
    time (they waited for a slot, or the event loop was busy)."""


@final
@attrs.define(eq=False)
class Timeline:
    """
    When the circuit first opened and when the service first recovered.

    Fed by :func:`run_open_loop` (each request's end) and by a circuit
    breaker listener (:meth:`circuit_changed`); times are seconds since
    the run's origin.

    The fault starts at the first failure after the last success before
    the circuit opened; the service has recovered at the first success
    after the circuit closed again.

    .. versionadded:: 0.1.0
    """

    origin: float = 0.0
    """The run's origin on the event loop's clock."""
    opens: int = 0
    """Times the circuit opened during the run."""
    fault_start: float | None = None
    """When the failures that opened the circuit first began."""
    opened_at: float | None = None
    """When the circuit first opened."""
    closed_at: float | None = None
    """When it first closed again after that."""
    recovered_at: float | None = None
    """The first success after that."""
    _streak: float | None = attrs.field(default=None, init=False)

    def success(self, now: float) -> None:
        """A request ended well at *now* (the event loop's clock)."""
        self._streak = None
        closed = self.closed_at
        if self.recovered_at is None and closed is not None:
            at = now - self.origin
            if at >= closed:
                self.recovered_at = at

    def failure(self, now: float) -> None:
        """A request failed at *now* (the event loop's clock)."""
        if self._streak is None:
            self._streak = now - self.origin

    def circuit_changed(self, state: str, now: float) -> None:
        """The circuit went to *state* (``"open"``, ``"closed"``...)."""
        at = now - self.origin
        if state == "open":
            self.opens += 1
            if self.opened_at is None:
                self.opened_at = at
                streak = self._streak
                self.fault_start = at if streak is None else streak
        elif (
            state == "closed"
            and self.opened_at is not None
            and self.closed_at is None
        ):
            self.closed_at = at

    @property
    def time_to_open(self) -> float | None:
        """Seconds from the fault's start to the circuit opening."""
        if self.opened_at is None or self.fault_start is None:
            return None
        return self.opened_at - self.fault_start

    @property
    def time_to_recover(self) -> float | None:
        """
        Seconds from the fault's start to the service's recovery.

        The recovery is the first success after the circuit closed again.
        """
        if self.recovered_at is None or self.fault_start is None:
            return None
        return self.recovered_at - self.fault_start


async def run_open_loop(
    plan: LoadPlan,
    call: Callable[[], Awaitable[bool]],
    *,
    series: SeriesLog,
    timeline: Timeline | None = None,
) -> Tally:
    """
    Start ``call()`` on *plan*'s timetable; wait for the calls to end.

    Request *i* starts at ``origin + i / rate`` (``origin`` is now), in a
    task of its own, whether or not earlier ones have answered.  Its
    latency, from its intended start to its end, goes to *series* under
    ``"latency"``; its service time, from its actual start, under
    ``"service"``.  Only requests that ended are recorded; the others are
    counted in the :class:`Tally`.

    Args:
        plan: The timetable and its bounds.
        call: One request: returns true for a success, false for an error
            result; an exception is a failure.
        series: Where latencies go.
        timeline: Told of every request's end, if given; its origin is set
            to the run's.

    Returns:
        The counts; ``offered == succeeded + failed + unfinished + shed``.

    .. versionadded:: 0.1.0
    """
    tally = Tally(offered=plan.offered)
    timeline = Timeline() if timeline is None else timeline
    slots = anyio.Semaphore(plan.max_in_flight)
    cancelled = anyio.get_cancelled_exc_class()
    origin = timeline.origin = current_time()

    async def one(intended: float) -> None:
        started = current_time()
        try:
            ok = await call()
        except cancelled:
            tally.unfinished += 1
            raise
        except Exception:
            ok = False
        else:
            tally.tool_errors += not ok
        finally:
            slots.release()
        end = current_time()
        series.record(LATENCY, end - intended)
        series.record(SERVICE, end - started)
        if ok:
            tally.succeeded += 1
            timeline.success(end)
        else:
            tally.failed += 1
            timeline.failure(end)

    end_of_starts = origin + plan.duration
    async with anyio.create_task_group() as tasks:
        with anyio.CancelScope(deadline=end_of_starts):
            for index in range(tally.offered):
                intended = origin + plan.intended(index)
                await anyio.sleep_until(intended)
                await slots.acquire()
                tally.started += 1
                if current_time() - intended > LATE:
                    tally.late_starts += 1
                tasks.start_soon(one, intended)
        tally.shed = tally.offered - tally.started
        tasks.cancel_scope.deadline = (
            max(current_time(), end_of_starts) + plan.drain
        )
    return tally
