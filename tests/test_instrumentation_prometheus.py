"""The Prometheus collector: series read back from the exposition format."""

from __future__ import annotations

import gc
import threading

import anyio
import pytest

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _scenario import Boom, Script, sleep_then
from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    BulkheadError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    HedgingConfig,
    LatencyHistogram,
    Outcome,
    RateLimiterConfig,
    ResiliencePipeline,
    RetryBudgetConfig,
    RetryConfig,
    RetryManager,
    ThrottlingConfig,
)
from resilient_mcp._metrics import LatencyRecorder
from resilient_mcp.instrumentation import ResilienceCollector, Watchlist
from resilient_mcp.testing import fail_once, wait_all_tasks_blocked


def exposition(watchlist):
    """The text format of a registry holding only *watchlist*'s collector."""
    registry = CollectorRegistry()
    registry.register(ResilienceCollector(watchlist))
    return generate_latest(registry).decode()


def scrape(watchlist):
    """Every sample, parsed back: {(name, sorted label items): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition(watchlist))
        for sample in family.samples
    }


def L(**labels):  # noqa: N802 - reads like a label set
    """A label set as scrape() keys it."""
    return tuple(sorted(labels.items()))


def buckets(samples, name, **labels):
    """{le: cumulative count} of one histogram series."""
    return {
        dict(key)["le"]: value
        for (n, key), value in samples.items()
        if n == f"{name}_bucket"
        and {k: v for k, v in key if k != "le"} == labels
    }


def series(samples, name):
    """{sorted label items: value} of the samples called *name*."""
    return {
        labels: value for (n, labels), value in samples.items() if n == name
    }


def test_breaker_state_counts_and_trips(run):
    """The state is one-hot, and calls, rejections and trips are counted."""

    async def scenario():
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=2, recovery_timeout=30),
            name="search-server",
        )
        watchlist = Watchlist()
        watchlist.watch_circuit_breaker(breaker)
        await breaker.call(Script("ok"))
        await fail_once(breaker)
        await fail_once(breaker)
        with pytest.raises(CircuitBreakerError):
            await breaker.call(Script("never runs"))

        samples = scrape(watchlist)

        b = "search-server"
        assert {
            L(breaker=b, state="closed"): 0.0,
            L(breaker=b, state="open"): 1.0,
            L(breaker=b, state="half_open"): 0.0,
        } == series(samples, "resilient_mcp_circuit_breaker_state")
        assert {
            L(breaker=b, result="success"): 1.0,
            L(breaker=b, result="failure"): 2.0,
            L(breaker=b, result="rejected"): 1.0,
            L(breaker=b, result="ignored"): 0.0,
            L(breaker=b, result="cancelled"): 0.0,
        } == series(samples, "resilient_mcp_circuit_breaker_calls_total")
        assert {L(breaker=b): 1.0} == series(
            samples, "resilient_mcp_circuit_breaker_trips_total"
        )

        await anyio.sleep(30)

        assert (
            1.0
            == scrape(watchlist)[
                (
                    "resilient_mcp_circuit_breaker_state",
                    L(breaker=b, state="half_open"),
                )
            ]
        )

    run(scenario)


def test_failure_rate_only_for_rate_mode_breakers(run):
    """A rate-mode breaker reports its failure ratio; a count-mode one not."""

    async def scenario():
        rate = CircuitBreaker(
            CircuitBreakerConfig(failure_rate_threshold=0.5, minimum_calls=10),
            name="rate",
        )
        count = CircuitBreaker(name="count")
        watchlist = Watchlist()
        watchlist.watch_circuit_breaker(rate)
        watchlist.watch_circuit_breaker(count)
        for _ in range(3):
            await rate.call(Script("ok"))
        await fail_once(rate)
        await fail_once(count)

        samples = scrape(watchlist)

        assert {L(breaker="rate"): 0.25} == series(
            samples, "resilient_mcp_circuit_breaker_failure_rate"
        )
        assert {
            L(breaker="count"): 1.0,
            L(breaker="rate"): 1.0,
        } == series(samples, "resilient_mcp_circuit_breaker_current_failures")

    run(scenario)


def test_bulkhead_queue_rejections_and_wait_times(run):
    """Active, queued and rejected calls show, then the queue wait buckets."""

    async def scenario():
        bulkhead = Bulkhead(
            BulkheadConfig(
                name="tools",
                max_concurrent_requests=1,
                queue_size=1,
                request_timeout=None,
            )
        )
        watchlist = Watchlist()
        watchlist.watch_bulkhead(bulkhead)
        h = L(bulkhead="tools")
        rejected = []

        async def caller():
            try:
                await bulkhead.call(sleep_then, 10)
            except BulkheadError as exc:
                rejected.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(caller)
            await wait_all_tasks_blocked()

            busy = scrape(watchlist)

        done = scrape(watchlist)

        assert 1 == len(rejected)
        for name, value in [
            ("resilient_mcp_bulkhead_active_requests", 1.0),
            ("resilient_mcp_bulkhead_queue_depth", 1.0),
            ("resilient_mcp_bulkhead_queue_size", 1.0),
            ("resilient_mcp_bulkhead_max_concurrent_requests", 1.0),
            ("resilient_mcp_bulkhead_rejected_total", 1.0),
            ("resilient_mcp_bulkhead_completed_total", 0.0),
        ]:
            assert {h: value} == series(busy, name), name
        assert {h: 0.0} == series(done, "resilient_mcp_bulkhead_queue_depth")
        assert {h: 2.0} == series(
            done, "resilient_mcp_bulkhead_completed_total"
        )
        assert {h: 0.0} == series(
            done, "resilient_mcp_bulkhead_abandoned_total"
        )
        assert {h: 0.0} == series(
            done, "resilient_mcp_bulkhead_timeouts_total"
        )
        # One call found the slot free (0 s), the other waited 10 s.
        wait = buckets(
            done, "resilient_mcp_bulkhead_queue_wait_seconds", bulkhead="tools"
        )
        assert {1.0, 2.0} == set(wait.values())
        assert 1.0 == wait["5.0"]
        assert 2.0 == wait["10.0"]
        assert 2.0 == wait["+Inf"]
        assert {h: 2.0} == series(
            done, "resilient_mcp_bulkhead_queue_wait_seconds_count"
        )
        assert (
            pytest.approx(10.0, rel=1e-3)
            == series(done, "resilient_mcp_bulkhead_queue_wait_seconds_sum")[h]
        )

    run(scenario)


def test_retry_attempts_retries_and_exhaustion(run):
    """Attempts, retries and why retrying stopped are counted per manager."""

    async def scenario():
        retry = RetryManager(
            RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
            name="flaky",
        )
        watchlist = Watchlist()
        watchlist.watch_retry(retry)
        await retry.call(Script(TimeoutError("slow"), "ok"))
        with pytest.raises(TimeoutError):
            await retry.call(Script(TimeoutError("slow")))
        with pytest.raises(Boom):
            await retry.call(Script(Boom("not retryable")))

        samples = scrape(watchlist)

        r = L(retry="flaky")
        assert {
            L(retry="flaky", result="success"): 1.0,
            L(retry="flaky", result="failure"): 2.0,
            L(retry="flaky", result="cancelled"): 0.0,
        } == series(samples, "resilient_mcp_retry_calls_total")
        assert {r: 6.0} == series(
            samples, "resilient_mcp_retry_attempts_total"
        )
        assert {r: 3.0} == series(samples, "resilient_mcp_retry_retries_total")
        assert {r: 2.0} == series(
            samples, "resilient_mcp_retry_retried_calls_total"
        )
        assert {
            L(retry="flaky", reason="attempts_exhausted"): 1.0,
            L(retry="flaky", reason="budget_exhausted"): 0.0,
            L(retry="flaky", reason="not_retryable"): 1.0,
            L(retry="flaky", reason="retry_budget_exhausted"): 0.0,
        } == series(samples, "resilient_mcp_retry_failures_total")

    run(scenario)


def test_pipeline_outcomes_and_shared_policies(run):
    """Each pipeline counts its outcomes; a shared breaker appears once."""

    async def scenario():
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=2, recovery_timeout=30),
            name="server",
        )
        tools = ResiliencePipeline(name="tools", circuit_breaker=breaker)
        resources = ResiliencePipeline(
            name="resources",
            circuit_breaker=breaker,
            bulkhead=BulkheadConfig(name="resources"),
        )
        watchlist = Watchlist()
        watchlist.watch_pipeline(tools)
        watchlist.watch_pipeline(resources)
        watchlist.watch_circuit_breaker(breaker)
        await tools.call(Script("ok"))
        await resources.call(Script("ok"))
        for _ in range(2):
            with pytest.raises(Boom):
                await tools.call(Script(Boom("down")))
        with pytest.raises(CircuitBreakerError):
            await resources.call(Script("never runs"))

        samples = scrape(watchlist)

        requests = series(samples, "resilient_mcp_requests_total")
        assert 2 * len(Outcome) == len(requests)  # every outcome x 2
        assert 2 * len(Outcome) == len(requests)  # every outcome, twice
        assert {
            L(operation="resources", outcome="success"): 1.0,
            L(operation="resources", outcome="circuit_open"): 1.0,
            L(operation="tools", outcome="success"): 1.0,
            L(operation="tools", outcome="error"): 2.0,
        } == {labels: v for labels, v in requests.items() if v}
        assert {L(breaker="server"): 1.0} == series(
            samples, "resilient_mcp_circuit_breaker_trips_total"
        )
        assert [L(bulkhead="resources")] == list(
            series(samples, "resilient_mcp_bulkhead_completed_total")
        )

    run(scenario)


def test_latency_buckets_from_histograms_and_recorders(run):
    """Cumulative le buckets, count and sum per operation, from hdrh."""

    async def scenario():
        histogram = LatencyHistogram()
        for seconds in (0.010, 0.020, 0.030, 0.040, 1.0):
            histogram.record(seconds)
        recorder = LatencyRecorder()
        recorder.record("tools/call:search", 0.120)
        recorder.record("tools/call:search", 0.080)
        recorder.record("tools", 5.0)  # shadowed by the histogram
        shadowed = LatencyHistogram()
        shadowed.record(9.0)
        watchlist = Watchlist()
        watchlist.watch_latency(histogram, operation="tools")
        watchlist.watch_latency(recorder)
        # Shadowed by the recorder's key, watched earlier.
        watchlist.watch_latency(shadowed, operation="tools/call:search")

        samples = scrape(watchlist)

        name = "resilient_mcp_request_duration_seconds"
        tools = buckets(samples, name, operation="tools")
        assert 0.0 == tools["0.005"]
        assert 1.0 == tools["0.01"]
        assert 2.0 == tools["0.025"]
        assert 4.0 == tools["0.05"]
        assert 4.0 == tools["0.5"]
        assert 5.0 == tools["1.0"]
        assert 5.0 == tools["+Inf"]
        search = buckets(samples, name, operation="tools/call:search")
        assert 0.0 == search["0.05"]
        assert 1.0 == search["0.1"]
        assert 2.0 == search["0.25"]
        assert 2.0 == search["+Inf"]
        for operation, snapshot in [
            ("tools", histogram.snapshot()),
            ("tools/call:search", recorder.snapshot("tools/call:search")),
        ]:
            op = L(operation=operation)
            assert snapshot.count == samples[(f"{name}_count", op)]
            assert snapshot.mean * snapshot.count == pytest.approx(
                samples[(f"{name}_sum", op)]
            )

    run(scenario)


def test_pipelines_report_their_own_recorded_latency(run):
    """A pipeline with a recorder reports its latency under its key."""

    async def scenario():
        recorder = LatencyRecorder()
        tools = ResiliencePipeline(name="tools", recorder=recorder)
        search = ResiliencePipeline(
            name="search", recorder=recorder, record_key="tools/call:search"
        )
        watchlist = Watchlist()
        watchlist.watch_pipeline(tools)
        watchlist.watch_pipeline(search)
        await tools.call(sleep_then, 0.25)

        samples = scrape(watchlist)

        name = "resilient_mcp_request_duration_seconds"
        tools_buckets = buckets(samples, name, operation="tools")
        assert 0.0 == tools_buckets["0.1"]
        assert 1.0 == tools_buckets["0.25"]
        assert 1.0 == samples[(f"{name}_count", L(operation="tools"))]
        # Nothing recorded yet: every bucket is there, and empty.
        search_buckets = buckets(samples, name, operation="tools/call:search")
        assert {0.0} == set(search_buckets.values())
        assert 16 == len(search_buckets)
        assert (
            0.0 == samples[(f"{name}_count", L(operation="tools/call:search"))]
        )

    run(scenario)


def test_objects_are_held_weakly_and_can_be_unwatched(run):
    """A collected or unwatched object's series disappear."""

    async def scenario():
        watchlist = Watchlist()
        kept = ResiliencePipeline(
            name="kept", circuit_breaker=CircuitBreaker()
        )
        watchlist.watch_pipeline(kept)
        watchlist.watch_pipeline(ResiliencePipeline(name="dropped"))
        bulkhead = Bulkhead(BulkheadConfig(name="unwatched"))
        watchlist.watch_bulkhead(bulkhead)
        gc.collect()

        watchlist.unwatch(bulkhead)
        watchlist.unwatch(bulkhead)  # a second time does nothing

        samples = scrape(watchlist)

        operations = {
            dict(labels)["operation"]
            for labels in series(samples, "resilient_mcp_requests_total")
        }
        assert {"kept"} == operations
        assert {} == series(samples, "resilient_mcp_bulkhead_queue_depth")

        watchlist.unwatch(kept)

        assert "" == exposition(watchlist)

    run(scenario)


