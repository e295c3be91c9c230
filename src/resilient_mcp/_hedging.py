"""
Hedged requests: a second attempt for a call that is slower than usual.

"The Tail at Scale" (Dean and Barroso, 2013): send the request, and if it
has not answered within the recent 95th-percentile latency, send it once
more and take whichever answer comes first.  About 5 % more requests cut
the slowest answers down to roughly the usual ones, because a slow answer
is usually bad luck (a garbage collection, a queue, a cold cache) that a
second try does not share.

The policy sits *inside* the retry loop: the retry loop sees one attempt,
which this policy may run as several concurrent *hedged attempts*, each
through the attempt policies (the breaker, the timeout) on its own::

    retry( hedging( breaker( timeout( op ) ) ) )

The attempts run in a task group owned by the call; the first success
wins and the others are cancelled through their own cancel scopes (over
MCP the SDK then sends ``notifications/cancelled``).  An attempt that
fails while another still runs does not end the call: as in Polly's
hedging, the call waits for the others and returns the first success, or
raises the error of the attempt that failed last.  An attempt that fails
while it is the only one running ends the call at once (no hedge replaces
a failure: that is the retry's job).

Three brakes keep hedges to the tail:

* the delay: ``HedgingConfig.delay``, or the ``percentile`` of the recent
  successful calls' latencies, which the policy measures itself on the
  event loop's clock in a rolling window of two HdrHistograms; with fewer
  than ``min_samples`` of them, no hedge;
* the budget, Finagle's arithmetic (the retry budget's, reused): each call
  deposits ``budget_percent`` of a hedge, each hedge withdraws one, over
  the last ``budget_ttl`` seconds, plus a reserve of
  ``min_hedges_per_second`` so that a quiet pipeline can still hedge.
  A call the budget refuses asks again one ``delay`` later, while it has
  no answer: when hedges are scarce, they go to the calls that are still
  waiting, the slow ones, rather than to those at the edge of the delay;
* the slowdown guard: when more than ``max_slow_fraction`` of the recent
  calls did not answer within their delay, the whole service is slow, not
  its tail, and a hedge would only double the load: none is made.
"""

from __future__ import annotations

import math

from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar, final

import anyio
import anyio.abc
import attrs

from ._hedging_config import HedgingConfig, HedgingMetrics
from ._metrics import LatencyHistogram
from ._retry_budget import RetryBudget, RetryBudgetConfig


T = TypeVar("T")

RECOMPUTE_EVERY: Final = 16  # successes between two percentile reads

_LET_THROUGH: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _let_through(exc: BaseException) -> bool:
    """Whether *exc* is a cancellation, or an exit, that must propagate."""
    return isinstance(exc, (*_LET_THROUGH, anyio.get_cancelled_exc_class()))


def _config_or_default(config: HedgingConfig | None) -> HedgingConfig:
    return HedgingConfig() if config is None else config


