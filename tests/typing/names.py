"""
The rest of the public names, as a user types them, under mypy --strict.

Not a test module: `nox -s typecheck` type-checks it.  With api.py (the
primitives) and client.py (the MCP client) it uses every name in
``resilient_mcp.__all__`` (tests/typing/test_lazy_names.py checks that);
each ``assert_type`` fails if a name regresses to ``object`` or ``Any``.
"""

from __future__ import annotations

import random

from typing import Any, assert_type

import anyio

from resilient_mcp import (
    AdaptiveLimitConfig,
    AdaptiveThrottle,
    BreakerShape,
    Bulkhead,
    BulkheadConfig,
    BulkheadError,
    CallTimeout,
    CircuitBreaker,
    CircuitBreakerError,
    ConfigurationError,
    Hedging,
    HedgingConfig,
    HedgingMetrics,
    HlogFormatError,
    JitterMode,
    LatencyHistogram,
    LatencyRecorder,
    LatencyRecorderMetrics,
    LatencySnapshot,
    PermanentError,
    Policy,
    PolicyBase,
    RateLimitedError,
    RateLimiter,
    RateLimiterConfig,
    RateLimiterMetrics,
    RecoveryAction,
    RedisStore,
    ResilienceError,
    ResiliencePipeline,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetMetrics,
    RetryConfig,
    RetryManager,
    RetryMetrics,
    StateListener,
    StateStore,
    TemporaryError,
    ThrottledError,
    ThrottlingConfig,
    ThrottlingMetrics,
    Timeout,
    classify_error,
    run_hlog_writer,
    write_hlog_once,
)


class Passthrough(PolicyBase):
    """A user's policy: admits everything, through the optional defaults."""

    @property
    def name(self) -> str:
        return "passthrough"

    def enter_nowait(self, now: float) -> None:
        print(now)

    def leave(
        self,
        permit: None,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        print(permit, now, elapsed, error)


def policies() -> list[Policy[Any]]:
    timeout = Timeout(2.5, where="pipeline 'x'")
    assert_type(timeout.time_limit, float)
    assert_type(timeout.where, str)
    assert_type(timeout.expired(None), CallTimeout)
    return [timeout, Passthrough()]


def latencies() -> LatencyRecorder:
    histogram = LatencyHistogram(significant_figures=3)
    histogram.record(0.25)
    assert_type(histogram.percentile(99.0), float)
    assert_type(histogram.snapshot(), LatencySnapshot)
    recorder = LatencyRecorder(max_keys=10)
    recorder.record("search", 0.25)
    assert_type(recorder.histogram("search"), LatencyHistogram)
    assert_type(recorder.snapshot().p99, float)
    assert_type(recorder.metrics(), LatencyRecorderMetrics)
    return recorder


async def hlogs(recorder: LatencyRecorder) -> None:
    write_hlog_once(recorder, "latency.hlog", overwrite=True)
    async with anyio.create_task_group() as tg:
        await tg.start(run_hlog_writer, recorder, "intervals.hlog", 10.0)
        tg.cancel_scope.cancel()


def retries(jitter: JitterMode) -> RetryMetrics:
    manager = RetryManager(RetryConfig(jitter=jitter))
    metrics = manager.metrics()
    assert_type(metrics.retried_calls, int)
    return metrics


def retry_budgets() -> RetryBudgetMetrics:
    budget = RetryBudget(RetryBudgetConfig(percent_can_retry=0.1), name="s")
    budget.deposit(0.0)
    assert_type(budget.try_withdraw(0.0), bool)
    pipeline = ResiliencePipeline(retry=RetryConfig(), retry_budget=budget)
    assert_type(pipeline.retry_budget, RetryBudget | None)
    metrics = budget.metrics()
    assert_type(metrics.rejected_retries, int)
    return metrics


async def rate_limits() -> RateLimiterMetrics:
    limiter = RateLimiter(RateLimiterConfig(rate=10.0, burst=2), name="api")
    limiter.hold(1.5, now=0.0)
    assert_type(limiter.retry_after(0.0), float)
    try:
        assert_type(await limiter.call(anyio.sleep, 0), None)
    except RateLimitedError as exc:
        assert_type(exc.retry_after, float)
    return limiter.metrics()


async def fleet(url: str) -> RateLimiterMetrics:
    async with RedisStore(url, prefix="app", timeout=0.01) as store:
        shared: StateStore = store
        assert_type(shared.available(), bool)
        budget = RetryBudget(name="s", store=shared)
        assert_type(budget.metrics().store_errors, int)
        breaker = CircuitBreaker(name="s", store=shared, refresh_interval=0.5)
        assert_type(breaker.metrics().store_errors, int)
        shape = BreakerShape(
            width=1.0,
            buckets=10,
            threshold=5,
            rate=0.0,
            minimum=1,
            recovery=30.0,
        )
        reply = await shared.breaker("s", shape, -1, (0, 0), 0)
        assert_type(reply, tuple[int, float | None, bool] | None)
        limiter = RateLimiter(RateLimiterConfig(rate=10.0), store=shared)
        await limiter.call(anyio.sleep, 0)
        return limiter.metrics()


def errors(listener: StateListener) -> None:
    caught: list[ResilienceError] = [
        BulkheadError("tools", queue_full=False),
        CallTimeout(2.5, "pipeline 'x'"),
        PermanentError(-32602, "bad arguments"),
        TemporaryError("try again", retry_after=1.0),
    ]
    for error in caught:
        assert_type(classify_error(error), RecoveryAction)
    try:
        retries("proportional")
        retries("sometimes")  # type: ignore[arg-type]
    except (ConfigurationError, HlogFormatError) as exc:
        assert_type(exc, ConfigurationError | HlogFormatError)
    except CircuitBreakerError as exc:
        assert_type(exc.retry_after, float | None)
    print(listener)


async def throttling() -> ThrottlingMetrics:
    throttle = AdaptiveThrottle(
        ThrottlingConfig(k=2.0, window=120.0, seed=1),
        name="server",
        rng=random.Random(1),
    )
    try:
        await throttle.call(anyio.sleep, 0)
    except ThrottledError as exc:
        assert_type(exc.probability, float)
    assert_type(throttle.probability(), float)
    metrics = throttle.metrics()
    assert_type(metrics.rejection_probability, float)
    assert_type(metrics.requests, int)
    return metrics


async def hedging() -> HedgingMetrics:
    policy = Hedging(
        HedgingConfig(
            max_hedged_attempts=1,
            delay=None,
            percentile=0.95,
            budget_percent=0.05,
        ),
        name="server",
    )
    pipeline = ResiliencePipeline(hedging=policy)
    assert_type(pipeline.hedging, Hedging | None)
    await pipeline.call(anyio.sleep, 0)
    metrics = policy.metrics()
    assert_type(metrics.delay, float | None)
    assert_type(metrics.hedges, int)
    assert_type(pipeline.metrics().hedging, HedgingMetrics | None)
    return metrics


def adaptive() -> int:
    config = AdaptiveLimitConfig(
        algorithm="vegas", gradient2_queue_size=lambda limit: limit // 10
    )
    AdaptiveLimitConfig(algorithm="cubic")  # type: ignore[arg-type]
    bulkhead = Bulkhead(BulkheadConfig(adaptive=config))
    assert_type(bulkhead.limit, int)
    return bulkhead.metrics().limit