def test_names_must_be_unique_per_kind():
    """Two different objects of a kind with one name would share series."""
    watchlist = Watchlist()
    watchlist.watch_pipeline(
        first := ResiliencePipeline(
            name="tools", circuit_breaker=CircuitBreaker(name="server")
        )
    )
    watchlist.watch_pipeline(first)  # the same object again is fine

    with pytest.raises(ValueError, match="pipeline named 'tools'"):
        watchlist.watch_pipeline(ResiliencePipeline(name="tools"))
    with pytest.raises(ValueError, match="circuit breaker named 'server'"):
        watchlist.watch_circuit_breaker(CircuitBreaker(name="server"))
    with pytest.raises(ValueError, match="circuit breaker named 'server'"):
        watchlist.watch_pipeline(
            ResiliencePipeline(
                name="other", circuit_breaker=CircuitBreaker(name="server")
            )
        )
    watchlist.watch_bulkhead(held := Bulkhead(BulkheadConfig(name="b")))
    with pytest.raises(ValueError, match="bulkhead named 'b'"):
        watchlist.watch_bulkhead(Bulkhead(BulkheadConfig(name="b")))
    watchlist.watch_retry(keep := RetryManager(name="r"))
    with pytest.raises(ValueError, match="retry manager named 'r'"):
        watchlist.watch_retry(RetryManager(name="r"))
    del first, held, keep


