"""
The composition of the policies, and the only place that sets their order.

A call goes through the throttle, the rate limiter, the bulkhead, then
the retry loop, then the circuit breaker, then the timeout:

    throttling( rate_limit( bulkhead( retry( hedging( breaker(
        timeout( op ) ) ) ) ) ) )

* The throttle is outermost: a call it drops takes no rate-limit turn and
  no bulkhead slot, and it judges the call by its final outcome, after the
  retries.
* The rate limiter comes next, so that a call it rejects never takes a
  bulkhead slot, and a call waiting for its turn waits without one.
* The bulkhead is outermost of the rest, so that a call holds one slot
  for all its attempts and a flood of retries cannot take more slots
  than callers.
* The retry loop is outside the breaker, so that every attempt is judged
  by the breaker and an open circuit stops the retries at once (an open
  circuit's error is not retryable).
* The retry budget, when there is one, is consulted by the retry loop
  before each retry, so that it sees each retry once, whichever attempt
  policy failed (see ``docs/retry-budget.md``).
* Hedging is inside the retry loop and outside the attempt policies:
  each hedged attempt is judged by the breaker and timed on its own, the
  retry loop sees one result, and the hedges share the call's bulkhead
  slot, so the hedging budget, not the bulkhead, bounds them (see
  ``docs/hedging.md``).
* The timeout is innermost, per attempt, so that a timed-out attempt
  counts as a breaker failure and may be retried.

The pipeline builds the policies from their configs, puts them in that
order in a :class:`~._engine.Plan`, and keeps the books: one
:class:`Outcome` per call, and its latency.  The plan runs each call,
calling each policy's own methods (:mod:`._policy`); no policy's logic is
here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any, Final, TypeVar, final

import attrs

from . import _hooks
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead
from ._config import BulkheadConfig, CircuitBreakerConfig, RetryConfig
from ._engine import Plan
from ._hedging import Hedging
from ._hedging_config import HedgingConfig
from ._metrics import LatencyRecorder
from ._outcomes import (
    FAILURE_OUTCOMES,
    Outcome,
    PipelineMetrics,
    classify_rejection,
)
from ._policy import Policy
from ._rate_limiter import RateLimiter, RateLimiterConfig
from ._retry import RetryManager
from ._retry_budget import (
    BudgetedRetry,
    RetryBudget,
    RetryBudgetConfig,
    refused_by_budget,
)
from ._throttling import AdaptiveThrottle, ThrottlingConfig
from ._timeouts import Timeout, current_time


T = TypeVar("T")


_OUTCOMES: Final = tuple(Outcome)
_INDEX: Final = {outcome: i for i, outcome in enumerate(_OUTCOMES)}
_SUCCESS: Final = _INDEX[Outcome.SUCCESS]
_CANCELLED: Final = _INDEX[Outcome.CANCELLED]


_UNSET: Any = object()


def _policy(value: Any) -> Any:
    # Configs become policies in __attrs_post_init__, named after the
    # pipeline (two pipelines' policies must not share the name "default").
    return value


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class _Books:
    """
    The pipeline's accounting: one outcome per call, and its latency.

    The plan's ledger (:class:`~._engine.Ledger`): it settles every call
    that ends, rejections and cancellations included.
    """

    classify: Callable[[Exception], Outcome]
    recorder: LatencyRecorder | None
    key: str
    # Counts per outcome, indexed by _INDEX: a list, because hashing an
    # Enum member runs Python code (about 0.2 us twice per call).
    counts: list[int] = attrs.Factory(lambda: [0] * len(_OUTCOMES))

    def settle(self, elapsed: float, error: BaseException | None) -> None:
        """Count a call that ended after *elapsed* seconds."""
        if error is None:
            self.counts[_SUCCESS] += 1
        elif isinstance(error, Exception):
            self.counts[_INDEX[self.classify(error)]] += 1
        else:
            self.counts[_CANCELLED] += 1
        recorder = self.recorder
        if recorder is not None:
            recorder.record(self.key, elapsed)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ResiliencePipeline:
    """
    Rate limit, bulkhead, retry, circuit breaker and timeout around a call.

    Each policy is optional; give a config to get a fresh policy, or an
    instance to share one between pipelines (one breaker per server, say,
    shared by every operation that calls it).

    >>> pipeline = ResiliencePipeline(
    ...     bulkhead=BulkheadConfig(name="tools"),
    ...     retry=RetryConfig(max_attempts=3),
    ...     circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
    ...     timeout=10.0,
    ... )
    >>> # result = await pipeline.call(fetch, url)

    Args:
        bulkhead: A :class:`Bulkhead`, a :class:`BulkheadConfig`, or None.
        retry: A :class:`RetryManager`, a :class:`RetryConfig`, or None.
        circuit_breaker: A :class:`CircuitBreaker`, a
            :class:`CircuitBreakerConfig`, or None.
        timeout: Seconds each attempt may take, or ``None`` for no limit.
            By default, the breaker's ``request_timeout`` when there is a
            breaker, else none.  The breaker's own timeout is never
            applied a second time.
        retry_budget: A :class:`RetryBudget` (share one between the
            pipelines of one server), a :class:`RetryBudgetConfig`, or
            None.  Needs *retry*: the retry loop asks it before each
            retry, and a retry it refuses is not made.
        rate_limit: A :class:`RateLimiter` (share one to share a limit), a
            :class:`RateLimiterConfig`, or None; entered before the
            bulkhead.
        throttling: An :class:`AdaptiveThrottle`, a
            :class:`ThrottlingConfig`, or None: client-side adaptive
            throttling, outermost, once per call (docs/throttling.md).
        hedging: A :class:`Hedging` policy, a :class:`HedgingConfig`, or
            None: another attempt for a call slower than the recent tail,
            the first answer winning (docs/hedging.md).  Hedge only
            operations that are safe to run twice.
        name: A name for logs and metrics.
        recorder: A :class:`LatencyRecorder` that gets the duration of
            every call (all outcomes) under *record_key*; ``None`` to
            record nothing.
        record_key: The recorder key; the pipeline's *name* by default.
        call_policies: Policies of your own (:class:`Policy`) entered once
            per call, inside the bulkhead, outermost first.
        attempt_policies: Policies of your own entered once per attempt,
            inside the circuit breaker and outside the timeout.
        retry_if: Decides which errors calls through *this* pipeline
            retry, instead of the retry manager's own ``is_retryable``
            (cancellation is never retried).  The MCP client uses it to
            retry a call that may have side effects only when the request
            provably never left the client.

    .. versionadded:: 0.1.0
    """

    bulkhead: Bulkhead | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    retry: RetryManager | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    circuit_breaker: CircuitBreaker | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    timeout: float | None = attrs.field(default=_UNSET, kw_only=True)
    retry_budget: RetryBudget | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    rate_limit: RateLimiter | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    throttling: AdaptiveThrottle | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    hedging: Hedging | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    name: str = attrs.field(default="default", kw_only=True)
    retry_if: Callable[[Exception], bool] | None = attrs.field(
        default=None, kw_only=True
    )
    recorder: LatencyRecorder | None = attrs.field(default=None, kw_only=True)
    record_key: str | None = attrs.field(default=None, kw_only=True)
    call_policies: tuple[Policy[Any], ...] = attrs.field(
        default=(), converter=tuple, kw_only=True
    )
    attempt_policies: tuple[Policy[Any], ...] = attrs.field(
        default=(), converter=tuple, kw_only=True
    )

    _books: _Books = attrs.field(init=False)
    _plan: Plan = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._build_policies()
        self.timeout = self._check_timeout(self.timeout)
        key = self.name if self.record_key is None else self.record_key
        self._books = _Books(self._classify, self.recorder, key)
        breaker = self.circuit_breaker
        call_policies: list[Policy[Any]] = []
        if self.throttling is not None:
            call_policies.append(self.throttling)
        if self.rate_limit is not None:
            call_policies.append(self.rate_limit)
        if self.bulkhead is not None:
            call_policies.append(self.bulkhead)
        call_policies.extend(self.call_policies)
        attempt_policies: list[Policy[Any]] = []
        if breaker is not None:
            attempt_policies.append(breaker)
        attempt_policies.extend(self.attempt_policies)
        if self.timeout is not None:
            where = (
                f"pipeline {self.name!r}" if breaker is None else breaker.where
            )
            attempt_policies.append(Timeout(self.timeout, where=where))
        retry: Any = self.retry
        if self.retry_budget is not None:
            retry = BudgetedRetry(retry, self.retry_budget)
        self._plan = Plan(
            call_policies=tuple(call_policies),
            retry=retry,
            attempt_policies=tuple(attempt_policies),
            retry_if=self.retry_if,
            ledger=self._books,
            hedging=self.hedging,
        )

    def _build_policies(self) -> None:
        name = self.name
        bulkhead: Any = self.bulkhead
        if isinstance(bulkhead, BulkheadConfig):
            if bulkhead.name == "default":
                bulkhead = attrs.evolve(bulkhead, name=name)
            self.bulkhead = Bulkhead(bulkhead)
        retry: Any = self.retry
        if isinstance(retry, RetryConfig):
            self.retry = RetryManager(retry, name=name)
        breaker: Any = self.circuit_breaker
        if isinstance(breaker, CircuitBreakerConfig):
            self.circuit_breaker = CircuitBreaker(breaker, name=name)
        budget: Any = self.retry_budget
        if isinstance(budget, RetryBudgetConfig):
            self.retry_budget = RetryBudget(budget, name=name)
        if self.retry_budget is not None and self.retry is None:
            from ._config import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(
                "ResiliencePipeline.retry_budget needs retry: the budget "
                "is consulted before each retry"
            )
        if isinstance(self.rate_limit, RateLimiterConfig):
            self.rate_limit = RateLimiter(self.rate_limit, name=name)
        throttling: Any = self.throttling
        if isinstance(throttling, ThrottlingConfig):
            self.throttling = AdaptiveThrottle(throttling, name=name)
        if isinstance(self.hedging, HedgingConfig):
            self.hedging = Hedging(self.hedging, name=name)

    def _check_timeout(self, timeout: Any) -> float | None:
        if timeout is _UNSET:
            breaker = self.circuit_breaker
            return None if breaker is None else breaker.config.request_timeout
        if timeout is None:
            return None
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout < float("inf")
        ):
            from ._config import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(
                "ResiliencePipeline.timeout must be a finite number of "
                f"seconds > 0 or None, got {timeout!r}"
            )
        return float(timeout)

    @property
    def key(self) -> str:
        """The key latencies are recorded under (``record_key`` or name)."""
        return self._books.key

    def __repr__(self) -> str:
        parts = [
            f"bulkhead={self.bulkhead!r}",
            f"retry={self.retry!r}",
            f"circuit_breaker={self.circuit_breaker!r}",
            f"timeout={self.timeout!r}",
        ]
        if self.retry_budget is not None:
            parts.append(f"retry_budget={self.retry_budget!r}")
        if self.hedging is not None:
            parts.append(f"hedging={self.hedging!r}")
        if self.rate_limit is not None:  # outside the bulkhead: first
            parts.insert(0, f"rate_limit={self.rate_limit!r}")
        if self.throttling is not None:  # outermost: before the limiter
            parts.insert(0, f"throttling={self.throttling!r}")
        return f"<ResiliencePipeline {self.name!r} {', '.join(parts)}>"

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)`` through every configured policy.

        Args:
            fn: An async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned.

        Raises:
            ThrottledError: The adaptive throttle dropped the call.
            RateLimitedError: The call's turn was beyond ``max_wait``.
            BulkheadError: The bulkhead was full.
            CircuitBreakerError: The circuit was open.
            CallTimeout: An attempt, or the bulkhead's wait plus run, took
                too long (the last attempt's, when retries ran out).
            Exception: The operation's own last error, unchanged but for
                a note when the retries ran out or the retry budget
                refused one.
        """
        tracer = _hooks.call_tracer()
        if tracer is not None:
            return await self._call_traced(tracer, fn, args)
        return await self._plan.run(fn, args)

    async def _call_traced(
        self,
        tracer: _hooks.CallTracer,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> T:
        """:meth:`call` inside an OpenTelemetry span (only when enabled)."""
        entered = current_time()
        runs = 0
        first_run: float | None = None

        async def attempt(*attempt_args: Any) -> T:
            nonlocal runs, first_run
            runs += 1
            if first_run is None:
                first_run = current_time()
            return await fn(*attempt_args)

        span = tracer.start(self.name)
        error: BaseException | None = None
        try:
            return await self._plan.run(attempt, args)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is None:
                outcome = Outcome.SUCCESS
            elif isinstance(error, Exception):
                outcome = self._classify(error)
            else:
                outcome = Outcome.CANCELLED
            breaker = self.circuit_breaker
            bulkhead = self.bulkhead
            tracer.finish(
                span,
                outcome=outcome.value,
                attempts=max(runs, 1),
                breaker_name=breaker.name if breaker is not None else None,
                breaker_state=breaker.state if breaker is not None else None,
                breaker_failures=(
                    breaker.metrics().current_failures
                    if breaker is not None
                    else None
                ),
                bulkhead_name=bulkhead.name if bulkhead is not None else None,
                bulkhead_wait=(
                    first_run - entered
                    if bulkhead is not None and first_run is not None
                    else None
                ),
                error=error,
            )

    def _classify(self, exc: Exception) -> Outcome:
        if self.retry_budget is not None and refused_by_budget(exc):
            return Outcome.RETRY_BUDGET_EXHAUSTED
        rejected = classify_rejection(exc)
        if rejected is not None:
            return rejected
        # A retryable error only escapes the retry loop once the attempts
        # or the time budget are spent.
        retry = self.retry
        if retry is not None and (self.retry_if or retry.is_retryable)(exc):
            return Outcome.RETRIES_EXHAUSTED
        return Outcome.ERROR

    def metrics(self) -> PipelineMetrics:
        """
        Take a snapshot of the pipeline's counters.

        Returns:
            A frozen :class:`PipelineMetrics`.
        """
        counts = dict(zip(_OUTCOMES, self._books.counts, strict=True))
        breaker = self.circuit_breaker
        retry = self.retry
        bulkhead = self.bulkhead
        breaker_metrics = breaker.metrics() if breaker is not None else None
        retry_metrics = retry.metrics() if retry is not None else None
        bulkhead_metrics = bulkhead.metrics() if bulkhead is not None else None
        failed = sum(counts[o] for o in FAILURE_OUTCOMES)
        key = self._books.key
        return PipelineMetrics(
            name=self.name,
            total_requests=sum(counts.values()),
            successful_requests=counts[Outcome.SUCCESS],
            failed_requests=failed,
            cancelled_requests=counts[Outcome.CANCELLED],
            retried_requests=(
                retry_metrics.retried_calls if retry_metrics else 0
            ),
            circuit_breaker_trips=(
                breaker_metrics.trips if breaker_metrics else 0
            ),
            bulkhead_rejections=counts[Outcome.BULKHEAD_FULL],
            outcomes=MappingProxyType(counts),
            circuit_breaker=breaker_metrics,
            retry=retry_metrics,
            bulkhead=bulkhead_metrics,
            rate_limiter=(
                self.rate_limit.metrics() if self.rate_limit else None
            ),
            throttling=(
                self.throttling.metrics() if self.throttling else None
            ),
            latency=(
                self.recorder.snapshot_or_empty(key)
                if self.recorder is not None
                else None
            ),
            retry_budget=(
                self.retry_budget.metrics()
                if self.retry_budget is not None
                else None
            ),
            hedging=self.hedging.metrics() if self.hedging else None,
        )
