"""
Our variants: each policy alone, and the full pipeline.

Each factory builds the policy the way a user would, from the public
configs, inside the running event loop, and returns a zero-argument
callable (a :func:`functools.partial` where possible, which is what a
caller holding the policy pays for).
"""

from __future__ import annotations

import contextlib
import functools

from typing import Any, Final

from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    LatencyHistogram,
    LatencyRecorder,
    ResiliencePipeline,
    RetryConfig,
    RetryManager,
)

from ._floors import TIMEOUT, noop
from ._harness import Arm, Factory, Variant


OPEN_FOR: Final = 3600.0  # seconds: the open circuit stays open throughout
VALUE: Final = 0.001234  # seconds: the latency the recording rows record
KEY: Final = "tools/call:echo"  # the recorder's operation key

BREAKER: Final = "CircuitBreaker.call (closed)"
BREAKER_TIMEOUT: Final = "CircuitBreaker.call (closed, request_timeout=30)"
BREAKER_OPEN: Final = "CircuitBreaker.call (open: fast fail)"
PIPELINE_OPEN: Final = "ResiliencePipeline.call (circuit open)"
RETRY: Final = "RetryManager.call (success on 1st attempt)"
BULKHEAD: Final = "Bulkhead.call (free slot, no timeout)"
BULKHEAD_TIMEOUT: Final = "Bulkhead.call (free slot, request_timeout=30)"
TIMEOUT_ONLY: Final = "ResiliencePipeline(timeout=60).call"
HISTOGRAM: Final = "LatencyHistogram.record"
RECORDER: Final = "LatencyRecorder.record (key + overall)"
PIPELINE: Final = "pipeline: bulkhead+retry+breaker+timeout"
PIPELINE_RECORDED: Final = "full pipeline (+ recorder=LatencyRecorder)"
PIPELINE_NO_TIMEOUT: Final = "full pipeline, no timeout anywhere"


def new_recorder() -> LatencyRecorder:
    return LatencyRecorder()


def _breaker(config: CircuitBreakerConfig) -> Factory:
    def make(_stack: object) -> Variant:
        breaker = CircuitBreaker(config, name="bench")
        return functools.partial(breaker.call, noop)

    return make


class _BoomError(Exception):
    """The failure that opens the circuit."""


async def _fail() -> None:
    raise _BoomError


def _open(policy: Any) -> Factory:
    async def make(_stack: object) -> Variant:
        breaker = CircuitBreaker(
            CircuitBreakerConfig(
                failure_threshold=1,
                recovery_timeout=OPEN_FOR,
                request_timeout=None,
            ),
            name="bench-open",
        )
        with contextlib.suppress(_BoomError):
            await breaker.call(_fail)
        call = policy(breaker)

        async def reject() -> None:
            try:
                await call(noop)
            except CircuitBreakerError:
                return
            raise AssertionError("the circuit should be open")

        return reject

    return make


def open_breaker_call(breaker: CircuitBreaker) -> Any:
    return breaker.call


def open_pipeline_call(breaker: CircuitBreaker) -> Any:
    return ResiliencePipeline(circuit_breaker=breaker, timeout=TIMEOUT).call


def _retry(_stack: object) -> Variant:
    retry = RetryManager(RetryConfig(max_attempts=3))
    return functools.partial(retry.call, noop)


def _bulkhead(timeout: float | None) -> Factory:
    def make(_stack: object) -> Variant:
        bulkhead = Bulkhead(
            BulkheadConfig(name="bench", request_timeout=timeout)
        )
        return functools.partial(bulkhead.call, noop)

    return make


def _timeout(_stack: object) -> Variant:
    pipeline = ResiliencePipeline(timeout=TIMEOUT)
    return functools.partial(pipeline.call, noop)


def _histogram(_stack: object) -> Variant:
    record = LatencyHistogram().record

    async def op() -> None:
        record(VALUE)

    return op


def _recorder(_stack: object) -> Variant:
    record = new_recorder().record

    async def op() -> None:
        record(KEY, VALUE)

    return op


def full_pipeline(
    *, timeout: bool = True, recorder: LatencyRecorder | None = None
) -> ResiliencePipeline:
    """Bulkhead, retry, breaker and timeout at their defaults; recording."""
    if timeout:
        return ResiliencePipeline(
            bulkhead=BulkheadConfig(name="bench"),
            retry=RetryConfig(max_attempts=3),
            circuit_breaker=CircuitBreakerConfig(),
            timeout=TIMEOUT,
            name="bench",
            recorder=recorder,
            record_key=KEY,
        )
    return ResiliencePipeline(
        bulkhead=BulkheadConfig(name="bench", request_timeout=None),
        retry=RetryConfig(max_attempts=3),
        circuit_breaker=CircuitBreakerConfig(request_timeout=None),
        timeout=None,
        name="bench",
        recorder=recorder,
        record_key=KEY,
    )


def _pipeline(*, recording: bool, timeout: bool = True) -> Factory:
    def make(_stack: object) -> Variant:
        recorder = new_recorder() if recording else None
        pipeline = full_pipeline(timeout=timeout, recorder=recorder)
        return functools.partial(pipeline.call, noop)

    return make


def recorded(op: Variant = noop) -> Variant:
    """The full pipeline, recording into a fresh LatencyRecorder, on *op*."""
    pipeline = full_pipeline(recorder=new_recorder())
    return functools.partial(pipeline.call, op)


def breaker_arms(baseline: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=BREAKER,
            factory=_breaker(CircuitBreakerConfig(request_timeout=None)),
            baseline=baseline,
            note="request_timeout=None",
        ),
    )


def breaker_timeout_arm(baseline: str) -> Arm:
    return Arm(
        label=BREAKER_TIMEOUT,
        factory=_breaker(CircuitBreakerConfig()),
        baseline=baseline,
        note="the default config: one cancel scope",
    )


def open_arms(baseline: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=BREAKER_OPEN,
            factory=_open(open_breaker_call),
            baseline=baseline,
            note="raise and catch CircuitBreakerError",
        ),
        Arm(
            label=PIPELINE_OPEN,
            factory=_open(open_pipeline_call),
            baseline=baseline,
        ),
    )


def retry_arms(baseline: str) -> tuple[Arm, ...]:
    return (Arm(label=RETRY, factory=_retry, baseline=baseline),)


def bulkhead_arms(limiter: str, limiter_scope: str) -> tuple[Arm, ...]:
    return (
        Arm(label=BULKHEAD, factory=_bulkhead(None), baseline=limiter),
        Arm(
            label=BULKHEAD_TIMEOUT,
            factory=_bulkhead(30.0),
            baseline=limiter_scope,
        ),
    )


def timeout_arms() -> tuple[Arm, ...]:
    return (Arm(label=TIMEOUT_ONLY, factory=_timeout),)


def recording_arms() -> tuple[Arm, ...]:
    return (
        Arm(label=HISTOGRAM, factory=_histogram),
        Arm(label=RECORDER, factory=_recorder),
    )


def pipeline_arms(floor: str, floor_no_timeout: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=PIPELINE,
            factory=_pipeline(recording=False),
            baseline=floor,
            note="no recorder",
        ),
        Arm(
            label=PIPELINE_RECORDED,
            factory=_pipeline(recording=True),
            baseline=floor,
        ),
        Arm(
            label=PIPELINE_NO_TIMEOUT,
            factory=_pipeline(recording=True, timeout=False),
            baseline=floor_no_timeout,
        ),
    )


async def open_breaker() -> Variant:
    """A variant that is rejected by an open breaker of its own."""
    return await _open(open_breaker_call)(None)
