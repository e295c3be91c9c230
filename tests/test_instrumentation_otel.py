"""OpenTelemetry: a span per pipeline call, and the metrics as instruments."""

from __future__ import annotations

import subprocess
import sys

import anyio
import anyio.lowlevel
import pytest

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from _scenario import Boom, Script, sleep_then
from resilient_mcp import (
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
from resilient_mcp.instrumentation import (
    CallTracer,
    Watchlist,
    _otel,
    call_tracer,
    instrument_otel_metrics,
)
from resilient_mcp.instrumentation._otel_global import (
    PROVIDER_GLOBAL,
    trace_globals,
)


async def traced_call(pipeline, fn, *args):
    """Call through *pipeline*, which makes the span itself when traced."""
    assert isinstance(call_tracer(), CallTracer)
    return await pipeline.call(fn, *args)


def ours(exporter):
    """Our finished spans, by start order."""
    return sorted(
        (s for s in exporter.get_finished_spans() if s.name.startswith("r")),
        key=lambda s: s.start_time,
    )


def test_no_provider_means_no_tracer(no_tracer_provider):
    """Without a real provider there is nothing to do; later, there is."""
    assert call_tracer() is None

    trace.set_tracer_provider(trace.NoOpTracerProvider())

    assert call_tracer() is None

    no_tracer_provider()
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    tracer = call_tracer()

    assert isinstance(tracer, CallTracer)
    assert tracer is call_tracer()  # cached while the provider stays
    provider.shutdown()


def test_the_private_global_we_read(no_tracer_provider):
    """
    opentelemetry.trace's private global is the provider set, None before.

    call_tracer's cache relies on it (see instrumentation/_otel_global.py);
    if this fails, tracing set up after the first call would go unnoticed.
    """
    namespace = trace_globals(trace)

    assert None is namespace[PROVIDER_GLOBAL]
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    provider = TracerProvider()
    trace.set_tracer_provider(provider)

    assert provider is namespace[PROVIDER_GLOBAL]
    assert provider is trace.get_tracer_provider()
    provider.shutdown()


def test_a_renamed_global_falls_back_to_the_public_getter(
    no_tracer_provider, monkeypatch
):
    """Without the private global every call asks get_tracer_provider."""
    monkeypatch.setattr(_otel, "PROVIDER_GLOBAL", "_NO_SUCH_GLOBAL")

    assert call_tracer() is None

    provider = TracerProvider()
    trace.set_tracer_provider(provider)

    assert isinstance(call_tracer(), CallTracer)
    provider.shutdown()


def test_provider_named_in_the_environment(no_tracer_provider, monkeypatch):
    """OTEL_PYTHON_TRACER_PROVIDER turns tracing on, as the API reads it."""
    monkeypatch.setenv("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider")

    assert isinstance(call_tracer(), CallTracer)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)