def test_watch_latency_checks_its_arguments():
    """A histogram needs a unique operation; a recorder must not get one."""
    watchlist = Watchlist()
    histogram = LatencyHistogram()
    watchlist.watch_latency(histogram, operation="tools")
    watchlist.watch_latency(histogram, operation="tools")  # same again: fine

    with pytest.raises(ValueError, match="needs operation"):
        watchlist.watch_latency(LatencyHistogram())
    with pytest.raises(ValueError, match="already has"):
        watchlist.watch_latency(LatencyHistogram(), operation="tools")
    with pytest.raises(ValueError, match="reports its keys"):
        watchlist.watch_latency(LatencyRecorder(), operation="tools")
    with pytest.raises(TypeError, match="got list"):
        watchlist.watch_latency([], operation="tools")


def test_counters_end_in_total_and_describe_names_every_family(run):
    """Every counter sample ends in _total; describe() lists all families."""

    async def scenario():
        pipeline = ResiliencePipeline(
            name="tools",
            bulkhead=BulkheadConfig(name="tools"),
            retry=RetryManager(name="tools"),
            circuit_breaker=CircuitBreaker(
                CircuitBreakerConfig(failure_rate_threshold=0.5),
                name="server",
            ),
            retry_budget=RetryBudgetConfig(),
            rate_limit=RateLimiterConfig(),
            throttling=ThrottlingConfig(),
            hedging=HedgingConfig(delay=1.0),
        )
        histogram = LatencyHistogram()
        histogram.record(0.1)
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        watchlist.watch_latency(histogram, operation="tools")
        await pipeline.call(Script("ok"))
        collector = ResilienceCollector(watchlist)

        families = list(text_string_to_metric_families(exposition(watchlist)))

        described = {f.name for f in collector.describe()}
        # Every family but the per-tool one, which needs a watched client.
        assert described - {"resilient_mcp_tool_call_duration_seconds"} == {
            f.name for f in families
        }
        assert all(f.name.startswith("resilient_mcp_") for f in families)
        counters = [f for f in families if f.type == "counter"]
        # 14 of the core policies (the breaker's store errors included),
        # four of the budget, three of the rate limiter (store errors
        # included), four of the throttle, five of the hedging policy
        assert 30 == len(counters)
        for family in counters:
            assert all(s.name.endswith("_total") for s in family.samples)
        assert {"gauge", "counter", "histogram"} == {f.type for f in families}

    run(scenario)


