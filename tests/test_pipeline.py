"""The composition: order of the policies, accounting, cancellation."""

from __future__ import annotations

import contextlib
import functools
import gc
import random

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, Script, boom, sleep_then
from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    BulkheadError,
    CallTimeout,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    ConfigurationError,
    LatencyRecorder,
    Outcome,
    ResilienceError,
    ResiliencePipeline,
    RetryConfig,
    TemporaryError,
)
from resilient_mcp.testing import wait_all_tasks_blocked


def full_pipeline(**overrides):
    """A pipeline with every policy and exact (jitter-free) retries."""
    options = {
        "bulkhead": BulkheadConfig(
            name="svc", max_concurrent_requests=2, queue_size=1
        ),
        "retry": RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
        "circuit_breaker": CircuitBreakerConfig(
            failure_threshold=3, recovery_timeout=30
        ),
        "timeout": 5.0,
    }
    options.update(overrides)
    return ResiliencePipeline(**options)


def test_success_passes_through(run):
    """A successful call returns its value and is counted once."""

    async def scenario():
        pipeline = full_pipeline()

        assert 42 == await pipeline.call(Script(42))

        metrics = pipeline.metrics()
        assert 1 == metrics.total_requests
        assert 1 == metrics.successful_requests
        assert 1 == metrics.outcomes[Outcome.SUCCESS]

    run(scenario)


def test_retries_stop_when_the_breaker_opens(run):
    """Every attempt passes the breaker; an open circuit ends the retries."""

    async def scenario():
        pipeline = full_pipeline(
            retry=RetryConfig(max_attempts=10, initial_delay=1, jitter=False)
        )
        op = Script(TimeoutError("upstream timeout"))

        with pytest.raises(CircuitBreakerError):
            await pipeline.call(op)

        # Three failed attempts open the circuit; the wait for the fourth
        # never begins (the circuit would reject it), and nothing retries
        # an open circuit's error.
        assert 3 == op.calls
        assert [0.0, 1.0, 3.0] == op.times
        assert 3.0 == anyio.current_time()
        metrics = pipeline.metrics()
        assert 1 == metrics.outcomes[Outcome.CIRCUIT_OPEN]
        assert 1 == metrics.circuit_breaker_trips
        assert CircuitState.OPEN == metrics.circuit_breaker.state

    run(scenario)


def test_12_no_wait_begins_for_an_attempt_the_open_circuit_rejects(run):
    """The call that opens the circuit fails fast, its failure the cause."""

    async def scenario():
        pipeline = ResiliencePipeline(
            circuit_breaker=CircuitBreakerConfig(failure_threshold=2),
            retry=RetryConfig(max_attempts=5, initial_delay=0.5, jitter=False),
        )
        last = TimeoutError("upstream timeout, again")
        op = Script(TimeoutError("upstream timeout"), last)

        with pytest.raises(CircuitBreakerError) as info:
            await pipeline.call(op)

        assert 0.5 == anyio.current_time()  # it opened at 0.5 s: no wait
        assert last is info.value.__cause__
        assert 60.0 == info.value.retry_after
        assert [0.0, 0.5] == op.times
        metrics = pipeline.metrics()
        assert 1 == metrics.outcomes[Outcome.CIRCUIT_OPEN]
        assert 1 == metrics.circuit_breaker.rejected_requests
        assert (1, 1, 1) == (
            metrics.retry.failed_calls,
            metrics.retry.total_retries,
            metrics.retry.non_retryable_failures,
        )
        assert (
            "resilient_mcp: gave up after 2 attempts (the next attempt "
            "would be rejected when the wait ended)"
        ) in info.value.__notes__

    run(scenario)


def test_12_a_wait_past_the_open_period_ends_in_a_probe(run):
    """A wait that ends once the circuit may probe still begins."""

    async def scenario():
        pipeline = ResiliencePipeline(
            circuit_breaker=CircuitBreakerConfig(
                failure_threshold=1, recovery_timeout=1, success_threshold=1
            ),
            retry=RetryConfig(max_attempts=3, initial_delay=2, jitter=False),
        )
        op = Script(TimeoutError("upstream timeout"), "back")

        assert "back" == await pipeline.call(op)

        assert [0.0, 2.0] == op.times  # the probe, after the open period
        metrics = pipeline.metrics()
        assert 0 == metrics.circuit_breaker.rejected_requests
        assert CircuitState.CLOSED == metrics.circuit_breaker.state

    run(scenario)


