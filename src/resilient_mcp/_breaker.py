"""
The circuit breaker: a pure state machine plus a thin async guard.

The state machine's methods take the current time as an argument and never
await, so that every transition is a plain function of (state, now,
outcome).  :meth:`CircuitBreaker.call` is the async shell: it reads the
event loop's clock, applies the request timeout with a cancel scope, and
reports the outcome.

Each state change starts a new *generation*.  A call remembers the
generation it was admitted in; when it finishes in a later generation its
outcome still goes into the totals but no longer moves the state machine.
That is how "every state change starts a fresh window" holds even for calls
that were in flight when the circuit opened or closed.
"""

from __future__ import annotations

import enum
import logging
import math

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar, final

import attrs

from ._config import CircuitBreakerConfig
from ._errors import CallTimeout, CircuitBreakerError, PermanentError
from ._timeouts import (
    clock_and_scope,
    current_time,
    rejection_checkpoint,
    run_bounded,
)


T = TypeVar("T")

logger: Final = logging.getLogger("resilient_mcp")


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

StateListener = Callable[["CircuitBreaker", CircuitState, CircuitState], None]
"""Called as ``listener(breaker, old_state, new_state)`` on every change."""


@attrs.frozen(kw_only=True)
class CircuitBreakerMetrics:
    """
    A snapshot of a circuit breaker's counters.

    ``total_requests`` equals ``total_successes + total_failures +
    rejected_requests + ignored_requests + cancelled_requests``: a call is
    counted once, when it ends.

    .. versionadded:: 0.1.0
    """

    name: str
    """The breaker's name."""
    state: CircuitState
    """The state at the time of the snapshot."""
    total_requests: int
    """Calls that ended, in every outcome."""
    total_failures: int
    """Calls that counted as failures (slow calls and timeouts included)."""
    total_successes: int
    """Calls that counted as successes."""
    rejected_requests: int
    """Calls rejected without running (open, or half-open and busy)."""
    ignored_requests: int
    """Calls that raised an exception ``is_failure`` did not count."""
    cancelled_requests: int
    """Calls whose caller was cancelled: neither success nor failure."""
    slow_requests: int
    """Successful calls slower than ``slow_call_duration`` (failures)."""
    current_failures: int
    """Failures counted in the current window (or half-open period)."""
    current_successes: int
    """Successes since the last state change."""
    current_calls: int
    """Calls counted in the current window (rate mode; else successes +
    failures since the last state change)."""
    failure_rate: float | None
    """Failure ratio over the current window in rate mode, else ``None``."""
    trips: int
    """Times the circuit opened (forced opens included)."""
    last_failure: float | None
    """Event-loop time of the last failure, or ``None``."""
    last_success: float | None
    """Event-loop time of the last success, or ``None``."""
    opened_at: float | None
    """Event-loop time the circuit last opened, or ``None``."""


def _config_or_default(
    config: CircuitBreakerConfig | None,
) -> CircuitBreakerConfig:
    return CircuitBreakerConfig() if config is None else config


def _to_tuple(listeners: Iterable[StateListener]) -> tuple[StateListener, ...]:
    return tuple(listeners)