def test_seed_grep_recipes_find_their_series(run):
    """`grep circuit_breaker` and `grep bulkhead_queue` find the series."""

    async def scenario():
        watchlist = Watchlist()
        pipeline = ResiliencePipeline(
            name="tools",
            bulkhead=BulkheadConfig(name="tools"),
            circuit_breaker=CircuitBreaker(name="server"),
        )
        watchlist.watch_pipeline(pipeline)
        lines = exposition(watchlist).splitlines()

        breaker = [line for line in lines if "circuit_breaker" in line]
        queue = [line for line in lines if "bulkhead_queue" in line]

        assert (
            'resilient_mcp_circuit_breaker_state{breaker="server",'
            'state="closed"} 1.0'
        ) in breaker
        assert 'resilient_mcp_bulkhead_queue_depth{bulkhead="tools"} 0.0' in (
            queue
        )
        assert (
            'resilient_mcp_bulkhead_queue_size{bulkhead="tools"} 100.0'
            in queue
        )

    run(scenario)


async def scrape_in_foreign_thread(registry):
    """generate_latest in a thread the event loop knows nothing about."""
    texts = []
    thread = threading.Thread(
        target=lambda: texts.append(generate_latest(registry))
    )
    thread.start()
    await anyio.to_thread.run_sync(thread.join)
    return texts[0]


