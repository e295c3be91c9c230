"""
The public API as a user writes it, checked by mypy --strict.

Not a test module: `nox -s typecheck` type-checks it, so a change that
breaks the types users rely on fails there.
"""

from __future__ import annotations

import functools
import random

from datetime import timedelta

import anyio

from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    BulkheadMetrics,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitBreakerMetrics,
    CircuitState,
    Outcome,
    PipelineMetrics,
    RecoveryAction,
    ResiliencePipeline,
    RetryConfig,
    RetryManager,
    TemporaryError,
    classify_error,
)
from resilient_mcp.testing import run_virtual, set_testing


async def fetch(url: str, *, retries: int = 0) -> bytes:
    await anyio.lowlevel.checkpoint()
    return url.encode() * (retries + 1)


def on_change(
    breaker: CircuitBreaker, old: CircuitState, new: CircuitState
) -> None:
    print(breaker.name, old.name, new.name)


async def main() -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold=3,
            recovery_timeout=timedelta(seconds=30),
            is_failure=lambda exc: not isinstance(exc, KeyError),
        ),
        name="search",
        listeners=[on_change],
    )
    body: bytes = await breaker.call(fetch, "https://example.org")
    state: CircuitState = breaker.state
    breaker_metrics: CircuitBreakerMetrics = breaker.metrics()

    retry = RetryManager(
        RetryConfig(max_attempts=5, jitter="full"), rng=random.Random(1)
    )
    body = await retry.call(functools.partial(fetch, "u", retries=2))

    bulkhead = Bulkhead(BulkheadConfig(name="tools"))
    body = await bulkhead.call(fetch, "u")
    bulkhead_metrics: BulkheadMetrics = bulkhead.metrics()

    pipeline = ResiliencePipeline(
        bulkhead=bulkhead, retry=RetryConfig(), circuit_breaker=breaker
    )
    try:
        body = await pipeline.call(fetch, "u")
    except CircuitBreakerError as exc:
        wait: float | None = exc.retry_after
        print(wait)
    except TemporaryError as exc:
        action: RecoveryAction = classify_error(exc)
        print(action)
    metrics: PipelineMetrics = pipeline.metrics()
    successes: int = metrics.outcomes[Outcome.SUCCESS]
    print(body, state, breaker_metrics, bulkhead_metrics, successes)


set_testing(True)
run_virtual(main, backend="asyncio")