def test_12_a_wait_ending_inside_the_open_period_never_begins(run):
    """Each wait is judged on when it would end, against the open time."""

    async def scenario():
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=1, recovery_timeout=3),
        )
        pipeline = ResiliencePipeline(
            circuit_breaker=breaker,
            retry=RetryConfig(
                max_attempts=3, initial_delay=2.999, jitter=False
            ),
        )

        with pytest.raises(CircuitBreakerError):
            await pipeline.call(Script(TimeoutError("upstream timeout")))
        breaker.force_open()  # by hand: no wait ends before a reset
        with pytest.raises(CircuitBreakerError) as info:
            await pipeline.call(Script(TemporaryError("busy"), "ok"))

        assert 0.0 == anyio.current_time()
        assert info.value.retry_after is None
        assert 2 == breaker.metrics().rejected_requests

    run(scenario)


def test_timeout_is_per_attempt_and_retried(run):
    """A timed-out attempt counts as a breaker failure and is retried."""

    async def scenario():
        pipeline = full_pipeline(timeout=2.0)
        durations = iter([10, 10, 1])

        async def sometimes_slow():
            return await sleep_then(next(durations))

        assert "done" == await pipeline.call(sometimes_slow)

        # 2 s timeout, 1 s wait, 2 s timeout, 2 s wait, 1 s success.
        assert 8.0 == anyio.current_time()
        breaker = pipeline.metrics().circuit_breaker
        assert 2 == breaker.total_failures
        assert 1 == breaker.total_successes
        assert 1 == pipeline.metrics().retried_requests

    run(scenario)


def test_exhausted_timeouts_are_counted_as_timeouts(run):
    """When every attempt times out, the outcome is TIMEOUT."""

    async def scenario():
        pipeline = full_pipeline(timeout=1.0)

        with pytest.raises(CallTimeout) as info:
            await pipeline.call(sleep_then, 10)

        assert "gave up after 3 attempts" in info.value.__notes__[0]
        assert 1 == pipeline.metrics().outcomes[Outcome.TIMEOUT]

    run(scenario)


def test_every_request_is_counted_in_exactly_one_outcome(run):
    """Successes, failures by kind and cancellations add up to the total."""

    async def scenario():
        pipeline = full_pipeline(
            bulkhead=BulkheadConfig(
                max_concurrent_requests=1, queue_size=0, request_timeout=None
            ),
            retry=RetryConfig(max_attempts=2, initial_delay=1, jitter=False),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=10),
        )
        await pipeline.call(Script("fine"))  # success
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom()))  # error
        with pytest.raises(ConnectionError):
            await pipeline.call(Script(ConnectionError()))  # exhausted
        with anyio.move_on_after(0.5):
            await pipeline.call(sleep_then, 3)  # cancelled
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.call, sleep_then, 1)
            await wait_all_tasks_blocked()
            with pytest.raises(BulkheadError):
                await pipeline.call(Script("x"))  # bulkhead full

        metrics = pipeline.metrics()
        expected = {
            Outcome.SUCCESS: 2,
            Outcome.ERROR: 1,
            Outcome.RETRIES_EXHAUSTED: 1,
            Outcome.CANCELLED: 1,
            Outcome.BULKHEAD_FULL: 1,
            Outcome.CIRCUIT_OPEN: 0,
            Outcome.TIMEOUT: 0,
            Outcome.RETRY_BUDGET_EXHAUSTED: 0,
            Outcome.RATE_LIMITED: 0,
            Outcome.THROTTLED: 0,
        }
        assert expected == dict(metrics.outcomes)
        assert 6 == metrics.total_requests
        assert 3 == metrics.failed_requests
        assert metrics.total_requests == (
            metrics.successful_requests
            + metrics.failed_requests
            + metrics.cancelled_requests
        )
        assert 1 == metrics.bulkhead_rejections

    run(scenario)


async def test_bulkhead_slot_is_held_across_retries(autojump_clock):
    """A call keeps its one slot through all its attempts and waits."""
    pipeline = full_pipeline(
        bulkhead=BulkheadConfig(
            max_concurrent_requests=1, queue_size=0, request_timeout=None
        )
    )
    op = Script(TimeoutError(), "ok")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipeline.call, op)
        await trio.sleep(0.5)  # the first attempt failed; it is waiting
        assert 1 == pipeline.metrics().bulkhead.active_requests
        with pytest.raises(BulkheadError):
            await pipeline.call(Script("other"))

    assert 2 == op.calls


