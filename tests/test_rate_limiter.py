"""The rate limiter: GCRA turns, bursts, waits, holds and accounting."""

from __future__ import annotations

import functools

import anyio
import httpx2
import pytest
import trio
import trio.testing

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from _scenario import ok
from resilient_mcp import (
    BulkheadConfig,
    ConfigurationError,
    Outcome,
    RateLimitedError,
    RateLimiter,
    RateLimiterConfig,
    ResiliencePipeline,
    TemporaryError,
)
from resilient_mcp.instrumentation import Watchlist, serve_metrics
from resilient_mcp.testing import wait_all_tasks_blocked


LIMIT = 10  # seconds the network test may take


async def try_call(pipeline, fn=ok):
    """Call through *pipeline*: the result, or the RateLimitedError."""
    try:
        return await pipeline.call(fn)
    except RateLimitedError as exc:
        return exc


@pytest.mark.parametrize(
    ("rate", "period", "burst", "seconds"),
    [(100.0, 1.0, 1, 10), (8.0, 3.0, 4, 30), (10.0, 1.0, 7, 20)],
)
def test_rate_holds_exactly_over_a_long_run(run, rate, period, burst, seconds):
    """At 3x the rate, exactly rate * duration + burst calls get through."""
    arrivals = int(3 * rate * seconds / period)  # the last one at `seconds`

    async def scenario():
        limiter = RateLimiter(
            RateLimiterConfig(rate=rate, period=period, burst=burst)
        )
        pipeline = ResiliencePipeline(rate_limit=limiter)
        admitted = 0
        for i in range(arrivals + 1):
            await anyio.sleep_until(i * period / (3 * rate))
            if not isinstance(await try_call(pipeline), RateLimitedError):
                admitted += 1
        return admitted, limiter.metrics(), pipeline.metrics()

    admitted, metrics, pipeline_metrics = run(scenario)

    expected = int(rate * seconds / period) + burst
    assert expected == admitted == metrics.admitted
    assert arrivals + 1 - expected == metrics.rejected
    assert metrics.rejected == pipeline_metrics.outcomes[Outcome.RATE_LIMITED]


def test_burst_calls_at_once_then_one_per_interval(run):
    """A burst passes at once, then one per period/rate; idle earns it."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=4, burst=3))
        pipeline = ResiliencePipeline(rate_limit=limiter)
        first = [await try_call(pipeline) for _ in range(4)]
        await anyio.sleep(0.25)
        second = [await try_call(pipeline) for _ in range(2)]
        await anyio.sleep(1.0)  # 4 intervals idle: the burst is back, no more
        third = [await try_call(pipeline) for _ in range(4)]
        return first, second, third

    first, second, third = run(scenario)

    assert ["ok"] * 3 == first[:3]
    assert 0.25 == first[3].retry_after
    assert ["ok"] == second[:1]
    assert 0.25 == second[1].retry_after
    assert ["ok"] * 3 == third[:3]
    assert 0.25 == third[3].retry_after


def test_burst_one_spaces_calls_strictly(run):
    """burst=1: a second call at the same instant waits a whole interval."""

    async def scenario():
        pipeline = ResiliencePipeline(rate_limit=RateLimiterConfig(rate=2))
        return [await try_call(pipeline) for _ in range(2)]

    results = run(scenario)

    assert "ok" == results[0]
    assert 0.5 == results[1].retry_after


def test_rejection_carries_the_exact_retry_after(run):
    """retry_after is the time to the next turn, waiting calls first."""

    async def scenario():
        limiter = RateLimiter(
            RateLimiterConfig(rate=10, burst=2, max_wait=0.15), name="api"
        )
        limiter.enter_nowait(0.0)
        limiter.enter_nowait(0.0)
        early = limiter.retry_after(0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.call, ok)  # waits for its turn at 0.1
            await wait_all_tasks_blocked()
            queued = limiter.retry_after(0.0)
            with pytest.raises(RateLimitedError) as info:
                await limiter.call(ok)  # its turn, 0.2, is beyond 0.15
        return early, queued, info.value, anyio.current_time()

    early, queued, error, end = run(scenario)

    assert 0.05 == early
    assert 0.2 == queued
    assert 0.2 == error.retry_after
    assert "api" == error.name
    assert 0.1 == end


def test_waiters_are_served_in_order_within_max_wait(run):
    """Calls within max_wait wait their turn, first come first served."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=4, max_wait=1.0))
        pipeline = ResiliencePipeline(rate_limit=limiter)
        served = []
        results = {}

        async def one(index):
            async def op():
                served.append((anyio.current_time(), index))
                return index

            results[index] = await try_call(pipeline, op)

        async with anyio.create_task_group() as tg:
            for index in range(6):
                tg.start_soon(one, index)
                await wait_all_tasks_blocked()
            # A call arriving later queues behind the others: 0.25 after
            # the last waiter's turn is beyond its max_wait.
            await anyio.sleep(0.1)
            await one(6)
        return served, results, limiter.metrics(), pipeline.metrics()

    served, results, metrics, pipeline_metrics = run(scenario)

    assert [
        (0.0, 0),
        (0.25, 1),
        (0.5, 2),
        (0.75, 3),
        (1.0, 4),
    ] == served
    assert 1.25 == results[5].retry_after
    assert 1.15 == pytest.approx(results[6].retry_after)
    assert (5, 4, 2, 0, 0) == (
        metrics.admitted,
        metrics.delayed,
        metrics.rejected,
        metrics.cancelled,
        metrics.waiting,
    )
    assert 2 == pipeline_metrics.outcomes[Outcome.RATE_LIMITED]
    assert 5 == pipeline_metrics.outcomes[Outcome.SUCCESS]


