"""
The snapshots :meth:`ResilientMCPClient.metrics` returns, and their assembly.

Each pipeline counts its own outcomes, the recorders hold the latencies,
:class:`~._tool_call.ToolCalls` the per-tool errors and breakers; this
module only adds them up into frozen values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from .._breaker import CircuitBreaker, CircuitBreakerMetrics
from .._bulkhead import Bulkhead, BulkheadMetrics
from .._metrics import LatencyRecorder, LatencySnapshot
from .._metrics._values import EMPTY_SNAPSHOT
from .._outcomes import FAILURE_OUTCOMES, Outcome
from .._pipeline import ResiliencePipeline
from .._retry import RetryManager
from ._session_types import SessionMetrics
from ._tool_call import ToolCalls


@attrs.frozen(kw_only=True)
class OperationMetrics:
    """
    Counters and latency of one MCP method (or of one tool).

    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``; the latency histogram holds one value per
    request that ended.  Answers served from the SDK's response cache are
    not requests to the server and are not counted.

    .. versionadded:: 0.1.0
    """

    name: str
    """The MCP method (``"tools/call"``) or the tool's name."""
    total_requests: int
    """Requests that ended."""
    successful_requests: int
    """Requests that returned (tool results with ``is_error`` included)."""
    failed_requests: int
    """Requests that raised, every kind of failure."""
    cancelled_requests: int
    """Requests whose caller was cancelled."""
    failures: Mapping[Outcome, int]
    """Failed requests by kind (every failure outcome present)."""
    latency: LatencySnapshot
    """Latency of the requests that ended, in seconds."""


@attrs.frozen(kw_only=True)
class ToolMetrics:
    """
    What one tool did, as far as its own breaker and histogram saw.

    .. versionadded:: 0.1.0
    """

    name: str
    """The tool's name."""
    tool_errors: int
    """Results with ``is_error=True``."""
    circuit_breaker: CircuitBreakerMetrics | None
    """The tool's breaker, or ``None`` when per-tool breakers are off."""
    latency: LatencySnapshot
    """Latency of the tool's calls that ended, retries included."""


@attrs.frozen(kw_only=True)
class ResilientClientMetrics:
    """
    The client's metrics, with exact accounting and real percentiles.

    Every request is counted once, in exactly one outcome:
    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``, and ``failed_requests`` is the sum of
    ``failures``.  Latencies are seconds from HdrHistograms (3
    significant digits).

    .. versionadded:: 0.1.0
    """

    total_requests: int
    """Requests that ended, over every operation."""
    successful_requests: int
    """Requests that returned."""
    failed_requests: int
    """Requests that raised."""
    cancelled_requests: int
    """Requests whose caller was cancelled (neither success nor failure)."""
    retried_requests: int
    """Requests that needed at least one retry."""
    circuit_breaker_trips: int
    """Times the server's circuit opened."""
    bulkhead_rejections: int
    """Requests rejected by a full bulkhead."""
    tool_errors: int
    """``tools/call`` results with ``is_error=True`` (successful requests)."""
    failures: Mapping[Outcome, int]
    """Failed requests by kind."""
    average_latency: float
    """Mean latency, seconds."""
    p50_latency: float
    """Median latency, seconds."""
    p95_latency: float
    """95th percentile latency, seconds."""
    p99_latency: float
    """99th percentile latency, seconds."""
    p999_latency: float
    """99.9th percentile latency, seconds."""
    max_latency: float
    """Largest latency, seconds."""
    operations: Mapping[str, OperationMetrics]
    """Per MCP method (``"tools/call"``, ``"resources/read"``, ...)."""
    tools: Mapping[str, ToolMetrics]
    """Per tool, for the tools tracked now (least recently used evicted)."""
    circuit_breaker: CircuitBreakerMetrics
    """The server's breaker."""
    bulkheads: Mapping[str, BulkheadMetrics]
    """Per operation kind."""
    session: SessionMetrics
    """Connections, losses and reconnects."""
    internal_requests: int = 0
    """
    Requests the client made of its own accord, not counted in
    ``total_requests`` or the latencies: the ``tools/list`` refreshes after
    the server said the tool list changed (every outcome, rejections
    included).
    """
    internal_operations: Mapping[str, OperationMetrics] = attrs.field(
        factory=lambda: MappingProxyType({})
    )
    """The same per pipeline (``"tools/list:refresh"``), with outcomes
    (their latency is not recorded)."""