def _default_is_failure(exc: BaseException) -> bool:
    return not isinstance(exc, PermanentError)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class _Window:
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
    """The sum of ``calls``."""
    total_failures: int = 0
    """The sum of ``failures``."""

    @classmethod
    def empty(cls, window: float, buckets: int) -> _Window:
        return cls(
            window / buckets, [-1] * buckets, [0] * buckets, [0] * buckets
        )

    def clear(self) -> None:
        for i in range(len(self.epoch)):
            self.epoch[i] = -1
            self.calls[i] = 0
            self.failures[i] = 0
        self.total_calls = 0
        self.total_failures = 0

    def slide(self, now: float) -> int:
        """Expire buckets older than the window; return now's bucket."""
        epoch = int(now // self.width)
        count = len(self.epoch)
        index = epoch % count
        if self.epoch[index] == epoch:
            return index
        # Clear every bucket whose epoch has left the window.
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
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class CircuitBreaker:
    """
    Stop calling a failing service for a while, then probe it carefully.

    Think of the fuse box in a house: when a circuit keeps failing, the
    fuse blows (the circuit *opens*) and nothing more flows through it, so
    the fault cannot spread; after ``recovery_timeout`` seconds a few test
    calls are let through (*half-open*); if ``success_threshold`` of them
    succeed the circuit *closes* again, and one failure opens it anew.

    >>> breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=3))
    >>> # result = await breaker.call(fetch, url)

    Args:
        config: The configuration; ``None`` for the seed's defaults.
        name: A name for logs, errors and metrics.
        listeners: Callables run as ``listener(breaker, old, new)`` after
            every state change.  An exception in a listener is logged and
            does not disturb the call.

    .. versionadded:: 0.1.0
    """

    config: CircuitBreakerConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    # A tuple, replaced on change: most breakers have none, and the
    # empty tuple costs nothing (a breaker per tool adds up).
    _listeners: tuple[StateListener, ...] = attrs.field(
        default=(), converter=_to_tuple, kw_only=True, alias="listeners"
    )

    _state: CircuitState = attrs.field(init=False, default=CLOSED)
    _generation: int = attrs.field(init=False, default=0)
    _forced: bool = attrs.field(init=False, default=False)
    _opened_at: float | None = attrs.field(init=False, default=None)
    _open_until: float = attrs.field(init=False, default=0.0)
    _probes: int = attrs.field(init=False, default=0)
    _cur_successes: int = attrs.field(init=False, default=0)
    _cur_failures: int = attrs.field(init=False, default=0)
    # Count mode: the times of the last `failure_threshold` failures,
    # created at the first failure.
    _failure_times: deque[float] | None = attrs.field(init=False, default=None)
    # Rate mode: per-bucket call and failure counts plus running sums.
    _window: _Window | None = attrs.field(init=False, default=None)
    # Count mode with no slow-call threshold: a success needs nothing but
    # counters (the fast path of call() and of the pipeline).
    _plain: bool = attrs.field(init=False)
    _is_failure: Callable[[BaseException], bool] = attrs.field(init=False)
    _timeout: float | None = attrs.field(init=False)
    _where: str = attrs.field(init=False)

    _successes: int = attrs.field(init=False, default=0)
    _failures: int = attrs.field(init=False, default=0)
    _rejected: int = attrs.field(init=False, default=0)
    _ignored: int = attrs.field(init=False, default=0)
    _cancelled: int = attrs.field(init=False, default=0)
    _slow: int = attrs.field(init=False, default=0)
    _trips: int = attrs.field(init=False, default=0)
    _last_failure: float | None = attrs.field(init=False, default=None)
    _last_success: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        config = self.config
        if config.failure_rate_threshold is not None:
            self._window = _Window.empty(
                config.monitoring_window, config.window_buckets
            )
        self._plain = (
            self._window is None and config.slow_call_duration is None
        )
        self._is_failure = config.is_failure or _default_is_failure
        self._timeout = config.request_timeout
        self._where = f"circuit breaker {self.name!r}"

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.name!r} {self._state.name}, "
            f"{self._cur_failures} current failures, {self._trips} trips>"
        )

    # -- public surface -------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """
        The current state.

        An open circuit whose recovery timeout has passed reads as
        ``HALF_OPEN`` (the transition happens on observation, so it needs a
        running event loop to read the clock).
        """
        if self._state is OPEN and not self._forced:
            self._maybe_half_open(current_time())
        return self._state

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)`` through the breaker.

        Args:
            fn: An async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned.

        Raises:
            CircuitBreakerError: The circuit is open (or half-open with all
                probe slots taken); *fn* was not called.
            CallTimeout: *fn* ran longer than ``request_timeout``.
            Exception: Whatever *fn* raised, unchanged.
        """
        if self._state is not CLOSED:
            at = current_time()
            admitted: int | CircuitBreakerError
            if self._state is OPEN and at < self._open_until:
                # admit() inlined for an open circuit that stays open: the
                # path that callers of a failing service hammer.
                self._rejected += 1
                left = None if self._forced else self._open_until - at
                admitted = CircuitBreakerError(self.name, OPEN, left)
            else:
                admitted = self.admit(at)
            if isinstance(admitted, CircuitBreakerError):
                await rejection_checkpoint()
                try:
                    raise admitted
                finally:
                    del admitted  # no cycle through the frame: see guard()
            return await self.guard(self._timeout, fn, args, permit=admitted)
        if not self._plain:
            return await self.guard(self._timeout, fn, args)
        # guard() inlined for the common case, a closed circuit in count
        # mode: one coroutine frame, one clock read per call.
        permit = self._generation
        timeout = self._timeout
        try:
            if timeout is None:
                result = await fn(*args)
            else:
                now, cancel_scope = clock_and_scope()
                with cancel_scope(deadline=now() + timeout) as scope:
                    result = await fn(*args)
                if scope.cancelled_caught:
                    raise CallTimeout(timeout, self._where)  # noqa: TRY301
        except Exception as exc:
            self.on_failure(permit, current_time(), exc)
            raise
        except BaseException:
            self.on_cancel(permit)
            raise
        # on_success(), inlined for count mode without a slow-call limit.
        self._successes += 1
        self._last_success = current_time() if timeout is None else now()
        if permit == self._generation:
            self._cur_successes += 1
        return result

    async def guard(
        self,
        timeout: float | None,  # noqa: ASYNC109 (applied inside)
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        outer_deadline: float = math.inf,
        permit: int | None = None,
    ) -> T:
        """
        :meth:`call` with an explicit per-call *timeout* (``None``: none).

        The pipeline uses it to apply its own timeout inside the breaker,
        so that a timeout counts as a failure but only one cancel scope is
        entered.  *outer_deadline* is an enclosing policy's deadline to
        enforce in the same scope (see
        :class:`~resilient_mcp._timeouts.DeadlineExpired`).  *permit* is
        the call's admission if the caller already got it from
        :meth:`admit`.
        """
        if permit is None:
            if self._state is CLOSED:
                permit = self._generation
            else:
                admitted = self.admit(current_time())
                if isinstance(admitted, CircuitBreakerError):
                    await rejection_checkpoint()
                    try:
                        raise admitted
                    finally:
                        # The frame would hold the error, whose traceback
                        # holds the frame: a cycle per rejection for the
                        # collector.
                        del admitted
                permit = admitted
        if (
            timeout is None
            and outer_deadline == math.inf
            and self.config.slow_call_duration is None
        ):
            try:
                result = await fn(*args)
            except Exception as exc:
                self.on_failure(permit, current_time(), exc)
                raise
            except BaseException:
                self.on_cancel(permit)
                raise
            self.on_success(permit, current_time(), 0.0)
            return result
        start = current_time()
        try:
            result = await run_bounded(
                fn, args, timeout, self._where, outer_deadline, start
            )
        except Exception as exc:
            self.on_failure(permit, current_time(), exc)
            raise
        except BaseException:
            self.on_cancel(permit)
            raise
        now = current_time()
        self.on_success(permit, now, now - start)
        return result

    def metrics(self) -> CircuitBreakerMetrics:
        """
        Take a snapshot of the breaker's counters.

        Returns:
            A frozen :class:`CircuitBreakerMetrics`.
        """
        try:
            now: float | None = current_time()
        except Exception:  # no event loop running: report as of last event
            now = None
        if now is not None and self._state is OPEN and not self._forced:
            self._maybe_half_open(now)
        rate: float | None = None
        window = self._window
        if self._state is CLOSED:
            if window is not None:
                if now is not None:
                    window.slide(now)
                calls, failures = window.total_calls, window.total_failures
                rate = failures / calls if calls else 0.0
            else:
                failures = self._count_window_failures(now)
                calls = failures + self._cur_successes
        else:
            failures = self._cur_failures
            calls = failures + self._cur_successes
        return CircuitBreakerMetrics(
            name=self.name,
            state=self._state,
            total_requests=self._successes
            + self._failures
            + self._rejected
            + self._ignored
            + self._cancelled,
            total_failures=self._failures,
            total_successes=self._successes,
            rejected_requests=self._rejected,
            ignored_requests=self._ignored,
            cancelled_requests=self._cancelled,
            slow_requests=self._slow,
            current_failures=failures,
            current_successes=self._cur_successes,
            current_calls=calls,
            failure_rate=rate,
            trips=self._trips,
            last_failure=self._last_failure,
            last_success=self._last_success,
            opened_at=self._opened_at,
        )

    def reset(self) -> None:
        """
        Close the circuit by hand, with a fresh window.

        This also lifts :meth:`force_open`.
        """
        self._forced = False
        if self._state is not CLOSED:
            self._transition(CLOSED, None)
        else:
            self._new_generation()

    def force_open(self, duration: float | None = None) -> None:
        """
        Open the circuit by hand.

        Args:
            duration: Seconds to stay open before probing, or ``None`` to
                stay open until :meth:`reset` (isolation, as Polly calls
                it).
        """
        now = current_time()
        self._forced = duration is None
        self.trip(now, duration if duration is not None else 0.0)

    def trip(self, now: float, min_open: float = 0.0) -> None:
        """
        Open the circuit now, for at least ``recovery_timeout`` seconds.

        Args:
            now: The current event-loop time.
            min_open: A longer minimum open time in seconds, for example a
                server's ``Retry-After``.  An already open circuit is
                extended to it when it would otherwise close earlier.
        """
        until = now + max(self.config.recovery_timeout, min_open)
        if self._state is OPEN:
            self._open_until = max(self._open_until, until)
            return
        # Set before the transition, so that listeners see a whole state.
        self._open_until = until
        self._transition(OPEN, now)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(breaker, old, new)`` after every state change."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: StateListener) -> None:
        """
        Stop calling a listener added before.

        Raises:
            ValueError: *listener* was not added.
        """
        listeners = list(self._listeners)
        listeners.remove(listener)
        self._listeners = tuple(listeners)

    # -- the pure state machine ----------------------------------------
    #
    # Everything below takes the current time as an argument and never
    # awaits.  The pipeline calls these directly so that it can share its
    # clock reads with the breaker.

    def admit(self, now: float) -> int | CircuitBreakerError:
        """
        Decide whether a call may run at *now*.

        Returns:
            The permit (the generation the call runs in) to pass to
            :meth:`on_success`, :meth:`on_failure` or :meth:`on_cancel`;
            or the :class:`CircuitBreakerError` to raise, the rejection
            already counted.
        """
        state = self._state
        if state is CLOSED:
            return self._generation
        if state is OPEN:
            # _maybe_half_open() and max() inlined: a rejection is the
            # path that callers of a failing service hammer.
            if self._forced:
                self._rejected += 1
                return CircuitBreakerError(self.name, OPEN, None)
            left = self._open_until - now
            if left > 0.0:
                self._rejected += 1
                return CircuitBreakerError(self.name, OPEN, left)
            self._transition(HALF_OPEN, now)
        if self._probes >= self.config.half_open_max_calls:
            self._rejected += 1
            return CircuitBreakerError(self.name, HALF_OPEN)
        self._probes += 1
        return self._generation

    def on_success(self, permit: int, now: float, duration: float) -> None:
        """Count a call that returned; *duration* judges slow calls."""
        slow = self.config.slow_call_duration
        if slow is not None and duration > slow:
            self._slow += 1
            self._count_failure(permit, now)
            return
        self._successes += 1
        self._last_success = now
        if permit != self._generation:
            return
        state = self._state
        if state is CLOSED:
            self._cur_successes += 1
            if self._window is not None:
                self._add_to_window(self._window, now, failed=False)
        elif state is HALF_OPEN:
            self._probes -= 1
            self._cur_successes += 1
            if self._cur_successes >= self.config.success_threshold:
                self._transition(CLOSED, now)

    def on_failure(self, permit: int, now: float, exc: BaseException) -> None:
        """Count a call that raised *exc* (as a failure if it counts)."""
        if not self._is_failure(exc):
            self._ignored += 1
            self._release_probe(permit)
            return
        self._count_failure(permit, now)

    def on_cancel(self, permit: int) -> None:
        """Count a call whose caller was cancelled: never a failure."""
        self._cancelled += 1
        self._release_probe(permit)

    def _release_probe(self, permit: int) -> None:
        if permit == self._generation and self._state is HALF_OPEN:
            self._probes -= 1

    # -- internals -----------------------------------------------------

    def _count_failure(self, permit: int, now: float) -> None:
        self._failures += 1
        self._last_failure = now
        if permit != self._generation:
            return
        state = self._state
        if state is HALF_OPEN:
            self._probes -= 1
            self._cur_failures += 1
            self.trip(now)
        elif state is CLOSED:
            self._cur_failures += 1
            config = self.config
            if self._window is not None:
                self._add_to_window(self._window, now, failed=True)
                return
            times = self._failure_times
            if times is None:
                times = self._failure_times = deque(
                    maxlen=config.failure_threshold
                )
            times.append(now)
            if (
                len(times) == config.failure_threshold
                and now - times[0] < config.monitoring_window
            ):
                self.trip(now)

    def _add_to_window(
        self, window: _Window, now: float, *, failed: bool
    ) -> None:
        index = window.slide(now)
        window.calls[index] += 1
        window.total_calls += 1
        if failed:
            window.failures[index] += 1
            window.total_failures += 1
        config = self.config
        threshold = config.failure_rate_threshold
        assert threshold is not None  # noqa: S101
        if (
            window.total_calls >= config.minimum_calls
            and window.total_failures >= threshold * window.total_calls
        ):
            self.trip(now)

    def _count_window_failures(self, now: float | None) -> int:
        times = self._failure_times
        if times is None:
            return 0
        if now is None:
            return len(times)
        window = self.config.monitoring_window
        return sum(1 for t in times if now - t < window)

    def _maybe_half_open(self, now: float) -> bool:
        """Move an open circuit to half-open if its time is up."""
        if now >= self._open_until:
            self._transition(HALF_OPEN, now)
            return True
        return False

    def _new_generation(self) -> None:
        self._generation += 1
        self._probes = 0
        self._cur_successes = 0
        self._cur_failures = 0
        if self._failure_times is not None:
            self._failure_times.clear()
        if self._window is not None:
            self._window.clear()

    def _transition(self, new: CircuitState, now: float | None) -> None:
        old = self._state
        self._state = new
        self._new_generation()
        if new is OPEN:
            self._trips += 1
            self._opened_at = now
        level = logging.WARNING if new is OPEN else logging.INFO
        logger.log(
            level,
            "Circuit breaker state changed: %s -> %s (breaker=%s)",
            old.name,
            new.name,
            self.name,
        )
        self._notify(old, new)

    def _notify(self, old: CircuitState, new: CircuitState) -> None:
        for listener in self._listeners:
            try:
                listener(self, old, new)
            except Exception:
                logger.exception(
                    "Circuit breaker %r: state listener %r failed",
                    self.name,
                    listener,
                )