@pytest.mark.parametrize("cancelled", ["head", "behind"])
def test_a_cancelled_waiter_gives_its_turn_back(run, cancelled):
    """A waiter cancelled takes no turn: the next call gets it."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=1, max_wait=10))
        pipeline = ResiliencePipeline(rate_limit=limiter)
        served = []

        async def op(name):
            served.append((anyio.current_time(), name))

        await pipeline.call(op, "a")
        scopes = {}

        async def waiter(name):
            with anyio.CancelScope() as scope:
                scopes[name] = scope
                await pipeline.call(op, name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "b")
            await wait_all_tasks_blocked()
            tg.start_soon(waiter, "c")
            await wait_all_tasks_blocked()
            await anyio.sleep(0.5)
            scopes["b" if cancelled == "head" else "c"].cancel()
            await anyio.sleep(0.1)
            tg.start_soon(waiter, "d")
        return served, limiter.metrics(), pipeline.metrics()

    served, metrics, pipeline_metrics = run(scenario)

    kept = "c" if cancelled == "head" else "b"
    assert [(0.0, "a"), (1.0, kept), (2.0, "d")] == served
    assert (3, 2, 0, 1) == (
        metrics.admitted,
        metrics.delayed,
        metrics.rejected,
        metrics.cancelled,
    )
    assert 1 == pipeline_metrics.outcomes[Outcome.CANCELLED]
    assert 3 == pipeline_metrics.outcomes[Outcome.SUCCESS]


async def test_a_rejection_is_a_checkpoint(autojump_clock):
    """A rejection checkpoints; a caller cancelled there is not counted."""
    limiter = RateLimiter(RateLimiterConfig(rate=1))
    pipeline = ResiliencePipeline(rate_limit=limiter)
    await pipeline.call(ok)

    with trio.testing.assert_checkpoints(), pytest.raises(RateLimitedError):
        await pipeline.call(ok)
    with trio.CancelScope() as scope:
        scope.cancel()
        await pipeline.call(ok)

    metrics = limiter.metrics()
    assert (1, 1, 1) == (metrics.admitted, metrics.rejected, metrics.cancelled)
    outcomes = pipeline.metrics().outcomes
    assert 1 == outcomes[Outcome.RATE_LIMITED]
    assert 1 == outcomes[Outcome.CANCELLED]


def test_a_rejected_call_takes_no_bulkhead_slot(run):
    """The rate limit is outside the bulkhead: a rejection never enters it."""

    async def scenario():
        pipeline = ResiliencePipeline(
            name="tools",
            rate_limit=RateLimiterConfig(rate=1, burst=2),
            bulkhead=BulkheadConfig(max_concurrent_requests=1, queue_size=0),
        )
        results = [await try_call(pipeline) for _ in range(3)]
        return results, pipeline.metrics()

    results, metrics = run(scenario)

    assert ["ok", "ok"] == results[:2]
    assert isinstance(results[2], RateLimitedError)
    assert "tools" == results[2].name
    assert (2, 0) == (
        metrics.bulkhead.completed_requests,
        metrics.bulkhead.rejected_requests,
    )
    assert (2, 1, 3) == (
        metrics.successful_requests,
        metrics.failed_requests,
        metrics.total_requests,
    )
    assert 1 == metrics.outcomes[Outcome.RATE_LIMITED]
    assert 2 == metrics.rate_limiter.admitted


def test_one_limiter_shared_by_two_pipelines(run):
    """Pipelines sharing a limiter share its limit, and export it once."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=2), name="server")
        search = ResiliencePipeline(name="search", rate_limit=limiter)
        fetch = ResiliencePipeline(name="fetch", rate_limit=limiter)
        results = [await try_call(search), await try_call(fetch)]
        await anyio.sleep(0.5)
        results.append(await try_call(fetch))
        watchlist = Watchlist()
        watchlist.watch_pipeline(search)
        watchlist.watch_pipeline(fetch)
        return results, search.metrics(), fetch.metrics(), watchlist.read()

    results, search, fetch, reading = run(scenario)

    assert "ok" == results[0]
    assert 0.5 == results[1].retry_after
    assert "ok" == results[2]
    assert search.rate_limiter == fetch.rate_limiter
    assert (2, 1) == (fetch.rate_limiter.admitted, fetch.rate_limiter.rejected)
    assert 1 == fetch.outcomes[Outcome.RATE_LIMITED]
    assert 0 == search.outcomes[Outcome.RATE_LIMITED]
    assert ["server"] == [m.name for _, m in reading.rate_limiters]


