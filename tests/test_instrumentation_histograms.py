"""
Latency as Prometheus histograms, scraped over real HTTP (issue 12, #16).

The calls run in virtual time (``run_virtual``), so their durations are
exact; the scrape then runs on the real clock, against ``serve_metrics``
on 127.0.0.1 with port 0, and the answer is parsed with
``prometheus_client``'s own parser.
"""

from __future__ import annotations

import functools
import math

import anyio
import httpx2
import pytest
import trio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _scenario import sleep_then
from resilient_mcp import (
    BulkheadConfig,
    ConfigurationError,
    LatencyRecorder,
    ResiliencePipeline,
    ResilientClientConfig,
    ResilientMCPClient,
)
from resilient_mcp.instrumentation import (
    ResilienceCollector,
    Watchlist,
    serve_metrics,
)
from resilient_mcp.instrumentation._distribution import DEFAULT_BUCKETS
from resilient_mcp.testing import run_virtual, wait_all_tasks_blocked
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


LIMIT = 10  # seconds any network test may take
DURATION = "resilient_mcp_request_duration_seconds"
WAIT = "resilient_mcp_bulkhead_queue_wait_seconds"
TOOL = "resilient_mcp_tool_call_duration_seconds"
# Seconds per call; 0.1 sits exactly on a default bound (le means <=).
DURATIONS = (0.003, 0.02, 0.02, 0.1, 0.3, 1.5, 7.0)


def histogram_of(text, name, **labels):
    """({le: count}, count, sum, type) of one histogram series."""
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == name
    )
    buckets, count, total = {}, None, None
    for sample in family.samples:
        own = {k: v for k, v in sample.labels.items() if k != "le"}
        if own != labels:
            continue
        if sample.name == f"{name}_bucket":
            buckets[float(sample.labels["le"])] = sample.value
        elif sample.name == f"{name}_count":
            count = sample.value
        elif sample.name == f"{name}_sum":
            total = sample.value
    return buckets, count, total, family.type


async def run_calls(pipeline):
    """Call the pipeline once per duration, one after the other."""
    for seconds in DURATIONS:
        await pipeline.call(sleep_then, seconds)


async def scrape_over_http(watchlist, **options):
    """GET /metrics from serve_metrics on 127.0.0.1, port 0."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_metrics, watchlist, port=0, **options)
            )
            async with httpx2.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
            tg.cancel_scope.cancel()
    assert 200 == response.status_code
    return response.text


@pytest.mark.parametrize(
    "bounds", [None, (0.01, 0.1, 1.0, 10.0)], ids=["default", "custom"]
)
def test_issue_12_item_16_latency_is_a_histogram_over_http(backend, bounds):
    """Buckets are cumulative, and _count and _sum are the calls made."""
    pipeline = ResiliencePipeline(name="tools", recorder=LatencyRecorder())
    run_virtual(run_calls, pipeline, backend=backend)

    async def scrape():
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        options = {} if bounds is None else {"buckets": bounds}
        return await scrape_over_http(watchlist, **options)

    text = anyio.run(scrape, backend=backend)

    buckets, count, total, kind = histogram_of(
        text, DURATION, operation="tools"
    )
    assert "histogram" == kind
    expected_bounds = DEFAULT_BUCKETS if bounds is None else bounds
    assert [*expected_bounds, math.inf] == list(buckets)
    counts = list(buckets.values())
    assert counts == sorted(counts)  # cumulative
    assert {
        le: float(sum(d <= le for d in DURATIONS)) for le in buckets
    } == buckets
    assert float(len(DURATIONS)) == count == buckets[math.inf]
    assert pytest.approx(sum(DURATIONS), rel=1e-3) == total


def test_issue_12_item_16_histograms_add_up_across_replicas():
    """Two processes' buckets sum to the buckets of all their calls."""
    replicas = [
        ResiliencePipeline(name="tools", recorder=LatencyRecorder())
        for _ in range(2)
    ]
    run_virtual(run_calls, replicas[0], backend="trio")
    run_virtual(sleep_then, 0.05, backend="trio")  # a call not through us
    run_virtual(run_calls, replicas[1], backend="trio")
    texts = []
    for pipeline in replicas:
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        registry = CollectorRegistry()
        registry.register(ResilienceCollector(watchlist))
        texts.append(generate_latest(registry).decode())

    summed: dict[float, float] = {}
    for text in texts:
        buckets, *_ = histogram_of(text, DURATION, operation="tools")
        for le, value in buckets.items():
            summed[le] = summed.get(le, 0.0) + value

    assert math.inf in summed
    assert {
        le: 2.0 * sum(d <= le for d in DURATIONS) for le in summed
    } == summed


