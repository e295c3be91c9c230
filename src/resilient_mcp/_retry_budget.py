"""
The retry budget: retries as a share of calls, as Finagle's RetryBudget.

A retry policy alone lets every call try ``max_attempts`` times, so a
server that fails everything sees ``max_attempts`` times its load exactly
when it can least take it (a retry storm).  A budget caps the retries of
*all* calls together: every call deposits a token, every retry withdraws
``1 / percent_can_retry`` of them, and the tokens expire after ``ttl``
seconds, so retries over the last ``ttl`` seconds stay under
``percent_can_retry`` of the calls, plus a reserve of
``min_retries_per_second * ttl`` retries for clients that call rarely.

The arithmetic is Finagle's ``TokenRetryBudget`` over a
``TokenBucket.newLeakyBucket`` (twitter/finagle:
``finagle-core/src/main/scala/com/twitter/finagle/service/RetryBudget.scala``):
integer tokens scaled by 1,000 so that no float rounding decides a retry,
and a window of ten buckets that slides a tenth of ``ttl`` at a time.

The budget is consulted by the retry loop (:class:`BudgetedRetry`, the
:class:`~._engine.RetryLoop` the pipeline gives its plan when it has a
budget): the retry policy decides whether a retry is wanted, then the
budget whether it may be made.  The success path costs one deposit.

Given a ``store`` (:class:`~resilient_mcp.RedisStore`), the budgets of
every process that share its prefix and their name count the fleet's
tokens together, in buckets of the store's clock.  Nothing waits for the
store on the call's path: each deposit and withdrawal is added to a
local tally that a task in the store's task group sends (one request in
flight at a time, the tally of everything that came meanwhile in the
next), and each answer brings back the fleet's sum.  A retry is decided
on that sum plus the tally not yet answered, as long as the sum is
younger than a bucket; otherwise, and whenever the store fails, on the
local buckets, which are kept in every mode (see docs/fleet.md).
"""

from __future__ import annotations

import math

from collections.abc import Callable
from typing import Any, Final, final

import attrs

from ._config import _fail, _is_number, _seconds, to_seconds
from ._retry import RetryManager
from ._store._protocol import StateStore
from ._timeouts import current_time


DEFAULT_PERCENT_CAN_RETRY: Final = 0.2  # retries per call
DEFAULT_MIN_RETRIES_PER_SECOND: Final = 10.0  # retries per second
DEFAULT_TTL: Final = 10.0  # seconds a deposit or a withdrawal counts
BUCKETS: Final = 10  # buckets per ttl: the window slides ttl / 10 at once
SCALE: Final = 1000  # tokens per call (Finagle's ScaleFactor)

EXHAUSTED: Final = "the retry budget is exhausted"
"""Why the retry loop gave up, in the note the propagated error carries."""