def test_disabled_sdk_means_no_tracer(no_tracer_provider, monkeypatch):
    """OTEL_SDK_DISABLED makes the SDK hand out no-op tracers: no tracing."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    trace.set_tracer_provider(TracerProvider())

    assert call_tracer() is None


def test_nothing_is_imported_until_needed():
    """Importing the package imports neither OpenTelemetry nor Prometheus."""
    code = (
        "import sys, resilient_mcp.instrumentation as i\n"
        "assert i.call_tracer() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('opentelemetry', 'prometheus_client'))))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert "[]\n" == result.stdout


def test_a_span_per_call_with_the_policies_state(run, spans):
    """Each call's span carries outcome, attempts, breaker and bulkhead."""

    async def scenario():
        pipeline = ResiliencePipeline(
            name="tools",
            bulkhead=BulkheadConfig(
                name="tools", max_concurrent_requests=1, queue_size=5
            ),
            retry=RetryManager(
                RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
                name="tools",
            ),
            circuit_breaker=CircuitBreaker(name="search-server"),
        )
        sdk_tracer = trace.get_tracer("mcp-python-sdk")
        failures = [TimeoutError("upstream timeout")]

        async def search(argument):
            # What the MCP SDK does around each request it sends.
            with sdk_tracer.start_as_current_span(
                "MCP send tools/call search", kind=SpanKind.CLIENT
            ):
                await anyio.sleep(2)
                if argument == "second-s3cret" and failures:
                    raise failures.pop()
                return f"result-{argument}"

        async with anyio.create_task_group() as tg:
            tg.start_soon(traced_call, pipeline, search, "first-s3cret")
            await anyio.lowlevel.checkpoint()
            tg.start_soon(traced_call, pipeline, search, "second-s3cret")

        assert trace.INVALID_SPAN is trace.get_current_span()
        first, second = ours(spans)
        assert "resilient_mcp tools" == first.name
        assert {
            "resilient_mcp.operation": "tools",
            "resilient_mcp.outcome": "success",
            "resilient_mcp.retry.attempt": 1,
            "resilient_mcp.circuit_breaker.name": "search-server",
            "resilient_mcp.circuit_breaker.state": "closed",
            "resilient_mcp.circuit_breaker.failures": 0,
            "resilient_mcp.bulkhead.name": "tools",
            "resilient_mcp.bulkhead.wait_time": 0.0,
        } == dict(first.attributes)
        # Waited 2 s for the slot, failed once, succeeded 1 s later.
        assert {
            "resilient_mcp.operation": "tools",
            "resilient_mcp.outcome": "success",
            "resilient_mcp.retry.attempt": 2,
            "resilient_mcp.circuit_breaker.name": "search-server",
            "resilient_mcp.circuit_breaker.state": "closed",
            "resilient_mcp.circuit_breaker.failures": 1,
            "resilient_mcp.bulkhead.name": "tools",
            "resilient_mcp.bulkhead.wait_time": 2.0,
        } == dict(second.attributes)
        assert StatusCode.UNSET == second.status.status_code
        children = [
            s for s in spans.get_finished_spans() if s.name.startswith("MCP")
        ]
        assert [first.context.span_id] + [second.context.span_id] * 2 == (
            sorted(
                (c.parent.span_id for c in children),
                key=[first.context.span_id, second.context.span_id].index,
            )
        )
        assert {first.context.trace_id, second.context.trace_id} == {
            c.context.trace_id for c in children
        }
        # Neither the arguments nor the results went on any span.
        for span in spans.get_finished_spans():
            values = [*span.attributes.values()]
            for event in span.events:
                values += event.attributes.values()
            assert not [v for v in values if "s3cret" in str(v)], span.name

    run(scenario)


def test_errors_set_the_status_and_record_the_exception(run, spans):
    """A failed call's span has ERROR status and an exception event."""

    async def scenario():
        pipeline = ResiliencePipeline(
            name="tools",
            circuit_breaker=CircuitBreaker(
                CircuitBreakerConfig(failure_threshold=1), name="server"
            ),
        )

        with pytest.raises(Boom):
            await traced_call(pipeline, Script(Boom("boom")))
        with pytest.raises(CircuitBreakerError):
            await traced_call(pipeline, Script("never runs"))

        failed, rejected = ours(spans)
        assert StatusCode.ERROR == failed.status.status_code
        assert "Boom: boom" == failed.status.description
        assert "error" == failed.attributes["resilient_mcp.outcome"]
        assert "_scenario.Boom" == failed.attributes["error.type"]
        assert (
            "open" == failed.attributes["resilient_mcp.circuit_breaker.state"]
        )
        assert ["exception"] == [e.name for e in failed.events]
        assert "boom" == failed.events[0].attributes["exception.message"]
        assert "circuit_open" == rejected.attributes["resilient_mcp.outcome"]
        assert StatusCode.ERROR == rejected.status.status_code
        assert rejected.status.description.startswith("CircuitBreakerError: ")

    run(scenario)


def test_cancellation_is_not_an_error(run, spans):
    """A cancelled call's span says so, with no error status or event."""

    async def scenario():
        pipeline = ResiliencePipeline(name="tools")

        with anyio.move_on_after(1):
            await traced_call(pipeline, anyio.sleep, 5)

        [span] = ours(spans)
        assert StatusCode.UNSET == span.status.status_code
        assert [] == list(span.events)
        assert {
            "resilient_mcp.operation": "tools",
            "resilient_mcp.outcome": "cancelled",
            "resilient_mcp.retry.attempt": 1,
            "resilient_mcp.cancelled": True,
        } == dict(span.attributes)
        assert trace.INVALID_SPAN is trace.get_current_span()

    run(scenario)


def test_error_without_a_message_and_string_states(spans):
    """An empty message leaves the type as description; states may be str."""
    tracer = call_tracer()
    assert tracer is not None

    call = tracer.start("op")
    tracer.finish(
        call,
        outcome="error",
        attempts=1,
        breaker_state="half_open",
        error=Boom(),
    )

    [span] = ours(spans)
    assert "Boom" == span.status.description
    assert (
        "half_open" == span.attributes["resilient_mcp.circuit_breaker.state"]
    )


