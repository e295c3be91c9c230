"""
The circuit breaker: the shell around its pure state machine.

:mod:`._breaker_core` decides (plain data and functions of ``now``); this
module is the policy the pipeline composes (:class:`~._policy.Policy`) and
the object users hold: it reads the event loop's clock, raises the
rejection, logs each change of state and calls the listeners, after the
core has made the change.  With a ``store``, :mod:`._breaker_fleet`
shares the circuit with the fleet through a few hooks here (none runs
without a store).
"""

from __future__ import annotations

import logging

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar, final

import anyio
import attrs
import trio

from ._breaker_core import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    REJECTED,
    BreakerCore,
    CircuitState,
    Transition,
)
from ._breaker_fleet import DEFAULT_REFRESH_INTERVAL, FleetBreaker
from ._config import CircuitBreakerConfig, _seconds, to_seconds
from ._engine import Plan
from ._errors import CircuitBreakerError
from ._policy import PolicyBase
from ._store._protocol import StateStore
from ._timeouts import Timeout, current_time


__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "CircuitBreaker",
    "CircuitBreakerMetrics",
    "CircuitState",
    "StateListener",
]

T = TypeVar("T")

logger: Final = logging.getLogger("resilient_mcp")

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
    store_errors: int = 0
    """Requests to the shared store that failed or were too slow (each
    sends the tally of many calls); ``0`` without a store."""


def _config_or_default(
    config: CircuitBreakerConfig | None,
) -> CircuitBreakerConfig:
    return CircuitBreakerConfig() if config is None else config


def _to_tuple(listeners: Iterable[StateListener]) -> tuple[StateListener, ...]:
    return tuple(listeners)