def _check_percent(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        _fail(inst, attribute, "a number in [0, 1]", value)


def _check_rate(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 <= value < float("inf"):
        _fail(inst, attribute, "a finite number >= 0", value)


@attrs.frozen(kw_only=True)
class RetryBudgetConfig:
    """
    How many retries all the calls through a budget may make together.

    A retry is allowed while the retries over the last ``ttl`` seconds
    stay under ``percent_can_retry`` of the calls of those seconds plus
    ``min_retries_per_second * ttl``.  The defaults are Finagle's: about
    20 % of the calls may be retried, on top of 10 retries per second.

    .. versionadded:: 0.1.0
    """

    percent_can_retry: float = attrs.field(
        default=DEFAULT_PERCENT_CAN_RETRY, validator=_check_percent
    )
    """Retries allowed per call, in [0, 1] (0.2: one per five calls)."""

    min_retries_per_second: float = attrs.field(
        default=DEFAULT_MIN_RETRIES_PER_SECOND, validator=_check_rate
    )
    """
    A reserve of retries per second, whatever the calls (0 for none), for
    clients that have just started or call rarely.
    """

    ttl: float = attrs.field(
        default=DEFAULT_TTL, converter=to_seconds, validator=_seconds()
    )
    """
    Seconds a call's deposit and a retry's withdrawal count; the window
    slides a tenth of it at a time.
    """


@attrs.frozen(kw_only=True)
class RetryBudgetMetrics:
    """
    A snapshot of a retry budget's counters.

    .. versionadded:: 0.1.0
    """

    name: str
    """The budget's name."""
    calls: int
    """Calls that deposited (every call that ended, cancelled included)."""
    retries: int
    """Retries the budget allowed and that were made."""
    rejected_retries: int
    """Retries the budget refused: their calls ended with their error."""
    balance: int
    """
    Retries the budget would allow at once, as of the last deposit or
    withdrawal (deposits that expired since still count).
    """
    store_errors: int = 0
    """Requests to the shared store that failed or were too slow (each
    sends the tally of many calls); ``0`` without a store."""


def _config_or_default(config: RetryBudgetConfig | None) -> RetryBudgetConfig:
    return RetryBudgetConfig() if config is None else config


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class RetryBudget:
    """
    Retries as a share of the calls, shared by every pipeline that uses it.

    Like a petty-cash box: each call puts in a coin, each retry takes out
    five (at ``percent_can_retry=0.2``), coins older than ``ttl`` seconds
    are taken away, and a float of ``min_retries_per_second * ttl``
    retries is always there.  When the box is short, the retry is not
    made and the call ends with its error.

    >>> budget = RetryBudget(
    ...     RetryBudgetConfig(percent_can_retry=0.2, min_retries_per_second=0)
    ... )
    >>> for _ in range(10):
    ...     budget.deposit(0.0)
    >>> [budget.try_withdraw(0.0) for _ in range(3)]
    [True, True, False]

    Pass one instance to the pipelines of one server so that they share
    it (``ResiliencePipeline(retry_budget=budget)``).  Times are event
    loop times, passed in: the budget reads no clock.

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for metrics (the ``budget`` label), and the shared
            key's name.
        store: Where the fleet shares the budget; ``None`` (the default)
            keeps it in this process.

    .. versionadded:: 0.1.0
    """

    config: RetryBudgetConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    store: StateStore | None = attrs.field(default=None, kw_only=True)

    _deposit: int = attrs.field(init=False)
    _withdrawal: int = attrs.field(init=False)
    _reserve: int = attrs.field(init=False)
    _width: float = attrs.field(init=False)
    # Per bucket: the bucket-width period it holds (-1: none) and its
    # net tokens (deposits minus withdrawals).
    _epochs: list[int] = attrs.field(
        init=False, factory=lambda: [-1] * BUCKETS
    )
    _tokens: list[int] = attrs.field(init=False, factory=lambda: [0] * BUCKETS)
    _sum: int = attrs.field(init=False, default=0)
    # The bucket of the last time seen, and when it began and ends: a
    # call in the same bucket (nearly every call) skips the arithmetic.
    _index: int = attrs.field(init=False, default=0)
    _begins: float = attrs.field(init=False, default=math.inf)
    _ends: float = attrs.field(init=False, default=-math.inf)
    _calls: int = attrs.field(init=False, default=0)
    _retries: int = attrs.field(init=False, default=0)
    _rejected: int = attrs.field(init=False, default=0)
    # With a store: the fleet's tokens as of its last answer, and when
    # (None: no fresh answer); the tally not sent yet, and the one sent
    # and not answered yet.
    _fleet: int | None = attrs.field(init=False, default=None)
    _fleet_at: float = attrs.field(init=False, default=-math.inf)
    _pending: int = attrs.field(init=False, default=0)
    _sending: int = attrs.field(init=False, default=0)
    _flushing: bool = attrs.field(init=False, default=False)
    _store_errors: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        config = self.config
        percent = config.percent_can_retry
        # Finagle: with percent 0 calls earn nothing and a retry costs 1,
        # so only the reserve pays for retries.
        self._deposit = 0 if percent == 0 else SCALE
        self._withdrawal = 1 if percent == 0 else int(SCALE / percent)
        self._reserve = int(
            config.min_retries_per_second * config.ttl * self._withdrawal
        )
        self._width = config.ttl / BUCKETS

    def __repr__(self) -> str:
        return (
            f"<RetryBudget {self.name!r} {self._calls} calls, "
            f"{self._retries} retries, {self._rejected} refused, "
            f"balance {self._balance()}>"
        )

    def deposit(self, now: float) -> None:
        """A call ended at event-loop time *now*: credit the budget."""
        self._tokens[self._slide(now)] += self._deposit
        self._sum += self._deposit
        self._calls += 1
        if self.store is not None:
            self._share(self._deposit)

    def try_withdraw(self, now: float) -> bool:
        """
        Take one retry from the budget at *now*, if it has one.

        Returns:
            ``True`` when the retry may be made (and is counted);
            ``False`` when the budget refuses it (counted as rejected,
            nothing withdrawn).
        """
        index = self._slide(now)
        cost = self._withdrawal
        store = self.store
        tokens = self._sum if store is None else self._fleet_tokens(now)
        if tokens + self._reserve < cost:
            self._rejected += 1
            return False
        self._tokens[index] -= cost
        self._sum -= cost
        self._retries += 1
        if store is not None:
            self._share(-cost)
        return True

    def refund(self, now: float) -> None:
        """
        Give back a retry withdrawn at or before *now* but not made.

        Its wait was cancelled, or an open circuit would have rejected it.
        """
        cost = self._withdrawal
        self._tokens[self._slide(now)] += cost
        self._sum += cost
        self._retries -= 1
        if self.store is not None:
            self._share(cost)

    def metrics(self) -> RetryBudgetMetrics:
        """
        Take a snapshot of the budget's counters.

        Returns:
            A frozen :class:`RetryBudgetMetrics`.
        """
        return RetryBudgetMetrics(
            name=self.name,
            calls=self._calls,
            retries=self._retries,
            rejected_retries=self._rejected,
            balance=self._balance(),
            store_errors=self._store_errors,
        )

    # -- sharing through a store ------------------------------------------

    def _fleet_tokens(self, now: float) -> int:
        """The fleet's tokens if a fresh answer has them, else the local."""
        fleet = self._fleet
        if fleet is None or now - self._fleet_at > self._width:
            self._share(0)  # ask for the fleet's sum, for the next retry
            return self._sum
        return fleet + self._sending + self._pending

    def _share(self, delta: int) -> None:
        """Add *delta* tokens to the tally the store is sent."""
        self._pending += delta
        if self._flushing:
            return
        store = self.store
        if (
            store is not None
            and store.available()
            and store.start_soon(self._flush)
        ):
            self._flushing = True
        else:
            # Nowhere to send it: the local buckets decide meanwhile.
            self._pending = 0
            self._fleet = None

    async def _flush(self) -> None:
        """Send the tally, one request at a time, until none is left."""
        store = self.store
        try:
            first = True
            while store is not None and (first or self._pending):
                first = False
                delta = self._sending = self._pending
                self._pending = 0
                fleet = await store.budget(
                    self.name, delta, self._width, BUCKETS
                )
                self._sending = 0
                if fleet is None:
                    self._store_errors += 1
                    self._fleet = None
                    self._pending = 0
                    return
                self._fleet = fleet
                self._fleet_at = current_time()
        finally:
            self._sending = 0
            self._flushing = False

    def _balance(self) -> int:
        return max(0, (self._sum + self._reserve) // self._withdrawal)

    def _slide(self, now: float) -> int:
        """Expire buckets older than ``ttl``; return *now*'s bucket."""
        if self._begins <= now < self._ends:
            return self._index
        width = self._width
        epoch = int(now // width)
        index = self._index = epoch % BUCKETS
        self._begins = epoch * width
        self._ends = (epoch + 1) * width
        epochs = self._epochs
        if epochs[index] == epoch:
            return index
        tokens = self._tokens
        for i in range(BUCKETS):
            old = epochs[i]
            if old != -1 and old <= epoch - BUCKETS:
                self._sum -= tokens[i]
                tokens[i] = 0
                epochs[i] = -1
        epochs[index] = epoch
        return index


def refused_by_budget(exc: BaseException) -> bool:
    """Whether the last give-up note on *exc* is a retry budget's refusal."""
    notes: list[str] = getattr(exc, "__notes__", None) or []
    return bool(notes) and str(notes[-1]).endswith(f"({EXHAUSTED})")


@final
@attrs.frozen(eq=False)
class BudgetedRetry:
    """
    A retry loop (:class:`~._engine.RetryLoop`) that asks a budget.

    The retry manager decides whether a retry is wanted (retryable error,
    attempts and time left); the budget then decides whether it may be
    made.  A refused retry is not made: the call ends with its last error,
    unchanged but for a note saying the budget was exhausted.  Each call
    deposits once, when it ends.
    """

    retry: RetryManager
    budget: RetryBudget

    def next_delay(  # noqa: PLR0917 (the RetryLoop signature)
        self,
        exc: Exception,
        attempt: int,
        previous: float,
        start: float,
        now: float,
        deadline: float,
        retry_if: Callable[[Exception], bool] | None,
    ) -> float | None:
        """The retry manager's delay, if the budget allows the retry."""
        retry = self.retry
        delay = retry.next_delay(
            exc, attempt, previous, start, now, deadline, retry_if
        )
        if delay is None or self.budget.try_withdraw(now):
            return delay
        retry.give_up(exc, attempt, EXHAUSTED)
        return None

    async def backoff(
        self, exc: Exception, attempt: int, delay: float
    ) -> None:
        """Wait as the retry manager does; refund a retry never made."""
        try:
            await self.retry.backoff(exc, attempt, delay)
        except BaseException:
            # Cancelled, or the caller's deadline passed: no retry.
            self.budget.refund(current_time())
            raise

    def refused(self, rejection: Exception, attempt: int) -> None:
        """An attempt policy refused the retry: it is not made."""
        self.budget.refund(current_time())
        self.retry.refused(rejection, attempt)

    def leave(
        self,
        permit: object,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """The call ended: deposit, and let the retry manager count it."""
        self.budget.deposit(now)
        self.retry.leave(permit, now, elapsed, error)
