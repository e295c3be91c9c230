"""
The README's quickstart: one pipeline around a flaky async call.

Run it with ``python examples/quickstart.py`` (trio) or
``python examples/quickstart.py asyncio``.
"""

from __future__ import annotations

import random
import sys

import anyio

from resilient_mcp import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ResilienceError,
    ResiliencePipeline,
    RetryConfig,
)


rng = random.Random(7)


async def flaky_lookup(key: str) -> str:
    """Fail with a connection error 30 % of the time."""
    await anyio.sleep(0.01)
    if rng.random() < 0.3:
        raise ConnectionError("connection reset by peer")
    return key.upper()


async def lookup(pipeline: ResiliencePipeline, key: str) -> None:
    """One call through the pipeline; the caller decides what a failure means."""
    try:
        print(key, "->", await pipeline.call(flaky_lookup, key))
    except ResilienceError as exc:  # open circuit, full bulkhead, timeout
        print(key, "-> degraded:", exc)
    except ConnectionError as exc:  # the last error, once retries ran out
        print(key, "-> failed:", exc, exc.__notes__)


async def main() -> None:
    """Make 20 calls through the pipeline and print what happened."""
    pipeline = ResiliencePipeline(
        bulkhead=BulkheadConfig(name="lookups", max_concurrent_requests=5),
        retry=RetryConfig(max_attempts=3, initial_delay=0.05),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=8),
        timeout=2.0,
    )
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lookup, pipeline, f"key-{i}")
    metrics = pipeline.metrics()
    print(
        f"{metrics.successful_requests}/{metrics.total_requests} succeeded, "
        f"{metrics.retried_requests} needed a retry, "
        f"breaker {metrics.circuit_breaker.state.name}"
    )


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "trio"
    anyio.run(main, backend=backend)