def test_issue_12_item_16_bulkhead_waits_are_a_histogram(backend):
    """The bulkhead's queue waits are buckets too: 0 s, then 1 s, 2 s."""
    pipeline = ResiliencePipeline(
        name="tools",
        bulkhead=BulkheadConfig(
            name="tools", max_concurrent_requests=1, request_timeout=None
        ),
    )

    async def queue_up():
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(pipeline.call, sleep_then, 1.0)
                await wait_all_tasks_blocked()

    run_virtual(queue_up, backend=backend)
    watchlist = Watchlist()
    watchlist.watch_pipeline(pipeline)
    registry = CollectorRegistry()
    registry.register(ResilienceCollector(watchlist, buckets=(0.5, 1.0, 5)))

    text = generate_latest(registry).decode()

    buckets, count, total, kind = histogram_of(text, WAIT, bulkhead="tools")
    assert "histogram" == kind
    assert {0.5: 1.0, 1.0: 2.0, 5.0: 3.0, math.inf: 3.0} == buckets
    assert 3.0 == count
    assert pytest.approx(3.0, rel=1e-3) == total


async def test_issue_12_item_16_tool_series_are_bounded_by_the_tool_lru(
    autojump_clock,
):
    """Only the max_tracked_tools most recently called tools have series."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=7))
    server = create_flaky_server(state=state)
    config = ResilientClientConfig(max_tracked_tools=2)
    async with ResilientMCPClient(server, config=config) as client:
        watchlist = Watchlist()
        watchlist.watch_client(client)
        await client.call_tool("echo", {"text": "hi"})
        await client.call_tool("slow", {"seconds": 0.3})
        await client.call_tool("add", {"a": 1, "b": 2})
        await client.call_tool("slow", {"seconds": 0.3})
        registry = CollectorRegistry()
        registry.register(ResilienceCollector(watchlist))

        text = await trio.to_thread.run_sync(generate_latest, registry)

    family = next(
        f
        for f in text_string_to_metric_families(text.decode())
        if f.name == TOOL
    )
    assert {"add", "slow"} == {s.labels["tool"] for s in family.samples}
    buckets, count, _, _ = histogram_of(text.decode(), TOOL, tool="slow")
    assert 2.0 == count
    assert 0.0 == buckets[0.25]
    assert 2.0 == buckets[0.5]
    # (bounds + Inf + count + sum) per tool, for at most 2 tools.
    assert 2 * (len(DEFAULT_BUCKETS) + 3) == len(family.samples)


@pytest.mark.parametrize(
    "bad",
    [
        (),
        (0.5, 0.1),
        (0.1, 0.1),
        (-1.0,),
        (0.0,),
        (math.inf,),
        (math.nan,),
        (True,),
        ("0.1",),
        "0.1",
        None,
    ],
)
def test_issue_12_item_16_invalid_bounds_fail_at_construction(bad):
    """Bad bucket bounds raise ConfigurationError naming the field."""
    with pytest.raises(
        ConfigurationError, match=r"ResilienceCollector\.buckets"
    ):
        ResilienceCollector(Watchlist(), buckets=bad)


async def test_issue_12_item_16_serve_metrics_checks_bounds_before_serving():
    """serve_metrics fails to start with bad bounds, naming the field."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            with pytest.raises(
                ConfigurationError, match=r"ResilienceCollector\.buckets"
            ):
                await tg.start(
                    functools.partial(
                        serve_metrics, Watchlist(), port=0, buckets=(2, 1)
                    )
                )
            with pytest.raises(ConfigurationError, match=r"Watchlist"):
                await tg.start(
                    functools.partial(
                        serve_metrics,
                        CollectorRegistry(),
                        port=0,
                        buckets=(1,),
                    )
                )