def test_a_limiter_watched_on_its_own(run):
    """watch_rate_limiter reports a limiter no watched pipeline has."""

    async def scenario():
        limiter = RateLimiter(name="quota")
        watchlist = Watchlist()
        watchlist.watch_rate_limiter(limiter)
        with pytest.raises(ValueError, match="rate limiter named 'quota'"):
            watchlist.watch_rate_limiter(RateLimiter(name="quota"))
        pipeline = ResiliencePipeline(name="tools", rate_limit=limiter)
        watchlist.watch_pipeline(pipeline)  # the same limiter: once
        await try_call(pipeline)
        first = watchlist.read()
        watchlist.unwatch(pipeline)
        watchlist.unwatch(limiter)
        return first, watchlist.read()

    first, second = run(scenario)

    assert [("quota", 1)] == [
        (m.name, m.admitted) for _, m in first.rate_limiters
    ]
    assert () == second.rate_limiters


def test_hold_keeps_calls_out_then_resumes_at_the_rate(run):
    """hold() (a 429's Retry-After) delays every call, then no burst."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=4, burst=3))
        pipeline = ResiliencePipeline(rate_limit=limiter)

        async def overloaded():
            await anyio.lowlevel.checkpoint()
            raise TemporaryError("429 Too Many Requests", retry_after=5.0)

        # What a user does with a server's 429: feed its Retry-After.
        try:
            await pipeline.call(overloaded)
        except TemporaryError as exc:
            limiter.hold(exc.retry_after)
        held = await try_call(pipeline)
        limiter.hold(1.0)  # shorter than the hold in force: no change
        await anyio.sleep_until(5.0)
        after = [await try_call(pipeline) for _ in range(2)]
        return held, after, limiter.metrics()

    held, after, metrics = run(scenario)

    assert 5.0 == held.retry_after
    assert "ok" == after[0]
    assert 0.25 == after[1].retry_after
    assert 5.0 == metrics.held_until


def test_hold_rejects_waiters_pushed_beyond_max_wait(run):
    """A waiter whose turn a hold moved past its max_wait is rejected."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=4, max_wait=1.0))
        pipeline = ResiliencePipeline(rate_limit=limiter)
        await pipeline.call(ok)
        results = []

        async def waiter():
            results.append(await try_call(pipeline))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()
            await anyio.sleep(0.125)
            limiter.hold(0.5)  # the turn moves from 0.25 to 0.625
            await wait_all_tasks_blocked()
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()
            limiter.hold(5.0)  # beyond both waiters' max_wait
        return results, anyio.current_time(), limiter.metrics()

    results, end, metrics = run(scenario)

    # Both waiters look at their turn again at once: it is beyond
    # max_wait for both, and both learn it at once.
    assert [5.0, 5.0] == [r.retry_after for r in results]
    assert 0.125 == end
    assert (1, 2, 0) == (metrics.admitted, metrics.rejected, metrics.waiting)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("rate", 0.0, "a finite number > 0"),
        ("rate", float("inf"), "a finite number > 0"),
        ("rate", "fast", "a finite number > 0"),
        ("period", -1.0, "a finite number of seconds > 0"),
        ("period", float("nan"), "a finite number of seconds > 0"),
        ("burst", 0, "an integer >= 1"),
        ("burst", 1.5, "an integer >= 1"),
        ("burst", True, "an integer >= 1"),
        ("max_wait", -0.1, "a finite number of seconds >= 0"),
        ("max_wait", None, "a finite number of seconds >= 0"),
    ],
)
def test_config_errors_name_the_field(field, value, rule):
    """An invalid value fails at construction, naming field and rule."""
    with pytest.raises(ConfigurationError) as info:
        RateLimiterConfig(**{field: value})

    assert f"RateLimiterConfig.{field} must be {rule}, got {value!r}" == str(
        info.value
    )