def _now_or_none() -> float | None:
    try:
        return current_time()
    except Exception:  # no event loop running: as of the last event
        return None


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class CircuitBreaker(PolicyBase):
    """
    Stop calling a failing service for a while, then probe it carefully.

    Think of the fuse box in a house: when a circuit keeps failing, the
    fuse blows (the circuit *opens*) and nothing more flows through it, so
    the fault cannot spread; after ``recovery_timeout`` seconds a few test
    calls are let through (*half-open*); if ``success_threshold`` of them
    succeed the circuit *closes* again, and one failure opens it anew.

    >>> breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=3))
    >>> # result = await breaker.call(fetch, url)

    As a :class:`~resilient_mcp.Policy`, a breaker judges each attempt:
    :meth:`enter_nowait` admits or rejects it, :meth:`leave` counts its
    outcome.

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for logs, errors and metrics.
        listeners: Callables run as ``listener(breaker, old, new)`` after
            every state change.  An exception in a listener does not
            disturb the call; a listener's first failure is logged (with
            its name and traceback), its later ones are not.
        store: Where the fleet shares the circuit
            (:class:`~resilient_mcp.RedisStore`); ``None`` (the default)
            keeps it in this process.  See docs/fleet.md.
        refresh_interval: With a store, seconds a process reuses the
            fleet's state before a call waits for a fresh one.

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
    # The listeners that raised: each is logged once, not on every change.
    _failed_listeners: tuple[StateListener, ...] = attrs.field(
        init=False, default=()
    )
    store: StateStore | None = attrs.field(default=None, kw_only=True)
    refresh_interval: float = attrs.field(
        default=DEFAULT_REFRESH_INTERVAL,
        converter=to_seconds,
        validator=_seconds(),
        kw_only=True,
    )
    _core: BreakerCore = attrs.field(init=False)
    # With a store, the link to the fleet's circuit (None: no store).
    _fleet: FleetBreaker | None = attrs.field(init=False, default=None)
    # The plan of call(), made on first use: a breaker per tool is used
    # through enter_nowait() and leave() only, and stays small.
    _plan: Plan | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._core = BreakerCore.new(self.config)
        if self.store is not None:
            self._fleet = FleetBreaker(
                self.store,
                self.name,
                self._core,
                self._announce,
                self.refresh_interval,
            )

    def __repr__(self) -> str:
        core = self._core
        return (
            f"<CircuitBreaker {self.name!r} {core.state.name}, "
            f"{core.cur_failures} current failures, {core.trips} trips>"
        )

    @property
    def where(self) -> str:
        """What the breaker is called in errors: ``circuit breaker 'x'``."""
        return f"circuit breaker {self.name!r}"

    # -- public surface -------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """
        The current state.

        An open circuit whose recovery timeout has passed reads as
        ``HALF_OPEN``; reading changes nothing (the change itself, and
        its log line and listeners, happen when the next call arrives).
        Reading it needs a running event loop, for the clock.
        """
        core = self._core
        if core.state is OPEN and not core.forced:
            return core.effective_state(current_time())
        return core.state

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
        plan = self._plan or self._make_plan()
        return await plan.run(fn, args)

    def _make_plan(self) -> Plan:
        timeout = self.config.request_timeout
        policies: tuple[Any, ...] = (self,)
        if timeout is not None:
            policies = (self, Timeout(timeout, where=self.where))
        self._plan = Plan(attempt_policies=policies)
        return self._plan

    def metrics(self) -> CircuitBreakerMetrics:
        """
        Take a snapshot of the breaker's counters.

        Returns:
            A frozen :class:`CircuitBreakerMetrics`.
        """
        core = self._core
        now = _now_or_none()
        state = core.state if now is None else core.effective_state(now)
        rate: float | None = None
        if state is not core.state:
            # Half-open by time, not yet by a call: a fresh generation.
            failures = calls = successes = 0
        else:
            failures, calls = core.window_counts(now)
            successes = core.cur_successes
            if state is CLOSED and core.window is not None:
                rate = failures / calls if calls else 0.0
        return CircuitBreakerMetrics(
            name=self.name,
            state=state,
            total_requests=core.successes
            + core.failures
            + core.rejected
            + core.ignored
            + core.cancelled,
            total_failures=core.failures,
            total_successes=core.successes,
            rejected_requests=core.rejected,
            ignored_requests=core.ignored,
            cancelled_requests=core.cancelled,
            slow_requests=core.slow,
            current_failures=failures,
            current_successes=successes,
            current_calls=calls,
            failure_rate=rate,
            trips=core.trips,
            last_failure=core.last_failure,
            last_success=core.last_success,
            opened_at=core.opened_at,
            store_errors=0 if self._fleet is None else self._fleet.errors,
        )

    def reset(self) -> None:
        """
        Close the circuit by hand, with a fresh window.

        This also lifts :meth:`force_open`.
        """
        self._announce(self._core.reset(None))

    def force_open(self, duration: float | None = None) -> None:
        """
        Open the circuit by hand.

        Args:
            duration: Seconds to stay open before probing, or ``None`` to
                stay open until :meth:`reset` (isolation, as Polly calls
                it).
        """
        self._announce(self._core.force_open(current_time(), duration))

    def trip(self, now: float, min_open: float = 0.0) -> None:
        """
        Open the circuit now, for at least ``recovery_timeout`` seconds.

        Args:
            now: The current event-loop time.
            min_open: A longer minimum open time in seconds, for example a
                server's ``Retry-After``.  An already open circuit is
                extended to it when it would otherwise close earlier.
        """
        self._announce(self._core.trip(now, min_open))

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
        self._failed_listeners = tuple(
            f for f in self._failed_listeners if f != listener
        )

    # -- the policy interface -------------------------------------------

    def enter_nowait(self, now: float) -> int:
        """
        Admit an attempt at *now*, or reject it.

        Returns:
            The permit for :meth:`leave`: the generation it runs in.

        Raises:
            CircuitBreakerError: The circuit is open, or half-open with
                every probe slot taken.
            trio.WouldBlock: With a store, the fleet's state is to be
                read first (:meth:`enter`).
        """
        core = self._core
        fleet = self._fleet
        if core.state is CLOSED:
            if fleet is None or now < fleet.fresh_until:
                return core.generation
            if fleet.store.available():
                raise trio.WouldBlock
            return core.generation
        self._announce(core.tick(now))
        if fleet is not None and fleet.must_ask(now):
            raise trio.WouldBlock
        return self._admit(now)

    async def enter(self, now: float) -> int:
        """
        With a store: read the fleet's state, then admit or reject.

        Waits for one answer of the store (``timeout`` at most), and for
        the fleet's probe lease when the circuit is half-open.

        Raises:
            CircuitBreakerError: As :meth:`enter_nowait`.
        """
        try:
            await anyio.lowlevel.checkpoint()
            if self._fleet is not None:
                now = await self._fleet.settle()
        except BaseException:
            self._core.on_cancel(REJECTED)  # cancelled: counted as such
            raise
        return self._admit(now)

    def _admit(self, now: float) -> int:
        core = self._core
        permit = core.admit(now)
        if permit == REJECTED:
            raise CircuitBreakerError(
                self.name, core.state, core.retry_after(now)
            )
        return permit

    def rejection_at(
        self, now: float, when: float
    ) -> CircuitBreakerError | None:
        """
        The rejection an attempt at *when* would meet, as seen at *now*.

        The retry loop asks before it waits: while the circuit stays open
        past *when*, the attempt is rejected now instead (and counted as
        a rejection); ``None`` when it might be admitted (closed,
        half-open, or open no longer by then: a probe).
        """
        core = self._core
        if core.state is CLOSED or not core.rejects_at(when):
            return None
        return CircuitBreakerError(
            self.name, core.state, core.retry_after(now)
        )

    def withdraw(self, error: Exception) -> None:
        """A rejection whose caller was cancelled: counted as cancelled."""
        self._core.withdraw()

    def leave(
        self,
        permit: int,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """
        Count the outcome of an attempt :meth:`enter_nowait` admitted.

        A return is a success (or a slow call, a failure); an
        :class:`Exception` a failure if ``is_failure`` says so; anything
        else (a cancellation) neither.
        """
        core = self._core
        if error is None:
            event = core.on_success(permit, now, elapsed)
        elif isinstance(error, Exception):
            event = core.on_failure(permit, now, error)
        else:
            core.on_cancel(permit)
            return
        if event is not None:
            self._announce(event)
        if self._fleet is not None:
            self._fleet.count()

    # -- the shell: announcing what the core did ------------------------

    def _announce(self, event: Transition | None) -> None:
        if event is None:
            return
        if self._fleet is not None:
            self._fleet.moved(event)
        old, new = event.old, event.new
        level = logging.WARNING if new is OPEN else logging.INFO
        logger.log(
            level,
            "Circuit breaker state changed: %s -> %s (breaker=%s)",
            old.name,
            new.name,
            self.name,
        )
        for listener in self._listeners:
            try:
                listener(self, old, new)
            except Exception as exc:
                self._listener_failed(listener, exc)

    def _listener_failed(
        self, listener: StateListener, exc: Exception
    ) -> None:
        """Log a listener's first failure, with its name; not the next."""
        if listener in self._failed_listeners:
            return
        self._failed_listeners = (*self._failed_listeners, listener)
        name = getattr(listener, "__qualname__", None) or repr(listener)
        logger.error(
            "Circuit breaker %r: state listener %s failed (further failures "
            "of this listener are not logged)",
            self.name,
            name,
            exc_info=exc,
        )
