"""
The metric catalogue: every series we export, independent of the exporter.

Each :class:`Spec` names one metric family once, with its Prometheus name
and its OpenTelemetry name, so that the two exporters cannot drift apart
and ``docs/observability.md`` has one list to follow.
:func:`build_families` turns a :class:`~._watch.Reading` into samples; it
runs wherever the exporter runs, off the event loop if need be, because
it only touches the reading's frozen snapshots and private histogram
copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._breaker import CircuitState
from ._distribution import Distribution
from ._families_overload import OVERLOAD_SPECS, add_overload_samples
from ._spec import Family, Kind, Sample, Spec


if TYPE_CHECKING:
    from .._breaker import CircuitBreakerMetrics
    from .._bulkhead import BulkheadMetrics
    from .._outcomes import PipelineMetrics
    from .._retry import RetryMetrics
    from ._watch import Reading


_B: Final = ("breaker",)
_H: Final = ("bulkhead",)
_R: Final = ("retry",)
_O: Final = ("operation",)

BREAKER_STATE: Final = Spec(
    name="resilient_mcp_circuit_breaker_state",
    kind=Kind.GAUGE,
    documentation=(
        "1 for the circuit breaker's current state, 0 for the other states."
    ),
    labels=(*_B, "state"),
    otel_name="resilient_mcp.circuit_breaker.state",
    otel_unit="1",
    additive=True,
)
BREAKER_CALLS: Final = Spec(
    name="resilient_mcp_circuit_breaker_calls",
    kind=Kind.COUNTER,
    documentation=(
        "Calls that went through the circuit breaker, by result: success, "
        "failure, rejected (circuit open), ignored (an error that does not "
        "count), cancelled."
    ),
    labels=(*_B, "result"),
    otel_name="resilient_mcp.circuit_breaker.calls",
    otel_unit="{call}",
)
BREAKER_SLOW_CALLS: Final = Spec(
    name="resilient_mcp_circuit_breaker_slow_calls",
    kind=Kind.COUNTER,
    documentation=(
        "Calls that returned but slower than slow_call_duration "
        "(also counted as failures)."
    ),
    labels=_B,
    otel_name="resilient_mcp.circuit_breaker.slow_calls",
    otel_unit="{call}",
)
BREAKER_TRIPS: Final = Spec(
    name="resilient_mcp_circuit_breaker_trips",
    kind=Kind.COUNTER,
    documentation="Times the circuit opened (forced opens included).",
    labels=_B,
    otel_name="resilient_mcp.circuit_breaker.trips",
    otel_unit="{trip}",
)
BREAKER_CURRENT_FAILURES: Final = Spec(
    name="resilient_mcp_circuit_breaker_current_failures",
    kind=Kind.GAUGE,
    documentation=(
        "Failures counted in the current window (or half-open period)."
    ),
    labels=_B,
    otel_name="resilient_mcp.circuit_breaker.current_failures",
    otel_unit="{call}",
    additive=True,
)
BREAKER_FAILURE_RATE: Final = Spec(
    name="resilient_mcp_circuit_breaker_failure_rate",
    kind=Kind.GAUGE,
    documentation=(
        "Failure ratio (0 to 1) over the current window; only for breakers "
        "with failure_rate_threshold."
    ),
    labels=_B,
    otel_name="resilient_mcp.circuit_breaker.failure_rate",
    otel_unit="1",
)
BREAKER_STORE_ERRORS: Final = Spec(
    name="resilient_mcp_circuit_breaker_store_errors",
    kind=Kind.COUNTER,
    documentation=(
        "Requests of the circuit breaker to its shared state store that "
        "failed or timed out (the breaker then decided alone)."
    ),
    labels=_B,
    otel_name="resilient_mcp.circuit_breaker.store_errors",
    otel_unit="{request}",
)
BULKHEAD_ACTIVE: Final = Spec(
    name="resilient_mcp_bulkhead_active_requests",
    kind=Kind.GAUGE,
    documentation="Calls running in the bulkhead now.",
    labels=_H,
    otel_name="resilient_mcp.bulkhead.active_requests",
    otel_unit="{request}",
    additive=True,
)
BULKHEAD_MAX_CONCURRENT: Final = Spec(
    name="resilient_mcp_bulkhead_max_concurrent_requests",
    kind=Kind.GAUGE,
    documentation="Calls the bulkhead lets run at once (its slots).",
    labels=_H,
    otel_name="resilient_mcp.bulkhead.max_concurrent_requests",
    otel_unit="{request}",
    additive=True,
)
BULKHEAD_LIMIT: Final = Spec(
    name="resilient_mcp_bulkhead_limit",
    kind=Kind.GAUGE,
    documentation=(
        "Calls the bulkhead lets run at once now: max_concurrent_requests, "
        "or an adaptive bulkhead's current limit."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.limit",
    otel_unit="{request}",
    additive=True,
)
BULKHEAD_QUEUE_DEPTH: Final = Spec(
    name="resilient_mcp_bulkhead_queue_depth",
    kind=Kind.GAUGE,
    documentation="Calls waiting for a bulkhead slot now.",
    labels=_H,
    otel_name="resilient_mcp.bulkhead.queue_depth",
    otel_unit="{request}",
    additive=True,
)
BULKHEAD_QUEUE_SIZE: Final = Spec(
    name="resilient_mcp_bulkhead_queue_size",
    kind=Kind.GAUGE,
    documentation=(
        "Calls that may wait for a slot; a call finding the queue this deep "
        "is rejected."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.queue_size",
    otel_unit="{request}",
    additive=True,
)
BULKHEAD_REJECTED: Final = Spec(
    name="resilient_mcp_bulkhead_rejected",
    kind=Kind.COUNTER,
    documentation="Calls rejected at once because no slot and no place in "
    "the queue was free.",
    labels=_H,
    otel_name="resilient_mcp.bulkhead.rejected",
    otel_unit="{request}",
)
BULKHEAD_COMPLETED: Final = Spec(
    name="resilient_mcp_bulkhead_completed",
    kind=Kind.COUNTER,
    documentation=(
        "Calls that ran in a slot and ended (returned, raised, timed out or "
        "were cancelled while running)."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.completed",
    otel_unit="{request}",
)
BULKHEAD_ABANDONED: Final = Spec(
    name="resilient_mcp_bulkhead_abandoned",
    kind=Kind.COUNTER,
    documentation=(
        "Calls that left the queue without running (timed out or "
        "cancelled while waiting)."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.abandoned",
    otel_unit="{request}",
)
BULKHEAD_TIMEOUTS: Final = Spec(
    name="resilient_mcp_bulkhead_timeouts",
    kind=Kind.COUNTER,
    documentation=(
        "Calls ended by the bulkhead's request_timeout, while waiting or "
        "running."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.timeouts",
    otel_unit="{request}",
)
BULKHEAD_QUEUE_WAIT: Final = Spec(
    name="resilient_mcp_bulkhead_queue_wait_seconds",
    kind=Kind.HISTOGRAM,
    documentation=(
        "Seconds calls waited for a bulkhead slot (0 for a free slot), "
        "since the bulkhead was created."
    ),
    labels=_H,
    otel_name="resilient_mcp.bulkhead.queue_wait",
    otel_unit="s",
)
RETRY_CALLS: Final = Spec(
    name="resilient_mcp_retry_calls",
    kind=Kind.COUNTER,
    documentation=(
        "Calls through the retry manager, by result: success (on any "
        "attempt), failure (after the last attempt), cancelled."
    ),
    labels=(*_R, "result"),
    otel_name="resilient_mcp.retry.calls",
    otel_unit="{call}",
)
RETRY_ATTEMPTS: Final = Spec(
    name="resilient_mcp_retry_attempts",
    kind=Kind.COUNTER,
    documentation="Attempts made, first attempts included.",
    labels=_R,
    otel_name="resilient_mcp.retry.attempts",
    otel_unit="{attempt}",
)
RETRY_RETRIES: Final = Spec(
    name="resilient_mcp_retry_retries",
    kind=Kind.COUNTER,
    documentation="Attempts after the first one.",
    labels=_R,
    otel_name="resilient_mcp.retry.retries",
    otel_unit="{attempt}",
)
RETRY_RETRIED_CALLS: Final = Spec(
    name="resilient_mcp_retry_retried_calls",
    kind=Kind.COUNTER,
    documentation="Calls that needed at least one retry, whatever their "
    "result.",
    labels=_R,
    otel_name="resilient_mcp.retry.retried_calls",
    otel_unit="{call}",
)
RETRY_FAILURES: Final = Spec(
    name="resilient_mcp_retry_failures",
    kind=Kind.COUNTER,
    documentation=(
        "Failed calls, by why the retrying stopped: attempts_exhausted "
        "(max_attempts used up), budget_exhausted (max_elapsed or the "
        "caller's deadline), not_retryable, retry_budget_exhausted (a "
        "retry budget refused the retry)."
    ),
    labels=(*_R, "reason"),
    otel_name="resilient_mcp.retry.failures",
    otel_unit="{call}",
)
REQUESTS: Final = Spec(
    name="resilient_mcp_requests",
    kind=Kind.COUNTER,
    documentation=(
        "Calls through a pipeline, by outcome: success, circuit_open, "
        "bulkhead_full, timeout, retries_exhausted, error, "
        "retry_budget_exhausted, rate_limited, cancelled."
        "bulkhead_full, timeout, retries_exhausted, error, throttled, "
        "cancelled."
    ),
    labels=(*_O, "outcome"),
    otel_name="resilient_mcp.requests",
    otel_unit="{request}",
)
REQUEST_DURATION: Final = Spec(
    name="resilient_mcp_request_duration_seconds",
    kind=Kind.HISTOGRAM,
    documentation=(
        "Seconds per call through a pipeline, whatever the outcome, since "
        "the histogram was created (buckets from HdrHistogram)."
    ),
    labels=_O,
    otel_name="resilient_mcp.request.duration",
    otel_unit="s",
)
TOOL_DURATION: Final = Spec(
    name="resilient_mcp_tool_call_duration_seconds",
    kind=Kind.HISTOGRAM,
    documentation=(
        "Seconds per tools/call of a watched client, by tool, retries "
        "included; only the tools the client tracks now "
        "(max_tracked_tools, least recently used evicted)."
    ),
    labels=("tool",),
    otel_name="resilient_mcp.tool_call.duration",
    otel_unit="s",
)

SPECS: Final[tuple[Spec, ...]] = (
    BREAKER_STATE,
    BREAKER_CALLS,
    BREAKER_SLOW_CALLS,
    BREAKER_TRIPS,
    BREAKER_CURRENT_FAILURES,
    BREAKER_FAILURE_RATE,
    BREAKER_STORE_ERRORS,
    BULKHEAD_ACTIVE,
    BULKHEAD_MAX_CONCURRENT,
    BULKHEAD_LIMIT,
    BULKHEAD_QUEUE_DEPTH,
    BULKHEAD_QUEUE_SIZE,
    BULKHEAD_REJECTED,
    BULKHEAD_COMPLETED,
    BULKHEAD_ABANDONED,
    BULKHEAD_TIMEOUTS,
    BULKHEAD_QUEUE_WAIT,
    RETRY_CALLS,
    RETRY_ATTEMPTS,
    RETRY_RETRIES,
    RETRY_RETRIED_CALLS,
    RETRY_FAILURES,
    *OVERLOAD_SPECS,
    REQUESTS,
    REQUEST_DURATION,
    TOOL_DURATION,
)
"""Every family, in exposition order."""


def build_families(reading: Reading) -> list[Family]:
    """
    The samples of every family that has any, in :data:`SPECS` order.

    Cheap: the latency samples hold the reading's histogram copies, and
    the exporter turns them into buckets or quantiles (which walks their
    counts) wherever it runs, off the event loop if need be.
    """
    out: dict[Spec, list[Sample]] = {spec: [] for spec in SPECS}
    for _, breaker in reading.breakers:
        _breaker(out, breaker)
    for _, bulkhead in reading.bulkheads:
        _bulkhead(out, bulkhead)
    for _, retry in reading.retries:
        _retry(out, retry)
    add_overload_samples(out, reading)
    for _, pipeline in reading.pipelines:
        _pipeline(out, pipeline)
    for name, histogram in reading.bulkhead_waits:
        out[BULKHEAD_QUEUE_WAIT].append(((name,), Distribution(histogram)))
    for operation, histogram in reading.latencies:
        out[REQUEST_DURATION].append(((operation,), Distribution(histogram)))
    for tool, histogram in reading.tools:
        out[TOOL_DURATION].append(((tool,), Distribution(histogram)))
    return [
        Family(spec=spec, samples=tuple(samples))
        for spec, samples in out.items()
        if samples
    ]


def _breaker(out: dict[Spec, list[Sample]], m: CircuitBreakerMetrics) -> None:
    name = m.name
    for state in CircuitState:
        out[BREAKER_STATE].append(
            ((name, state.value), 1.0 if m.state is state else 0.0)
        )
    calls = out[BREAKER_CALLS]
    calls.append(((name, "success"), m.total_successes))
    calls.append(((name, "failure"), m.total_failures))
    calls.append(((name, "rejected"), m.rejected_requests))
    calls.append(((name, "ignored"), m.ignored_requests))
    calls.append(((name, "cancelled"), m.cancelled_requests))
    out[BREAKER_SLOW_CALLS].append(((name,), m.slow_requests))
    out[BREAKER_TRIPS].append(((name,), m.trips))
    out[BREAKER_CURRENT_FAILURES].append(((name,), m.current_failures))
    if m.failure_rate is not None:
        out[BREAKER_FAILURE_RATE].append(((name,), m.failure_rate))
    out[BREAKER_STORE_ERRORS].append(((name,), m.store_errors))


def _bulkhead(out: dict[Spec, list[Sample]], m: BulkheadMetrics) -> None:
    name = (m.name,)
    out[BULKHEAD_ACTIVE].append((name, m.active_requests))
    out[BULKHEAD_MAX_CONCURRENT].append((name, m.max_concurrent_requests))
    out[BULKHEAD_LIMIT].append((name, m.limit))
    out[BULKHEAD_QUEUE_DEPTH].append((name, m.queued_requests))
    out[BULKHEAD_QUEUE_SIZE].append((name, m.queue_size))
    out[BULKHEAD_REJECTED].append((name, m.rejected_requests))
    out[BULKHEAD_COMPLETED].append((name, m.completed_requests))
    out[BULKHEAD_ABANDONED].append((name, m.abandoned_requests))
    out[BULKHEAD_TIMEOUTS].append((name, m.timed_out_requests))


def _retry(out: dict[Spec, list[Sample]], m: RetryMetrics) -> None:
    name = m.name
    calls = out[RETRY_CALLS]
    calls.append(((name, "success"), m.successful_calls))
    calls.append(((name, "failure"), m.failed_calls))
    calls.append(((name, "cancelled"), m.cancelled_calls))
    out[RETRY_ATTEMPTS].append(((name,), m.total_attempts))
    out[RETRY_RETRIES].append(((name,), m.total_retries))
    out[RETRY_RETRIED_CALLS].append(((name,), m.retried_calls))
    failures = out[RETRY_FAILURES]
    failures.append(((name, "attempts_exhausted"), m.exhausted_calls))
    failures.append(((name, "budget_exhausted"), m.budget_exhausted_calls))
    failures.append(((name, "not_retryable"), m.non_retryable_failures))
    failures.append(
        ((name, "retry_budget_exhausted"), m.retry_budget_exhausted_calls)
    )


def _pipeline(out: dict[Spec, list[Sample]], m: PipelineMetrics) -> None:
    requests = out[REQUESTS]
    for outcome, count in m.outcomes.items():
        requests.append(((m.name, outcome.value), count))
