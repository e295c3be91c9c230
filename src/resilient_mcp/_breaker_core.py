"""
The circuit breaker's state machine: plain data and functions of ``now``.

Nothing here reads a clock, awaits, logs or calls a listener: every method
takes the current time as an argument, changes the counters, and returns
the :class:`Transition` it made, if any, for the shell
(:class:`~resilient_mcp.CircuitBreaker`) to announce afterwards.  Reading
(:meth:`BreakerCore.effective_state`, :meth:`BreakerCore.window_counts`)
never changes anything.

Each state change starts a new *generation*.  A call remembers the
generation it was admitted in (its permit); when it finishes in a later
generation its outcome still goes into the totals but no longer moves the
state machine.  That is how "every state change starts a fresh window"
holds even for calls that were in flight when the circuit opened or
closed.
"""

from __future__ import annotations

import enum

from collections import deque
from collections.abc import Callable
from typing import Final, final

import attrs

from ._config import CircuitBreakerConfig
from ._errors import PermanentError


class CircuitState(enum.Enum):
    """
    The three states of a circuit breaker.

    .. versionadded:: 0.1.0
    """

    CLOSED = "closed"
    """Normal operation: calls pass through and their failures count."""
    OPEN = "open"
    """Too many failures: calls fail fast without running."""
    HALF_OPEN = "half_open"
    """Probing: a limited number of calls test whether the service is back."""


# The states as module constants for the hot paths: on Python 3.11,
# reading an enum member off its class (`CircuitState.CLOSED`) runs Python
# code and costs about 0.15 us; a global costs next to nothing.
CLOSED: Final = CircuitState.CLOSED
OPEN: Final = CircuitState.OPEN
HALF_OPEN: Final = CircuitState.HALF_OPEN

REJECTED: Final = -1
"""What :meth:`BreakerCore.admit` returns for a call it turns away."""


@final
@attrs.frozen
class Transition:
    """A change of state, for the shell to log and announce."""

    old: CircuitState
    new: CircuitState
    at: float | None