def client_metrics(  # noqa: PLR0917 (one call, from the client)
    pipelines: Iterable[ResiliencePipeline],
    recorder: LatencyRecorder,
    retry: RetryManager,
    breaker: CircuitBreaker,
    bulkheads: Mapping[str, Bulkhead],
    tools: ToolCalls,
    tool_recorder: LatencyRecorder,
    session: SessionMetrics,
    internal: Iterable[ResiliencePipeline] = (),
) -> ResilientClientMetrics:
    """
    Add up the client's parts into one snapshot.

    Pipelines sharing a key (``"tools/call"`` and ``"tools/call:unsafe"``)
    are counted as one operation.  The *internal* pipelines (the client's
    own requests) are counted apart.
    """
    totals = dict.fromkeys(Outcome, 0)
    operations = _operations(pipelines, recorder, totals)
    internal_totals = dict.fromkeys(Outcome, 0)
    internal_operations = _operations(internal, None, internal_totals)
    overall = recorder.snapshot()
    failures: dict[Outcome, int] = {o: totals[o] for o in FAILURE_OUTCOMES}
    return ResilientClientMetrics(
        total_requests=sum(totals.values()),
        successful_requests=totals[Outcome.SUCCESS],
        failed_requests=sum(failures.values()),
        cancelled_requests=totals[Outcome.CANCELLED],
        retried_requests=retry.metrics().retried_calls,
        circuit_breaker_trips=breaker.metrics().trips,
        bulkhead_rejections=totals[Outcome.BULKHEAD_FULL],
        tool_errors=tools.errors,
        failures=MappingProxyType(failures),
        average_latency=overall.mean,
        p50_latency=overall.p50,
        p95_latency=overall.p95,
        p99_latency=overall.p99,
        p999_latency=overall.p999,
        max_latency=overall.max,
        operations=MappingProxyType(operations),
        tools=MappingProxyType(_tool_metrics(tools, tool_recorder)),
        circuit_breaker=breaker.metrics(),
        bulkheads=MappingProxyType(
            {k: b.metrics() for k, b in bulkheads.items()}
        ),
        session=session,
        internal_requests=sum(internal_totals.values()),
        internal_operations=MappingProxyType(internal_operations),
    )


def _operations(
    pipelines: Iterable[ResiliencePipeline],
    recorder: LatencyRecorder | None,
    totals: dict[Outcome, int],
) -> dict[str, OperationMetrics]:
    """Each pipeline key's operation metrics; adds into *totals*."""
    by_method: dict[str, dict[Outcome, int]] = {}
    for pipeline in pipelines:
        counts = by_method.setdefault(pipeline.key, dict.fromkeys(Outcome, 0))
        for outcome, count in pipeline.metrics().outcomes.items():
            counts[outcome] += count
            totals[outcome] += count
    return {
        method: _operation(
            method,
            counts,
            recorder.snapshot_or_empty(method)
            if recorder is not None
            else EMPTY_SNAPSHOT,
        )
        for method, counts in by_method.items()
    }


def _tool_metrics(
    tools: ToolCalls, tool_recorder: LatencyRecorder
) -> dict[str, ToolMetrics]:
    metrics: dict[str, ToolMetrics] = {}
    for tool in tool_recorder.keys():  # noqa: SIM118 (a method)
        breaker = tools.peek_breaker(tool)
        metrics[tool] = ToolMetrics(
            name=tool,
            tool_errors=tools.errors_of(tool),
            circuit_breaker=breaker.metrics() if breaker else None,
            latency=tool_recorder.snapshot_or_empty(tool),
        )
    return metrics


def _operation(
    name: str, counts: Mapping[Outcome, int], latency: LatencySnapshot
) -> OperationMetrics:
    failures: dict[Outcome, int] = {o: counts[o] for o in FAILURE_OUTCOMES}
    return OperationMetrics(
        name=name,
        total_requests=sum(counts.values()),
        successful_requests=counts[Outcome.SUCCESS],
        failed_requests=sum(failures.values()),
        cancelled_requests=counts[Outcome.CANCELLED],
        failures=MappingProxyType(failures),
        latency=latency,
    )