def test_hold_needs_a_finite_number():
    """hold() refuses what is not a finite number of seconds."""
    limiter = RateLimiter()

    with pytest.raises(ValueError, match="finite number"):
        limiter.hold(float("nan"), now=0.0)


def test_prometheus_scrape_shows_the_rate_limiter(real_backend):
    """A real HTTP scrape has the limiter's families, a shared one once."""

    async def scenario():
        # One call per 1000 s: the second call is rejected on any clock.
        limiter = RateLimiter(
            RateLimiterConfig(rate=1, period=1000), name="server"
        )
        watchlist = Watchlist()
        for name in ("search", "fetch"):
            pipeline = ResiliencePipeline(name=name, rate_limit=limiter)
            watchlist.watch_pipeline(pipeline)
            await try_call(pipeline)
            pipelines.append(pipeline)
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                port = await tg.start(
                    functools.partial(serve_metrics, watchlist, port=0)
                )
                async with httpx2.AsyncClient() as client:
                    response = await client.get(
                        f"http://127.0.0.1:{port}/metrics"
                    )
                tg.cancel_scope.cancel()
        return response.text

    pipelines = []
    text = real_backend(scenario)

    samples = [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]
    limiter = [s for s in samples if "rate_limiter" in s[0]]
    assert [
        (
            "resilient_mcp_rate_limiter_calls_total",
            (("rate_limiter", "server"), ("result", "admitted")),
            1.0,
        ),
        (
            "resilient_mcp_rate_limiter_calls_total",
            (("rate_limiter", "server"), ("result", "rejected")),
            1.0,
        ),
        (
            "resilient_mcp_rate_limiter_calls_total",
            (("rate_limiter", "server"), ("result", "cancelled")),
            0.0,
        ),
        (
            "resilient_mcp_rate_limiter_delayed_total",
            (("rate_limiter", "server"),),
            0.0,
        ),
        (
            "resilient_mcp_rate_limiter_waiting",
            (("rate_limiter", "server"),),
            0.0,
        ),
        (
            "resilient_mcp_rate_limiter_store_errors_total",
            (("rate_limiter", "server"),),
            0.0,
        ),
    ] == limiter
    assert (
        "resilient_mcp_requests_total",
        (("operation", "fetch"), ("outcome", "rate_limited")),
        1.0,
    ) in samples