def _default_is_failure(exc: BaseException) -> bool:
    return not isinstance(exc, PermanentError)


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Window:
    """
    The sliding window of rate mode: call and failure counts per bucket.

    Only a breaker in rate mode has one; in count mode the times of the
    last failures are all it needs.
    """

    width: float
    """Seconds per bucket."""
    epoch: list[int]
    """Per bucket, which bucket-width period it counts (-1: none)."""
    calls: list[int]
    """Per bucket, the calls counted."""
    failures: list[int]
    """Per bucket, the failures counted."""
    total_calls: int = 0
    """The sum of ``calls`` over the buckets still in the window."""
    total_failures: int = 0
    """The sum of ``failures`` over the buckets still in the window."""

    @classmethod
    def empty(cls, window: float, buckets: int) -> Window:
        """A window of *buckets* buckets covering *window* seconds."""
        return cls(
            window / buckets, [-1] * buckets, [0] * buckets, [0] * buckets
        )

    def clear(self) -> None:
        """Forget every count."""
        for i in range(len(self.epoch)):
            self.epoch[i] = -1
            self.calls[i] = 0
            self.failures[i] = 0
        self.total_calls = 0
        self.total_failures = 0

    def add(self, now: float, *, failed: bool) -> None:
        """Count a call that ended at *now*."""
        index = self._slide(now)
        self.calls[index] += 1
        self.total_calls += 1
        if failed:
            self.failures[index] += 1
            self.total_failures += 1

    def counts(self, now: float) -> tuple[int, int]:
        """The calls and failures of the window ending at *now*."""
        oldest = int(now // self.width) - len(self.epoch)
        calls = failures = 0
        for i, epoch in enumerate(self.epoch):
            if epoch > oldest:
                calls += self.calls[i]
                failures += self.failures[i]
        return calls, failures

    def _slide(self, now: float) -> int:
        """Expire buckets older than the window; return now's bucket."""
        epoch = int(now // self.width)
        count = len(self.epoch)
        index = epoch % count
        if self.epoch[index] == epoch:
            return index
        for i in range(count):
            old = self.epoch[i]
            if old != -1 and old <= epoch - count:
                self.total_calls -= self.calls[i]
                self.total_failures -= self.failures[i]
                self.calls[i] = 0
                self.failures[i] = 0
                self.epoch[i] = -1
        self.epoch[index] = epoch
        return index


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class BreakerCore:
    """
    The state and the counters of one circuit breaker.

    The fields are public so that the shell, the tests and Hypothesis can
    read them; only the methods below change them.
    """

    config: CircuitBreakerConfig
    state: CircuitState = CLOSED
    generation: int = 0
    forced: bool = False
    """Opened by hand until reset: no recovery timeout applies."""
    opened_at: float | None = None
    open_until: float = 0.0
    probes: int = 0
    """Probe calls in flight in the half-open state."""
    cur_successes: int = 0
    cur_failures: int = 0
    failure_times: deque[float] | None = None
    """Count mode: the times of the last ``failure_threshold`` failures."""
    window: Window | None = None
    """Rate mode: per-bucket call and failure counts."""
    is_failure: Callable[[BaseException], bool] = _default_is_failure

    successes: int = 0
    failures: int = 0
    rejected: int = 0
    ignored: int = 0
    cancelled: int = 0
    slow: int = 0
    trips: int = 0
    last_failure: float | None = None
    last_success: float | None = None

    @classmethod
    def new(cls, config: CircuitBreakerConfig) -> BreakerCore:
        """A closed breaker for *config*."""
        window = None
        if config.failure_rate_threshold is not None:
            window = Window.empty(
                config.monitoring_window, config.window_buckets
            )
        return cls(
            config,
            window=window,
            is_failure=config.is_failure or _default_is_failure,
        )

    # -- reading: never changes anything -------------------------------

    def effective_state(self, now: float) -> CircuitState:
        """The state at *now*: an open circuit past its time is half-open."""
        state = self.state
        if state is OPEN and not self.forced and now >= self.open_until:
            return HALF_OPEN
        return state

    def retry_after(self, now: float) -> float | None:
        """Seconds until an open circuit lets a probe through, if known."""
        if self.state is not OPEN or self.forced:
            return None
        return max(self.open_until - now, 0.0)

    def window_counts(self, now: float | None) -> tuple[int, int]:
        """The failures and the calls counted towards opening, at *now*."""
        if self.state is not CLOSED:
            return self.cur_failures, self.cur_failures + self.cur_successes
        window = self.window
        if window is not None:
            if now is None:
                return window.total_failures, window.total_calls
            calls, failures = window.counts(now)
            return failures, calls
        times = self.failure_times
        failures = 0
        if times is not None:
            span = self.config.monitoring_window
            failures = (
                len(times)
                if now is None
                else sum(1 for t in times if now - t < span)
            )
        return failures, failures + self.cur_successes

    # -- the transitions -----------------------------------------------

    def tick(self, now: float) -> Transition | None:
        """Make the time-driven change: open to half-open when time is up."""
        if self.state is OPEN and not self.forced and now >= self.open_until:
            return self._transition(HALF_OPEN, now)
        return None

    def admit(self, now: float) -> int:
        """
        Decide whether a call may run at *now* (after :meth:`tick`).

        Returns:
            The permit (the generation the call runs in), or
            :data:`REJECTED`, the rejection already counted.
        """
        state = self.state
        if state is CLOSED:
            return self.generation
        if (
            state is HALF_OPEN
            and self.probes < self.config.half_open_max_calls
        ):
            self.probes += 1
            return self.generation
        self.rejected += 1
        return REJECTED

    def rejects_at(self, when: float) -> bool:
        """
        Whether a call at *when* will be rejected, whatever comes before.

        True while the circuit is open until after *when* (or by hand,
        until reset); the rejection is then counted.  A half-open circuit
        foresees nothing: its probe slots may free up.
        """
        if self.state is not OPEN or (
            not self.forced and when >= self.open_until
        ):
            return False
        self.rejected += 1
        return True

    def withdraw(self) -> None:
        """A rejection the caller never got: a cancelled call instead."""
        self.rejected -= 1
        self.cancelled += 1

    def on_success(
        self, permit: int, now: float, duration: float
    ) -> Transition | None:
        """Count a call that returned; *duration* judges slow calls."""
        slow = self.config.slow_call_duration
        if slow is not None and duration > slow:
            self.slow += 1
            return self._count_failure(permit, now)
        self.successes += 1
        self.last_success = now
        if permit != self.generation:
            return None
        state = self.state
        if state is CLOSED:
            self.cur_successes += 1
            if self.window is not None:
                self.window.add(now, failed=False)
                return self._check_rate(now)
        elif state is HALF_OPEN:
            self.probes -= 1
            self.cur_successes += 1
            if self.cur_successes >= self.config.success_threshold:
                return self._transition(CLOSED, now)
        return None

    def on_failure(
        self, permit: int, now: float, exc: BaseException
    ) -> Transition | None:
        """Count a call that raised *exc* (as a failure if it counts)."""
        if not self.is_failure(exc):
            self.ignored += 1
            self._release_probe(permit)
            return None
        return self._count_failure(permit, now)

    def on_cancel(self, permit: int) -> None:
        """Count a call whose caller was cancelled: never a failure."""
        self.cancelled += 1
        self._release_probe(permit)

    def trip(self, now: float, min_open: float = 0.0) -> Transition | None:
        """Open now, for at least ``recovery_timeout`` or *min_open* s."""
        until = now + max(self.config.recovery_timeout, min_open)
        if self.state is OPEN:
            self.open_until = max(self.open_until, until)
            return None
        self.open_until = until
        return self._transition(OPEN, now)

    def follow(self, now: float, wait: float) -> Transition | None:
        """Open as the fleet is: until *wait* s from *now*, or longer."""
        if self.state is OPEN:
            self.open_until = max(self.open_until, now + wait)
            return None
        self.open_until = now + wait
        return self._transition(OPEN, now)

    def force_open(
        self, now: float, duration: float | None
    ) -> Transition | None:
        """Open by hand, for *duration* s, or until reset when ``None``."""
        self.forced = duration is None
        return self.trip(now, duration if duration is not None else 0.0)

    def reset(self, now: float | None) -> Transition | None:
        """Close by hand, with a fresh window; lifts a forced open."""
        self.forced = False
        if self.state is not CLOSED:
            return self._transition(CLOSED, now)
        self._new_generation()
        return None

    # -- internals -----------------------------------------------------

    def _release_probe(self, permit: int) -> None:
        if permit == self.generation and self.state is HALF_OPEN:
            self.probes -= 1

    def _count_failure(self, permit: int, now: float) -> Transition | None:
        self.failures += 1
        self.last_failure = now
        if permit != self.generation:
            return None
        state = self.state
        if state is HALF_OPEN:
            self.probes -= 1
            self.cur_failures += 1
            return self.trip(now)
        if state is CLOSED:
            self.cur_failures += 1
            if self.window is not None:
                self.window.add(now, failed=True)
                return self._check_rate(now)
            config = self.config
            times = self.failure_times
            if times is None:
                times = self.failure_times = deque(
                    maxlen=config.failure_threshold
                )
            times.append(now)
            if (
                len(times) == config.failure_threshold
                and now - times[0] < config.monitoring_window
            ):
                return self.trip(now)
        return None

    def _check_rate(self, now: float) -> Transition | None:
        window = self.window
        config = self.config
        threshold = config.failure_rate_threshold
        assert window is not None  # noqa: S101
        assert threshold is not None  # noqa: S101
        if (
            window.total_calls >= config.minimum_calls
            and window.total_failures >= threshold * window.total_calls
        ):
            return self.trip(now)
        return None

    def _new_generation(self) -> None:
        self.generation += 1
        self.probes = 0
        self.cur_successes = 0
        self.cur_failures = 0
        if self.failure_times is not None:
            self.failure_times.clear()
        if self.window is not None:
            self.window.clear()

    def _transition(self, new: CircuitState, now: float | None) -> Transition:
        old = self.state
        self.state = new
        self._new_generation()
        if new is OPEN:
            self.trips += 1
            self.opened_at = now
        return Transition(old, new, now)
