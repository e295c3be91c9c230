"""
Operations that enforce the pipeline's deadline in a scope of their own.

The MCP client's calls enter a cancel scope anyway (in process, so that
the session can end them), so the pipeline hands them its deadline instead
of entering a second scope around them.  Whatever the path through the
pipeline, a call must end exactly as it would with the pipeline's own
scope: same result or error, same time, same counts.
"""

from __future__ import annotations

import math

import anyio
import pytest

from resilient_mcp import (
    BulkheadConfig,
    CallTimeout,
    CircuitBreakerConfig,
    Outcome,
    ResiliencePipeline,
    RetryConfig,
)
from resilient_mcp._timeouts import DeadlineAware, DeadlinePassed


def _pipeline(*, timeout=2.0, bulkhead_timeout=None):
    return ResiliencePipeline(
        bulkhead=BulkheadConfig(
            name="svc",
            max_concurrent_requests=2,
            request_timeout=bulkhead_timeout,
        ),
        retry=RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
        timeout=timeout,
    )


def _plain(durations):
    durations = iter(durations)

    async def op():
        await anyio.sleep(next(durations))
        return "done"

    return op


def _aware(durations, seen):
    durations = iter(durations)

    async def run(deadline):
        seen.append(deadline - anyio.current_time())
        with anyio.CancelScope(deadline=deadline):
            await anyio.sleep(next(durations))
            return "done"
        raise DeadlinePassed

    return DeadlineAware(run)


async def _outcome(pipeline, op):
    try:
        result = await pipeline.call(op)
    except CallTimeout as exc:
        result = f"timeout {exc.where}"
    metrics = pipeline.metrics()
    breaker = metrics.circuit_breaker
    return (
        result,
        anyio.current_time(),
        {k: v for k, v in metrics.outcomes.items() if v},
        breaker.total_failures,
        breaker.total_successes,
        metrics.retried_requests,
    )


@pytest.mark.parametrize(
    ("durations", "bulkhead_timeout"),
    [
        ([0.5], None),  # the fast path, with a deadline
        ([10, 0.5], None),  # the first attempt times out; retried
        ([10, 10, 10], None),  # every attempt times out
        ([10], 1.0),  # the bulkhead's deadline passes in the first attempt
        ([10, 10, 10], 4.5),  # ... in a later attempt
        ([0.5], 1.0),  # the bulkhead's deadline, met
    ],
)
def test_a_deadline_aware_call_ends_as_a_scoped_one(
    run, durations, bulkhead_timeout
):
    """Same result, time and counts as with the pipeline's own scope."""
    seen: list[float] = []

    async def scenario():
        scoped = await _outcome(
            _pipeline(bulkhead_timeout=bulkhead_timeout), _plain(durations)
        )
        start = anyio.current_time()
        aware = await _outcome(
            _pipeline(bulkhead_timeout=bulkhead_timeout),
            _aware(durations, seen),
        )
        # The same, shifted by the first scenario's virtual time.
        return scoped, (aware[0], aware[1] - start, *aware[2:])

    scoped, aware = run(scenario)

    assert scoped == aware
    # Every attempt got a finite deadline: none ran without one.
    assert seen
    assert all(0 < left < math.inf for left in seen)


def test_the_first_attempt_gets_the_earlier_deadline(run):
    """The attempt's timeout, or the bulkhead's deadline if sooner."""

    async def scenario():
        seen: list[float] = []
        await _pipeline(timeout=2.0).call(_aware([0], seen))
        await _pipeline(timeout=2.0, bulkhead_timeout=1.5).call(
            _aware([0], seen)
        )
        return seen

    assert [2.0, 1.5] == run(scenario)


def test_called_plainly_it_runs_without_a_deadline(run):
    """Outside a pipeline it is an ordinary async callable."""

    async def scenario():
        seen: list[float] = []
        result = await _aware([1.0], seen)()
        return result, seen

    assert ("done", [math.inf]) == run(scenario)


def test_a_timeout_is_counted_as_one(run):
    """The pipeline's outcome for a deadline-aware timeout is TIMEOUT."""

    async def scenario():
        pipeline = _pipeline(timeout=1.0)
        with pytest.raises(CallTimeout):
            await pipeline.call(_aware([5, 5, 5], []))
        return pipeline.metrics().outcomes[Outcome.TIMEOUT]

    assert 1 == run(scenario)