async def test_cancellation_propagates_and_leaks_nothing(autojump_clock):
    """A cancelled caller frees its slot and counts no failure anywhere."""
    pipeline = full_pipeline()

    with trio.move_on_after(2):
        await pipeline.call(sleep_then, 3)

    metrics = pipeline.metrics()
    assert 1 == metrics.cancelled_requests
    assert 0 == metrics.failed_requests
    assert 0 == metrics.bulkhead.active_requests
    assert 0 == metrics.circuit_breaker.total_failures
    assert 1 == metrics.retry.cancelled_calls


async def test_shared_breaker_between_pipelines(autojump_clock):
    """Pipelines given the same breaker instance share its state."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    first = ResiliencePipeline(circuit_breaker=breaker)
    second = ResiliencePipeline(circuit_breaker=breaker)

    with pytest.raises(Boom):
        await first.call(Script(Boom()))
    with pytest.raises(CircuitBreakerError):
        await second.call(Script("x"))


async def test_default_timeout_is_the_breakers(autojump_clock):
    """Without an explicit timeout the breaker's request_timeout applies."""
    pipeline = ResiliencePipeline(
        circuit_breaker=CircuitBreakerConfig(request_timeout=4)
    )

    with pytest.raises(CallTimeout):
        await pipeline.call(sleep_then, 100)

    assert 4.0 == trio.current_time()
    assert 4.0 == pipeline.timeout


async def test_no_policy_at_all_is_a_plain_call(autojump_clock):
    """An empty pipeline only counts."""
    pipeline = ResiliencePipeline()

    assert "done" == await pipeline.call(sleep_then, 3600)
    assert pipeline.timeout is None


async def test_timeout_without_breaker(autojump_clock):
    """A pipeline may have a timeout and nothing else."""
    pipeline = ResiliencePipeline(timeout=1)

    with pytest.raises(CallTimeout, match="pipeline 'default'"):
        await pipeline.call(sleep_then, 2)


def test_bad_timeout_is_rejected():
    """An invalid pipeline timeout fails at construction."""
    with pytest.raises(ConfigurationError, match=r"timeout must be"):
        ResiliencePipeline(timeout=-1)


async def test_policy_instances_are_used_as_given(autojump_clock):
    """Instances passed in are the ones the pipeline uses."""
    bulkhead = Bulkhead(BulkheadConfig(name="mine"))
    pipeline = ResiliencePipeline(bulkhead=bulkhead)

    await pipeline.call(functools.partial(sleep_then, 0))

    assert bulkhead is pipeline.bulkhead
    assert 1 == bulkhead.metrics().completed_requests


def test_bulkhead_deadline_inside_the_first_attempt(run):
    """The bulkhead's limit ends a long first attempt as its own timeout."""

    async def scenario():
        pipeline = full_pipeline(
            bulkhead=BulkheadConfig(name="tools", request_timeout=5),
            timeout=10.0,
        )

        with pytest.raises(CallTimeout, match="bulkhead 'tools'") as info:
            await pipeline.call(sleep_then, 100)

        assert 5.0 == info.value.timeout
        assert 5.0 == anyio.current_time()
        metrics = pipeline.metrics()
        assert 1 == metrics.outcomes[Outcome.TIMEOUT]
        assert 1 == metrics.bulkhead.timed_out_requests
        # The breaker saw a cancellation, not a failure of the service.
        assert 0 == metrics.circuit_breaker.total_failures
        assert 1 == metrics.circuit_breaker.cancelled_requests

    run(scenario)


def test_attempt_timeout_before_bulkhead_deadline_is_retried(run):
    """An attempt timing out before the bulkhead's limit is retried."""

    async def scenario():
        pipeline = full_pipeline(
            bulkhead=BulkheadConfig(name="tools", request_timeout=20),
            timeout=3.0,
        )
        durations = iter([10, 1])

        async def slow_then_fast():
            return await sleep_then(next(durations))

        assert "done" == await pipeline.call(slow_then_fast)

        # 3 s timeout, 1 s wait, 1 s success.
        assert 5.0 == anyio.current_time()
        assert 1 == pipeline.metrics().circuit_breaker.total_failures

    run(scenario)


