"""
The rate limiter: GCRA, the Generic Cell Rate Algorithm.

GCRA (as in brandur's redis-cell and throttled) keeps one number, the
*theoretical arrival time* ``tat``: when the limiter would be idle again
if every call so far had come exactly on schedule.  With the emission
interval ``T = period / rate`` and the tolerance ``tau = T * (burst - 1)``,
a call at *now* conforms when ``max(tat, now) - tau <= now``, and then
moves ``tat`` to ``max(tat, now) + T``.  redis-cell's ``max_burst`` is our
``burst - 1``: its ``CL.THROTTLE key 0 ...`` admits one call at a time,
as ``burst=1`` does here.

``tat`` is stored as an anchor plus a count of intervals,
``anchor + cells * period / rate``, so that a long run at the limit does
not add up rounding errors: the *n*-th admission time is one division
away from the exact value, never *n* additions.

A call that does not conform waits for its turn when that turn is at
most ``max_wait`` away, else it is rejected at once with
:class:`RateLimitedError`.  Waiting calls form a FIFO queue: only its
head sleeps, until its own turn, and a call arriving meanwhile queues
behind it (it never takes a turn the queue is waiting for).  A waiter
reserves nothing: one that is cancelled just leaves the queue, and the
next one takes the turn it would have had.

With a ``store``, the fleet's limiters of one name share one ``tat`` in
it, and reserve their turns there (docs/fleet.md).
"""

from __future__ import annotations

import collections
import math

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, final

import anyio
import attrs
import trio

from ._config import ConfigurationError, to_seconds
from ._engine import Plan
from ._errors import RateLimitedError
from ._policy import PolicyBase
from ._store._protocol import StateStore
from ._timeouts import checkpoint, current_time, deadline_scope, on_trio


T = TypeVar("T")

DEFAULT_RATE: Final = 100.0  # calls per period
DEFAULT_PERIOD: Final = 1.0  # seconds
DEFAULT_BURST: Final = 1  # calls at once
DEFAULT_MAX_WAIT: Final = 0.0  # seconds a call may wait for its turn


def _check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    name = attribute.name
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "burst":
        ok = number and isinstance(value, int) and value >= 1
        rule = "an integer >= 1"
    elif name == "max_wait":
        ok = number and math.isfinite(value) and value >= 0
        rule = "a finite number of seconds >= 0"
    else:
        ok = number and math.isfinite(value) and value > 0
        rule = "a finite number > 0"
        if name == "period":
            rule = "a finite number of seconds > 0"
    if not ok:
        raise ConfigurationError(
            f"{type(inst).__name__}.{name} must be {rule}, got {value!r}"
        )


def _to_float(value: Any) -> Any:
    # A number to float; anything else is left to the validator to name.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _config_or_default(
    config: RateLimiterConfig | None,
) -> RateLimiterConfig:
    return RateLimiterConfig() if config is None else config


@attrs.frozen(kw_only=True)
class RateLimiterConfig:
    """
    How many calls a :class:`RateLimiter` lets through, and how fast.

    ``rate`` calls per ``period`` seconds on average, ``burst`` of them at
    once at most: after ``burst`` calls at the same instant, the next one
    conforms ``period / rate`` seconds later, and so on.  An idle limiter
    earns its burst back at the same pace, one call per ``period / rate``.

    >>> config = RateLimiterConfig(rate=10, period=1.0, burst=5)
    >>> config.rate, config.burst
    (10.0, 5)

    Raises:
        ConfigurationError: A field is out of range (the message names
            it).

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(
        default=DEFAULT_RATE, converter=_to_float, validator=_check
    )
    """Calls per ``period``; a finite number > 0."""
    period: float = attrs.field(
        default=DEFAULT_PERIOD, converter=to_seconds, validator=_check
    )
    """The period of ``rate``, in seconds (or a timedelta); > 0."""
    burst: int = attrs.field(default=DEFAULT_BURST, validator=_check)
    """
    Calls allowed at the same instant (GCRA's tolerance is
    ``(burst - 1) * period / rate``); ``1``: calls strictly spaced
    ``period / rate`` apart.  redis-cell's ``max_burst`` is ``burst - 1``.
    """
    max_wait: float = attrs.field(
        default=DEFAULT_MAX_WAIT, converter=to_seconds, validator=_check
    )
    """
    Seconds a call may wait for its turn; ``0``: a call over the rate is
    rejected at once.
    """


@attrs.frozen(kw_only=True)
class RateLimiterMetrics:
    """
    A snapshot of a rate limiter's counters.

    Every call that came is in exactly one of ``admitted``, ``rejected``,
    ``cancelled`` and ``waiting``; ``delayed`` counts the admitted calls
    that waited first.

    .. versionadded:: 0.1.0
    """

    name: str
    """The limiter's name."""
    rate: float
    """The configured calls per period."""
    period: float
    """The configured period, in seconds."""
    burst: int
    """The configured burst."""
    admitted: int
    """Calls let through, at once or after waiting."""
    delayed: int
    """Admitted calls that waited for their turn first."""
    rejected: int
    """Calls rejected with :class:`RateLimitedError`."""
    cancelled: int
    """Calls cancelled while waiting (or at their rejection's
    checkpoint): they took no turn."""
    waiting: int
    """Calls waiting for their turn now (a fleet's turn too)."""
    held_until: float
    """The event-loop time before which :meth:`RateLimiter.hold` keeps
    every call out (``-inf``: never held)."""
    store_errors: int = 0
    """Calls for which the shared store failed or was too slow: they were
    judged by the local state instead (``0`` without a store)."""