@final
@attrs.define(eq=False)
class _Race(Generic[T]):
    """The hedged attempts of one call, racing for the first answer."""

    running: int = 0
    answered: bool = False
    result: Any = None
    winner: int = -1
    error: Exception | None = None
    abort: BaseException | None = None
    done: anyio.Event = attrs.Factory(anyio.Event)
    scopes: list[anyio.CancelScope] = attrs.Factory(list)

    def launch(
        self,
        tasks: anyio.abc.TaskGroup,
        run: Callable[[float], Awaitable[T]],
        began: float,
    ) -> None:
        """Start one attempt in *tasks*, in a cancel scope of its own."""
        scope = anyio.CancelScope()
        self.scopes.append(scope)
        self.running += 1  # now: the race is not over before it starts
        tasks.start_soon(self._attempt, run, began, scope)

    def _end(self, winner: anyio.CancelScope | None) -> None:
        """The race is over: cancel every attempt but the *winner*'s."""
        self.answered = True
        for other in self.scopes:
            if other is not winner:
                other.cancel()

    async def _attempt(
        self,
        run: Callable[[float], Awaitable[T]],
        began: float,
        scope: anyio.CancelScope,
    ) -> None:
        """Run one attempt; report its answer, cancel the others if first."""
        try:
            with scope:
                try:
                    result = await run(began)
                except Exception as exc:
                    if not self.answered:
                        self.error = exc
                except BaseException as exc:
                    if _let_through(exc):
                        raise
                    # Not a failure of this attempt but the end of the
                    # call (a call policy's deadline): it ends the race.
                    self.abort = exc
                    self._end(None)
                else:
                    if not self.answered:
                        self.result = result
                        self.winner = self.scopes.index(scope)
                        self._end(scope)
        finally:
            self.running -= 1
            if self.answered or self.running == 0:
                self.done.set()


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class Hedging:
    """
    Hedged requests: another attempt for a call slower than the tail.

    Like queueing at two supermarket tills when the one you chose has
    stalled: you take whichever serves you first and leave the other, and
    you do it only when your queue is unusually slow, and only now and
    then, or every queue doubles.

    >>> hedging = Hedging(HedgingConfig(delay=0.5), name="search")
    >>> # ResiliencePipeline(hedging=hedging, retry=RetryConfig())

    Share one instance between pipelines to share its latency window and
    its budget.  Only hedge operations that are safe to run twice.

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for metrics.

    .. versionadded:: 0.1.0
    """

    config: HedgingConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    _budget: RetryBudget = attrs.field(init=False)
    _half: float = attrs.field(init=False)
    _fraction: float = attrs.field(init=False)
    # The rolling window: the current half and the one before it.
    _ends: float = attrs.field(init=False, default=-math.inf)
    _current: LatencyHistogram = attrs.field(init=False)
    _previous: LatencyHistogram = attrs.field(init=False)
    _since: int = attrs.field(init=False, default=0)
    _delay: float | None = attrs.field(init=False, default=None)
    # Calls judged (they had a delay) and slow ones, per half.
    _judged: list[int] = attrs.field(init=False, factory=lambda: [0, 0])
    _slow: list[int] = attrs.field(init=False, factory=lambda: [0, 0])
    _calls: int = attrs.field(init=False, default=0)
    _hedged_calls: int = attrs.field(init=False, default=0)
    _hedges: int = attrs.field(init=False, default=0)
    _wins: int = attrs.field(init=False, default=0)
    _refused: int = attrs.field(init=False, default=0)
    _suppressed: int = attrs.field(init=False, default=0)
    _cancelled: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        config = self.config
        self._budget = RetryBudget(
            RetryBudgetConfig(
                percent_can_retry=config.budget_percent,
                min_retries_per_second=config.min_hedges_per_second,
                ttl=config.budget_ttl,
            ),
            name=self.name,
        )
        self._half = config.window / 2
        self._fraction = config.percentile * 100
        self._current = LatencyHistogram()
        self._previous = LatencyHistogram()
        self._delay = config.delay

    def __repr__(self) -> str:
        return (
            f"<Hedging {self.name!r}: delay {self._delay!r}, "
            f"{self._hedges} hedges in {self._calls} calls>"
        )

    # -- the window --------------------------------------------------------

    def _slide(self, now: float) -> None:
        """Start a new half of the window if the current one is over."""
        if now < self._ends:
            return
        if now >= self._ends + self._half:  # idle for a whole half
            self._previous.reset()
            self._judged[1] = self._slow[1] = 0
        else:
            self._previous, self._current = self._current, self._previous
            self._judged[1], self._slow[1] = self._judged[0], self._slow[0]
        self._current.reset()
        self._judged[0] = self._slow[0] = 0
        self._ends = now + self._half
        self._recompute()

    def _recompute(self) -> None:
        """The delay from the fuller half of the window (or none)."""
        self._since = 0
        if self.config.delay is not None:
            return
        current, previous = self._current, self._previous
        source = current if current.count >= previous.count else previous
        if source.count < self.config.min_samples:
            self._delay = None
        else:
            self._delay = source.percentile(self._fraction)

    def slow_fraction(self) -> float:
        """The fraction of the window's judged calls that were slow."""
        judged = self._judged[0] + self._judged[1]
        return (self._slow[0] + self._slow[1]) / judged if judged else 0.0

    def _record(self, elapsed: float) -> None:
        """A call answered (succeeded) *elapsed* seconds after it began."""
        self._current.record(elapsed)
        self._since += 1
        if self._since >= RECOMPUTE_EVERY or self._delay is None:
            self._recompute()

    def _may_hedge(self, now: float) -> bool | None:
        """
        Whether the next hedge may start now (counts a refusal).

        ``False``: the budget is short now; ``None``: the service is slow
        as a whole, and no hedge should be made.
        """
        judged = self._judged[0] + self._judged[1]
        if (
            judged >= self.config.min_samples
            and self.slow_fraction() > self.config.max_slow_fraction
        ):
            self._suppressed += 1
            return None
        if not self._budget.try_withdraw(now):
            self._refused += 1
            return False
        return True

    # -- the call ----------------------------------------------------------

    async def run(
        self,
        attempt: Callable[[float], Awaitable[T]],
        now: Callable[[], float],
        start: float,
    ) -> T:
        """
        Run ``await attempt(began)``, hedged: the first success wins.

        Args:
            attempt: Runs one attempt (through the attempt policies) that
                began at event-loop time *began*.
            now: The event loop's clock.
            start: When the first attempt begins.

        Returns:
            The first answer.

        Raises:
            Exception: The error of the attempt that failed last, when
                none succeeded.
        """
        self._slide(start)
        self._calls += 1
        self._budget.deposit(start)
        delay = self._delay
        if delay is None:
            result = await attempt(start)
            self._record(now() - start)
            return result
        race: _Race[T] = _Race()
        slow = False
        hedges = 0
        async with anyio.create_task_group() as tasks:
            race.launch(tasks, attempt, start)
            limit = self.config.max_hedged_attempts
            ticks = 0
            while hedges < limit:
                ticks += 1
                with anyio.CancelScope(deadline=start + ticks * delay):
                    await race.done.wait()
                if race.done.is_set():
                    break
                slow = True
                allowed = self._may_hedge(now())
                if allowed is None:
                    break  # a slowdown: no hedge for this call
                if not allowed:
                    continue  # the budget: ask again one delay later
                hedges += 1
                self._hedges += 1
                if hedges == 1:
                    self._hedged_calls += 1
                race.launch(tasks, attempt, now())
            await race.done.wait()
        return self._settle(race, now() - start, slow=slow)

    def _settle(self, race: _Race[T], elapsed: float, *, slow: bool) -> T:
        """Judge a call that had a delay; its answer, or its last error."""
        self._judged[0] += 1
        if slow:
            self._slow[0] += 1
        self._cancelled += sum(
            1 for scope in race.scopes if scope.cancel_called
        )
        # The errors' tracebacks hold the attempts' frames, which hold the
        # race: no cycle is left behind.
        abort, error = race.abort, race.error
        race.abort = race.error = None
        if abort is not None:
            raise abort
        if race.answered:
            if race.winner > 0:
                self._wins += 1
            self._record(elapsed)
            result: T = race.result
            return result
        assert error is not None  # noqa: S101 (running reached 0 unanswered)
        raise error

    def metrics(self) -> HedgingMetrics:
        """
        Take a snapshot of the policy's counters.

        Returns:
            A frozen :class:`HedgingMetrics`.
        """
        return HedgingMetrics(
            name=self.name,
            calls=self._calls,
            hedged_calls=self._hedged_calls,
            hedges=self._hedges,
            hedge_wins=self._wins,
            budget_rejections=self._refused,
            suppressed_by_slowdown=self._suppressed,
            cancelled_attempts=self._cancelled,
            delay=self._delay,
            slow_fraction=self.slow_fraction(),
        )