def test_bulkhead_deadline_bounds_the_retries(run):
    """Retries stop when their wait would outlive the bulkhead's limit."""

    async def scenario():
        pipeline = full_pipeline(
            bulkhead=BulkheadConfig(name="tools", request_timeout=6),
            retry=RetryConfig(max_attempts=10, initial_delay=2, jitter=False),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=10),
            timeout=None,
        )
        op = Script(ConnectionError("reset"))

        with pytest.raises(ConnectionError) as info:
            await pipeline.call(op)

        # Attempts at 0 and 2; the next wait (4 s) would end at 6.
        assert [0.0, 2.0] == op.times
        assert "caller's deadline" in info.value.__notes__[0]
        assert 1 == pipeline.metrics().outcomes[Outcome.RETRIES_EXHAUSTED]

    run(scenario)


def test_bulkhead_deadline_during_a_later_attempt(run):
    """A retried attempt still ends at the bulkhead's limit."""

    async def scenario():
        pipeline = full_pipeline(
            bulkhead=BulkheadConfig(name="tools", request_timeout=6),
            timeout=None,
            circuit_breaker=CircuitBreakerConfig(
                failure_threshold=10, request_timeout=None
            ),
        )
        durations = iter([0, 100])

        async def fail_then_hang():
            seconds = next(durations)
            await anyio.sleep(seconds)
            if seconds == 0:
                raise ConnectionError("reset")

        with pytest.raises(CallTimeout, match="bulkhead 'tools'"):
            await pipeline.call(fail_then_hang)

        assert 6.0 == anyio.current_time()
        assert 1 == pipeline.metrics().bulkhead.timed_out_requests

    run(scenario)


def test_repr_names_the_policies():
    """The repr shows each policy and the timeout."""
    pipeline = ResiliencePipeline(retry=RetryConfig(), name="search")

    text = repr(pipeline)

    assert text.startswith("<ResiliencePipeline 'search' bulkhead=None")
    assert "<RetryManager 'search' max_attempts=3, 0 retries so far>" in text
    assert "timeout=None>" in text


def test_retry_if_overrides_what_this_pipeline_retries(run):
    """retry_if decides retries per pipeline, even against TemporaryError."""

    async def scenario():
        class NeverSent(TemporaryError):
            pass

        shared = full_pipeline().retry
        unsafe = ResiliencePipeline(
            retry=shared, retry_if=lambda exc: isinstance(exc, NeverSent)
        )
        lost = Script(TemporaryError("lost mid-call"), "ok")
        unsent = Script(NeverSent("no session"), "ok")

        with pytest.raises(TemporaryError):
            await unsafe.call(lost)
        assert "ok" == await unsafe.call(unsent)

        assert 1 == lost.calls
        assert 2 == unsent.calls
        assert 1 == unsafe.metrics().outcomes[Outcome.ERROR]

    run(scenario)


def test_latency_is_recorded_for_every_call(run):
    """With a recorder, each call's duration lands under the pipeline key."""

    async def scenario():
        recorder = LatencyRecorder()
        pipeline = full_pipeline(recorder=recorder, name="search")
        for seconds in (1, 2, 3):
            await pipeline.call(sleep_then, seconds)
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom()))

        latency = pipeline.metrics().latency
        assert 4 == latency.count
        assert 3.0 == pytest.approx(latency.max, rel=1e-3)
        assert 1.5 == pytest.approx(latency.mean, rel=1e-3)
        assert ["search"] == recorder.keys()
        assert 4 == recorder.snapshot().count

    run(scenario)