@pytest.fixture(params=["trio", "asyncio"])
def real_backend(request):
    """Run a scenario on each backend, on the real clock."""

    def runner(fn):
        return anyio.run(fn, backend=request.param)

    return runner


def test_opentelemetry_reports_the_rate_limiter(run):
    """An OpenTelemetry reader sees the limiter's instruments."""
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
        InMemoryMetricReader,
    )

    from resilient_mcp.instrumentation import (  # noqa: PLC0415
        instrument_otel_metrics,
    )

    async def scenario():
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        pipeline = ResiliencePipeline(
            name="tools", rate_limit=RateLimiterConfig(rate=1, max_wait=5)
        )
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        instrument_otel_metrics(watchlist, meter_provider=provider)
        await pipeline.call(ok)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.call, ok)  # waits 1 s for its turn
            await wait_all_tasks_blocked()
            # Collected in the loop's thread: a reader thread would let
            # the virtual clock run on meanwhile.
            waiting = points(reader)
        after = points(reader)
        provider.shutdown()
        return waiting, after

    waiting, after = run(scenario)

    name = (("rate_limiter", "tools"),)
    assert 1 == waiting[("resilient_mcp.rate_limiter.waiting", name)]
    assert 0 == after[("resilient_mcp.rate_limiter.waiting", name)]
    assert 1 == after[("resilient_mcp.rate_limiter.delayed", name)]
    admitted = (("rate_limiter", "tools"), ("result", "admitted"))
    assert 2 == after[("resilient_mcp.rate_limiter.calls", admitted)]


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


def test_config_defaults_and_timedelta_durations():
    """The defaults are the issue's; durations may be timedeltas."""
    from datetime import timedelta  # noqa: PLC0415

    default = RateLimiterConfig()
    config = RateLimiterConfig(
        rate=5, period=timedelta(minutes=1), max_wait=timedelta(seconds=2)
    )

    assert (100.0, 1.0, 1, 0.0) == (
        default.rate,
        default.period,
        default.burst,
        default.max_wait,
    )
    assert (5.0, 60.0, 2.0) == (config.rate, config.period, config.max_wait)


@given(
    rate=st.integers(1, 50),
    burst=st.integers(1, 8),
    gaps=st.lists(st.integers(0, 40), min_size=1, max_size=60),
)
def test_no_window_holds_more_than_its_share(rate, burst, gaps):
    """In any window of d seconds at most d * rate + burst calls pass."""
    limiter = RateLimiter(RateLimiterConfig(rate=rate, burst=burst))
    interval = 1 / rate
    now, admitted, told = 0.0, [], []
    for gap in gaps:
        now += gap / 64  # exact binary fractions of a second
        try:
            limiter.enter_nowait(now)
        except RateLimitedError as exc:
            told.append((now, exc.retry_after, limiter.retry_after(now)))
            # The turn it was told of: a call then would conform.
            told.append((now, 0.0, limiter.retry_after(now + exc.retry_after)))
        else:
            admitted.append(now)

    for _, expected, actual in told:
        assert expected == pytest.approx(actual, abs=1e-12)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            window = admitted[j] - start
            assert j - i + 1 <= window / interval + burst + 1e-9


def test_repr_shows_the_live_state(run):
    """The limiter's repr shows its rate and counts; the pipeline's, it."""

    async def scenario():
        limiter = RateLimiter(RateLimiterConfig(rate=2, burst=1), name="api")
        pipeline = ResiliencePipeline(name="search", rate_limit=limiter)
        await try_call(pipeline)
        await try_call(pipeline)
        return repr(limiter), repr(pipeline), limiter.retry_after()

    limiter, pipeline, retry_after = run(scenario)

    expected = (
        "<RateLimiter 'api': 2/1s, burst 1, 0 waiting, 1 admitted, 1 rejected>"
    )
    assert expected == limiter
    assert pipeline.startswith(
        f"<ResiliencePipeline 'search' rate_limit={expected}, bulkhead=None"
    )
    assert 0.5 == retry_after