@final
class _Waiter:
    """A queued call: its turn event, set when it reaches the head."""

    __slots__ = ("turn",)

    def __init__(self) -> None:
        self.turn: anyio.Event | None = None


async def _sleep_forever() -> None:
    if on_trio():
        await trio.sleep_forever()
    else:
        await anyio.sleep_forever()


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class RateLimiter(PolicyBase):
    """
    Let calls through at most ``rate`` per ``period``, ``burst`` at once.

    A turnstile that lets one person through every ``period / rate``
    seconds, and lets a group of up to ``burst`` through together after a
    quiet spell.  A call that comes too early waits in line for its turn
    if that turn is at most ``max_wait`` seconds away, and is turned away
    at once with :class:`RateLimitedError` otherwise.

    >>> limiter = RateLimiter(RateLimiterConfig(rate=5, burst=2), name="api")
    >>> limiter.metrics().admitted
    0

    One instance can be shared by several pipelines (the pipelines of
    every tool of one server, say): they then share one limit.

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for errors and metrics, and the shared key's name.
        store: Where the fleet shares the limit; ``None`` (the default)
            keeps it in this process.  With a store, :meth:`hold` holds
            the fleet too; :meth:`retry_after` reads the local state.

    .. versionadded:: 0.1.0
    """

    config: RateLimiterConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    store: StateStore | None = attrs.field(default=None, kw_only=True)

    _anchor: float = attrs.field(init=False, default=-math.inf)
    _cells: int = attrs.field(init=False, default=0)
    _held_until: float = attrs.field(init=False, default=-math.inf)
    # Bumped by hold(), which also cancels the head waiter's sleep (the
    # scope of its deadline): it then looks at its turn again.
    _version: int = attrs.field(init=False, default=0)
    _sleep: Any = attrs.field(init=False, default=None)
    _waiters: collections.deque[_Waiter] = attrs.field(
        init=False, factory=collections.deque
    )
    _plan: Plan | None = attrs.field(init=False, default=None)
    _admitted: int = attrs.field(init=False, default=0)
    _delayed: int = attrs.field(init=False, default=0)
    _rejected: int = attrs.field(init=False, default=0)
    _cancelled: int = attrs.field(init=False, default=0)
    _store_errors: int = attrs.field(init=False, default=0)
    _sleeping: int = attrs.field(init=False, default=0)  # for shared turns

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<RateLimiter {self.name!r}: {c.rate:g}/{c.period:g}s, burst "
            f"{c.burst}, {len(self._waiters)} waiting, {self._admitted} "
            f"admitted, {self._rejected} rejected>"
        )

    # -- the GCRA arithmetic --------------------------------------------

    def _turn(self, ahead: int) -> float:
        """When a call behind *ahead* waiting ones may go (may be past)."""
        c = self.config
        cells = self._cells + ahead - c.burst + 1
        return self._anchor + cells * c.period / c.rate

    def _take(self, now: float) -> None:
        """Admit a call at *now*: ``tat = max(tat, now) + T``."""
        c = self.config
        if now > self._anchor + self._cells * c.period / c.rate:
            self._anchor, self._cells = now, 1  # idle: tat was in the past
        else:
            self._cells += 1
        self._admitted += 1

    def retry_after(self, now: float | None = None) -> float:
        """
        Seconds from *now* until a call arriving then would be admitted.

        ``0.0`` when one would be admitted at once.  Calls waiting for
        their turn come first: each adds ``period / rate``.

        Args:
            now: The event-loop time; ``None`` reads the running loop's
                clock.

        .. versionadded:: 0.1.0
        """
        if now is None:
            now = current_time()
        return max(0.0, self._turn(len(self._waiters)) - now)

    def hold(self, seconds: float, now: float | None = None) -> None:
        """
        Admit no call before *now* + *seconds* (a server's ``Retry-After``).

        Pushes the theoretical arrival time forward, never back: after the
        hold, calls resume one per ``period / rate`` (no burst right after
        a server said it was overloaded).  Calls waiting already look at
        their turn again at once: those whose turn moved beyond their
        ``max_wait`` are rejected.  A hold shorter than the one in force
        changes nothing.

        Feed it from an HTTP 429: ``limiter.hold(error.retry_after)``.

        Args:
            seconds: How long to keep calls out; ``<= 0`` does nothing.
            now: The event-loop time; ``None`` reads the running loop's
                clock.

        Raises:
            ValueError: *seconds* is not a finite number.

        .. versionadded:: 0.1.0
        """
        value: object = seconds  # typed float, checked at run time too
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            msg = f"seconds must be a finite number, got {seconds!r}"
            raise ValueError(msg)
        if now is None:
            now = current_time()
        if self.store is not None:  # the fleet too, without waiting
            c = self.config
            self.store.hold(
                self.name, seconds, c.period / c.rate * (c.burst - 1)
            )
        until = now + seconds
        if until <= self._turn(0):
            return
        self._anchor, self._cells = until, self.config.burst - 1
        self._held_until = until
        self._version += 1
        if self._sleep is not None:
            self._sleep.cancel()

    # -- the policy interface -------------------------------------------

    def enter_nowait(self, now: float) -> None:
        """
        Admit a call arriving at *now* if it conforms and no call waits.

        Raises:
            trio.WouldBlock: Its turn is at most ``max_wait`` away:
                :meth:`enter` waits for it.
            RateLimitedError: Its turn is further away (counted).
        """
        store = self.store
        if store is not None and store.available():
            raise trio.WouldBlock  # the shared turn is one await away
        waiters = self._waiters
        turn = self._turn(len(waiters))
        if turn <= now and not waiters:
            self._take(now)
            return
        wait = turn - now
        if wait <= self.config.max_wait:
            raise trio.WouldBlock
        self._rejected += 1
        raise RateLimitedError(self.name, retry_after=wait)

    async def enter(self, now: float) -> None:
        """
        Wait in line for the turn of a call that arrived at *now*.

        Raises:
            RateLimitedError: A :meth:`hold` moved the turn beyond
                ``max_wait`` from *now* (after a checkpoint), or the
                fleet's turn is beyond it (with a store).
        """
        if not await self._enter_shared(now):
            await self._wait_in_line(now)

    async def _wait_in_line(self, now: float) -> None:
        """The local waiting path: in the FIFO queue, for the local turn."""
        waiter = _Waiter()
        waiters = self._waiters
        waiters.append(waiter)
        max_wait = self.config.max_wait
        try:
            if waiters[0] is not waiter:
                waiter.turn = anyio.Event()
                await waiter.turn.wait()
            while True:
                turn = self._turn(0)
                # As enter_nowait compares: the same rounding, the same
                # answer when no hold() came between.
                if turn - now > max_wait:
                    await checkpoint()
                    self._rejected += 1
                    raise RateLimitedError(  # noqa: TRY301 (counted above)
                        self.name, retry_after=turn - current_time()
                    )
                version = self._version
                with deadline_scope(turn) as self._sleep:
                    await _sleep_forever()
                self._sleep = None
                # Our turn came, unless a hold() moved it meanwhile (the
                # clock is not read again: on asyncio it may wake a hair
                # early, and the turn is ours anyway).
                if version == self._version:
                    break
            self._take(max(turn, current_time()))
            self._delayed += 1
        except BaseException as exc:
            if not isinstance(exc, RateLimitedError):
                self._cancelled += 1
            raise
        finally:
            head = waiters[0] is waiter
            waiters.remove(waiter)
            if head:
                self._sleep = None
            if head and waiters:
                nxt = waiters[0].turn
                if nxt is not None:
                    nxt.set()

    async def _enter_shared(self, now: float) -> bool:
        """The fleet's turn (or RateLimitedError); ``False``: go local."""
        store = self.store
        if store is None or not store.available():
            return False
        c = self.config
        interval = c.period / c.rate
        try:
            reply = await store.gcra(
                self.name, interval, interval * (c.burst - 1), c.max_wait
            )
            if reply is not None and reply[0] and reply[1] > 0:
                self._sleeping += 1
                try:
                    await anyio.sleep(reply[1])
                finally:
                    self._sleeping -= 1
                self._delayed += 1
        except BaseException:
            self._cancelled += 1
            raise
        if reply is None:
            self._store_errors += 1
            try:
                self.enter_nowait(now)  # the store failed: decide alone
            except trio.WouldBlock:
                return False
            return True
        admitted, wait = reply
        if not admitted:
            self._rejected += 1
            raise RateLimitedError(self.name, retry_after=wait)
        self._admitted += 1
        return True

    def leave(
        self,
        permit: None,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """Nothing to give back: a turn, once taken, is spent."""

    def withdraw(self, error: Exception) -> None:  # noqa: ARG002
        """A rejection whose caller was cancelled: counted as cancelled."""
        self._rejected -= 1
        self._cancelled += 1

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)`` in its turn.

        Raises:
            RateLimitedError: Its turn was more than ``max_wait`` away;
                *fn* was not called.
            Exception: Whatever *fn* raised, unchanged.
        """
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(call_policies=(self,))
        return await plan.run(fn, args)

    def metrics(self) -> RateLimiterMetrics:
        """
        Take a snapshot of the limiter's counters.

        Returns:
            A frozen :class:`RateLimiterMetrics`.
        """
        c = self.config
        return RateLimiterMetrics(
            name=self.name,
            rate=c.rate,
            period=c.period,
            burst=c.burst,
            admitted=self._admitted,
            delayed=self._delayed,
            rejected=self._rejected,
            cancelled=self._cancelled,
            waiting=len(self._waiters) + self._sleeping,
            held_until=self._held_until,
            store_errors=self._store_errors,
        )