def test_sampled_out_spans_skip_the_attributes(no_tracer_provider):
    """A span that is not recorded gets no attributes, and still ends."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF  # noqa: PLC0415

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracer = call_tracer()
    assert tracer is not None

    call = tracer.start("op")
    tracer.finish(call, outcome="error", attempts=1, error=Boom("x"))

    assert not call.span.is_recording()
    assert () == exporter.get_finished_spans()
    assert trace.INVALID_SPAN is trace.get_current_span()
    provider.shutdown()


def points(reader):
    """{(metric name, sorted attribute items): value} of one collection."""
    data = reader.get_metrics_data()
    return {
        (metric.name, tuple(sorted(point.attributes.items()))): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


def test_metrics_as_observable_instruments(run):
    """The Prometheus series come out of an OpenTelemetry reader too."""

    async def scenario():
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=1), name="server"
        )
        pipeline = ResiliencePipeline(
            name="tools",
            circuit_breaker=breaker,
            bulkhead=BulkheadConfig(name="tools"),
        )
        histogram = LatencyHistogram()
        histogram.record(0.25)
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        watchlist.watch_latency(histogram, operation="tools")
        instrument_otel_metrics(watchlist, meter_provider=provider)
        await pipeline.call(Script("ok"))

        before = points(reader)
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom("down")))
        # A periodic reader collects in a thread of its own.
        after = await anyio.to_thread.run_sync(points, reader)

        state = "resilient_mcp.circuit_breaker.state"
        assert (
            1 == before[(state, (("breaker", "server"), ("state", "closed")))]
        )
        assert 1 == after[(state, (("breaker", "server"), ("state", "open")))]
        assert (
            0 == after[(state, (("breaker", "server"), ("state", "closed")))]
        )
        requests = "resilient_mcp.requests"
        success = (("operation", "tools"), ("outcome", "success"))
        error = (("operation", "tools"), ("outcome", "error"))
        assert (1, 0) == (
            before[(requests, success)],
            before[(requests, error)],
        )
        assert (1, 1) == (after[(requests, success)], after[(requests, error)])
        assert (
            1
            == after[
                (
                    "resilient_mcp.circuit_breaker.trips",
                    (("breaker", "server"),),
                )
            ]
        )
        assert (
            100
            == after[
                ("resilient_mcp.bulkhead.queue_size", (("bulkhead", "tools"),))
            ]
        )
        assert (
            histogram.snapshot().p99
            == after[
                (
                    "resilient_mcp.request.duration",
                    (("operation", "tools"), ("quantile", "0.99")),
                )
            ]
        )
        provider.shutdown()

    run(scenario)


def test_instrument_kinds_follow_the_families(run):
    """Counters, up-down counters and gauges, each with its unit."""

    async def scenario():
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        watchlist = Watchlist()
        pipeline = ResiliencePipeline(
            name="tools",
            bulkhead=BulkheadConfig(name="tools"),
            retry=RetryManager(name="tools"),
            circuit_breaker=CircuitBreaker(name="server"),
        )
        watchlist.watch_pipeline(pipeline)
        instrument_otel_metrics(watchlist, meter_provider=provider)
        await pipeline.call(Script("ok"))  # quantiles need observations

        data = reader.get_metrics_data()

        metrics = {
            m.name: m
            for r in data.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        }
        calls = metrics["resilient_mcp.circuit_breaker.calls"]
        assert ("{call}", True) == (calls.unit, calls.data.is_monotonic)
        depth = metrics["resilient_mcp.bulkhead.queue_depth"]
        assert ("{request}", False) == (depth.unit, depth.data.is_monotonic)
        wait = metrics["resilient_mcp.bulkhead.queue_wait"]
        assert "s" == wait.unit
        assert not hasattr(wait.data, "is_monotonic")  # a gauge
        limit = metrics["resilient_mcp.bulkhead.limit"]
        assert ("{request}", False) == (limit.unit, limit.data.is_monotonic)
        assert 22 == len(metrics)  # no failure rate, no request latency
        provider.shutdown()

    run(scenario)


def test_otel_latency_quantiles_only_once_something_was_recorded(run):
    """A latency with no values has no quantile points; one value has six."""

    async def scenario():
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        pipeline = ResiliencePipeline(name="tools", recorder=LatencyRecorder())
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        instrument_otel_metrics(watchlist, meter_provider=provider)

        before = points(reader)
        await pipeline.call(sleep_then, 0.25)
        after = points(reader)
        provider.shutdown()

        duration = "resilient_mcp.request.duration"
        assert [] == [key for key in before if key[0] == duration]
        quantiles = {
            dict(labels)["quantile"]: value
            for (name, labels), value in after.items()
            if name == duration
        }
        assert ["0.5", "0.9", "0.95", "0.99", "0.999", "1"] == sorted(
            quantiles, key=float
        )
        assert pytest.approx(0.25, rel=1e-3) == quantiles["1"]

    run(scenario)