async def scrape_in_worker_thread(registry):
    """generate_latest in an AnyIO worker thread."""
    return await anyio.to_thread.run_sync(generate_latest, registry)


@pytest.mark.parametrize(
    "scrape_elsewhere", [scrape_in_foreign_thread, scrape_in_worker_thread]
)
def test_reads_from_other_threads_happen_in_the_loop(run, scrape_elsewhere):
    """A scrape from another thread reads the objects in the loop's thread."""

    async def scenario():
        transitions = []
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=1, recovery_timeout=5),
            name="server",
            listeners=[
                lambda _b, _old, new: transitions.append(
                    (new.value, threading.get_ident())
                )
            ],
        )
        # The watchlist remembers the loop it was created in; a foreign
        # thread hands its reads to that loop.
        watchlist = Watchlist()
        watchlist.watch_circuit_breaker(breaker)
        registry = CollectorRegistry()
        registry.register(ResilienceCollector(watchlist))
        await fail_once(breaker)
        await anyio.sleep(5)

        text = await scrape_elsewhere(registry)

        # The breaker reads half-open after its recovery timeout only
        # with the loop's clock (without one it reports the last state it
        # changed to, open), so the read ran in the loop; reading changed
        # nothing, so no listener saw a transition.
        loop_thread = threading.get_ident()
        assert [("open", loop_thread)] == transitions
        assert (
            b'resilient_mcp_circuit_breaker_state{breaker="server",'
            b'state="half_open"} 1.0'
        ) in text

    run(scenario)


def test_read_times_out_when_the_loop_is_blocked(run):
    """A foreign thread gives up when the loop does not answer in time."""

    async def scenario():
        watchlist = Watchlist()
        errors = []

        def read():
            try:
                watchlist.read(timeout=0.05)
            except TimeoutError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()  # blocks the loop on purpose
        # The abandoned read now reaches the loop, which skips it.
        await wait_all_tasks_blocked()

        assert ["the event loop did not answer within 0.05s"] == errors

    run(scenario)


def test_read_after_the_loop_ended_reads_directly(run):
    """Once the loop has finished, the objects are read where asked."""

    async def scenario():
        watchlist = Watchlist()
        breaker = CircuitBreaker(name="server")
        watchlist.watch_circuit_breaker(breaker)
        await fail_once(breaker)
        return watchlist, breaker

    watchlist, breaker = run(scenario)
    never_in_a_loop = Watchlist()
    never_in_a_loop.watch_circuit_breaker(breaker)

    samples = scrape(watchlist)

    assert samples == scrape(never_in_a_loop)

    assert (
        1.0
        == samples[
            (
                "resilient_mcp_circuit_breaker_calls_total",
                L(breaker="server", result="failure"),
            )
        ]
    )
    del breaker


def test_repr_shows_what_is_watched():
    """The reprs say what is watched."""
    watchlist = Watchlist()
    breaker = CircuitBreaker(name="server")
    watchlist.watch_circuit_breaker(breaker)

    assert (
        "<Watchlist 0 pipelines, 1 breakers, 0 bulkheads, "
        "0 retry managers, 0 latency sources>"
    ) == repr(watchlist)
    assert f"<ResilienceCollector {watchlist!r}>" == repr(
        ResilienceCollector(watchlist)
    )