async def test_12_a_rejection_cancelled_at_its_checkpoint_is_a_cancellation(
    autojump_clock,
):
    """A cancelled caller is counted cancelled, never rejected, anywhere."""
    bulkhead = Bulkhead(
        BulkheadConfig(max_concurrent_requests=1, queue_size=0)
    )
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    full = ResiliencePipeline(bulkhead=bulkhead, name="full")
    open_ = ResiliencePipeline(circuit_breaker=breaker, name="open")
    with pytest.raises(Boom):
        await open_.call(Script(Boom("down")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(full.call, functools.partial(sleep_then, 1))
        await wait_all_tasks_blocked()
        for pipeline in (full, open_):
            with trio.CancelScope() as scope:
                scope.cancel()
                await pipeline.call(functools.partial(sleep_then, 1))
            assert scope.cancelled_caught

    assert (0, 1) == (
        full.metrics().bulkhead_rejections,
        full.metrics().cancelled_requests,
    )
    assert (0, 1) == (
        bulkhead.metrics().rejected_requests,
        bulkhead.metrics().abandoned_requests,
    )
    assert 1 == open_.metrics().cancelled_requests
    assert (0, 1) == (
        breaker.metrics().rejected_requests,
        breaker.metrics().cancelled_requests,
    )


async def test_12_one_outcome_per_call_under_random_cancellation(
    autojump_clock,
):
    """Pipeline and policies agree on rejections under random cancellation."""
    rng = random.Random(12)
    calls = 3000
    bulkhead = Bulkhead(
        BulkheadConfig(
            name="b",
            max_concurrent_requests=3,
            queue_size=2,
            request_timeout=None,
        )
    )
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold=3, recovery_timeout=0.05, success_threshold=1
        )
    )
    pipeline = ResiliencePipeline(
        bulkhead=bulkhead,
        circuit_breaker=breaker,
        retry=RetryConfig(max_attempts=3, initial_delay=0.01, jitter=False),
        timeout=None,
    )
    scopes: list[trio.CancelScope] = []

    async def operation():
        await trio.sleep(rng.choice((0.0, 0.01, 0.03)))
        if rng.random() < 0.4:
            raise TimeoutError("upstream timeout")
        return "ok"

    async def caller():
        with trio.CancelScope() as scope:
            scopes.append(scope)
            if rng.random() < 0.05:
                scope.cancel()  # arrives cancelled
            with contextlib.suppress(ResilienceError, TimeoutError):
                await pipeline.call(operation)

    async def canceller():
        for _ in range(calls):  # bounded
            await trio.lowlevel.checkpoint()
            if scopes:
                rng.choice(scopes[-8:]).cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(canceller)
        for i in range(calls):
            nursery.start_soon(caller)
            if i % 7 == 0:
                await trio.sleep(0.004)

    metrics = pipeline.metrics()
    assert calls == metrics.total_requests
    assert metrics.cancelled_requests > 0
    assert metrics.bulkhead_rejections > 0
    assert metrics.outcomes[Outcome.CIRCUIT_OPEN] > 0
    assert metrics.bulkhead_rejections == metrics.bulkhead.rejected_requests
    assert (
        metrics.outcomes[Outcome.CIRCUIT_OPEN]
        == metrics.circuit_breaker.rejected_requests
    )
    assert (0, 0) == (
        metrics.bulkhead.active_requests,
        metrics.bulkhead.queued_requests,
    )


FAILING_SHAPES = {
    # Each operation raises a new error per call (a cycle through one
    # error raised again and again would stay reachable, and go unseen).
    # No attempt policy, no limit: the plan awaits the operation directly.
    "direct": ({}, boom),
    "bulkhead": ({"bulkhead": BulkheadConfig(name="b")}, boom),
    "retries run out": (
        {"retry": RetryConfig(max_attempts=3, initial_delay=1, jitter=False)},
        boom,
    ),
    "attempt timeout, retried": (
        {
            "retry": RetryConfig(max_attempts=2, initial_delay=1),
            "circuit_breaker": CircuitBreakerConfig(failure_threshold=99),
            "timeout": 1.0,
        },
        functools.partial(sleep_then, 9),
    ),
    # The bulkhead's deadline passes inside the attempt: DeadlineExpired,
    # turned into the bulkhead's CallTimeout.
    "call deadline": (
        {"bulkhead": BulkheadConfig(name="b", request_timeout=1.0)},
        functools.partial(sleep_then, 9),
    ),
}


@pytest.mark.parametrize("shape", sorted(FAILING_SHAPES))
def test_failed_calls_leave_no_garbage_cycles(run, shape):
    """A failed call leaves nothing for the cycle collector, on every path."""
    policies, operation = FAILING_SHAPES[shape]

    async def scenario():
        pipeline = ResiliencePipeline(**policies)

        async def fail_once():
            with contextlib.suppress(Boom, CallTimeout):
                await pipeline.call(operation)

        await fail_once()  # anything made once, on first use
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await fail_once()
            unreachable = gc.collect()
        finally:
            gc.enable()

        assert 21 == pipeline.metrics().failed_requests
        assert 0 == unreachable

    run(scenario)
