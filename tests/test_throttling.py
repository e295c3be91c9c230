"""
Client-side adaptive throttling (issue 13, item 5), in virtual time.

The throttle rejects a call with probability
``max(0, (requests - k * accepts) / (requests + 1))`` over its window
(the Google SRE book, "Handling Overload").  The backends here are
simulated: seeded async functions that accept or refuse.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import random

import anyio
import httpx2
import pytest
import trio
import trio.testing

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from _scenario import Script, ok, sleep_then
from resilient_mcp import (
    AdaptiveThrottle,
    BulkheadConfig,
    ConfigurationError,
    Outcome,
    PermanentError,
    ResilienceError,
    ResiliencePipeline,
    RetryConfig,
    TemporaryError,
    ThrottledError,
    ThrottlingConfig,
    ThrottlingMetrics,
)
from resilient_mcp.instrumentation import (
    Watchlist,
    instrument_otel_metrics,
    serve_metrics,
)
from resilient_mcp.testing import run_virtual, wait_all_tasks_blocked


def formula(requests, accepts, k):
    """The SRE book's client-side rejection probability."""
    return max(0.0, (requests - k * accepts) / (requests + 1))


class Fixed(random.Random):
    """A random source that always draws *value*."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        """The fixed draw."""
        return self.value


NEVER = 1.0  # a draw no probability exceeds: never rejects
ALWAYS = 0.0  # a draw below any probability > 0: rejects whenever p > 0


def drive(throttle, requests, accepts, now=0.0):
    """*requests* calls at *now*, the first *accepts* of them accepted."""
    for i in range(requests):
        permit = throttle.enter_nowait(now)
        error = None if i < accepts else TemporaryError("refused")
        throttle.leave(permit, now, 0.0, error)


async def refused():
    """A backend answer that is not an accept."""
    await anyio.lowlevel.checkpoint()
    raise TemporaryError("overloaded")


@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize(
    ("requests", "accepts"),
    [(0, 0), (1, 0), (10, 0), (10, 3), (10, 5), (10, 10), (57, 19)],
)
def test_probability_is_the_formula(requests, accepts, k):
    """After r requests and a accepts, p is max(0, (r - k a) / (r + 1))."""
    throttle = AdaptiveThrottle(ThrottlingConfig(k=k), rng=Fixed(NEVER))

    drive(throttle, requests, accepts)
    metrics = throttle.metrics()

    assert (requests, accepts) == (metrics.requests, metrics.accepts)
    assert formula(requests, accepts, k) == metrics.rejection_probability
    assert formula(requests, accepts, k) == throttle.probability()
    assert 0 == metrics.throttled


@pytest.mark.parametrize("draw", [0.0, 0.3, 0.6, 0.9])
def test_a_call_is_rejected_iff_the_draw_is_below_p(draw):
    """The draw decides: rejected when it is below the probability."""
    rng = Fixed(NEVER)
    throttle = AdaptiveThrottle(rng=rng, name="svc")
    drive(throttle, 11, 1)
    p = formula(11, 1, 2.0)
    rng.value = draw

    if draw < p:
        with pytest.raises(ThrottledError) as info:
            throttle.enter_nowait(0.0)
        assert p == info.value.probability
        assert "svc" == info.value.name
        assert 1 == throttle.metrics().throttled
    else:
        throttle.enter_nowait(0.0)
        assert 0 == throttle.metrics().throttled
    assert 12 == throttle.metrics().requests


def test_no_throttling_while_the_backend_accepts(run):
    """With k * accepts >= requests all along, nothing is ever dropped."""

    async def scenario():
        throttle = AdaptiveThrottle(ThrottlingConfig(seed=1), rng=None)
        pipeline = ResiliencePipeline(throttling=throttle, name="svc")
        # Two accepted calls, one refused: requests <= 2 * accepts always.
        for i in range(3000):
            with contextlib.suppress(TemporaryError):
                await pipeline.call(refused if i % 3 == 2 else ok)
            assert 0.0 == throttle.metrics().rejection_probability
            await anyio.sleep(0.1)

        metrics = throttle.metrics()
        assert 0 == metrics.throttled
        assert 0 == pipeline.metrics().outcomes[Outcome.THROTTLED]
        assert (3000, 2000) == (metrics.total_requests, metrics.total_accepts)

    run(scenario)


def test_converges_to_the_formula_against_a_server_refusing_75_percent(run):
    """
    Over many calls, the local rejections match the formula's probability.

    Each decision is a draw with the probability p_i the formula gives for
    the window at that moment (read by the test from the counts), so the
    number of rejections has mean sum(p_i) and variance sum(p_i (1 - p_i))
    however p_i moved (a martingale); the test allows 4 standard
    deviations.  The server refuses each call it receives with
    probability 0.75, whatever the load: accepts are then too few for
    any share of the requests, and the throttle ends up sending a trickle.
    """

    async def scenario():
        k, window, calls = 2.0, 10.0, 3000
        server = random.Random(75)
        received = accepted = 0

        async def backend():
            nonlocal received, accepted
            received += 1
            await anyio.lowlevel.checkpoint()
            if server.random() < 0.75:
                raise TemporaryError("overloaded")
            accepted += 1

        throttle = AdaptiveThrottle(
            ThrottlingConfig(k=k, window=window, buckets=10, seed=5),
            name="svc",
        )
        pipeline = ResiliencePipeline(throttling=throttle, name="svc")
        probabilities, rejected = [], 0
        for _ in range(calls):
            before = throttle.metrics()
            p = formula(before.requests, before.accepts, k)
            assert p == before.rejection_probability
            probabilities.append(p)
            try:
                await pipeline.call(backend)
            except ThrottledError as exc:
                seen = exc.probability
                rejected += 1
                assert p == seen
            except TemporaryError:
                pass
            await anyio.sleep(0.1)

        mean = sum(probabilities)
        sigma = math.sqrt(sum(p * (1 - p) for p in probabilities))
        assert abs(rejected - mean) <= 4 * sigma
        # Most calls never reached the overloaded server.
        assert calls - rejected == received
        assert received < calls * 0.1
        metrics = throttle.metrics()
        assert rejected == metrics.throttled
        assert accepted == metrics.total_accepts
        assert rejected == pipeline.metrics().outcomes[Outcome.THROTTLED]

    run(scenario)


def test_recovers_once_the_window_has_passed(run):
    """The refusals leave the window after `window` seconds: p is 0."""

    async def scenario():
        throttle = AdaptiveThrottle(
            ThrottlingConfig(window=60.0, buckets=60), rng=Fixed(NEVER)
        )
        pipeline = ResiliencePipeline(throttling=throttle)
        for _ in range(20):
            with pytest.raises(TemporaryError):
                await pipeline.call(refused)
        await anyio.sleep(59.5)  # the window holds buckets 0 .. 59

        assert formula(20, 0, 2.0) == throttle.metrics().rejection_probability

        await anyio.sleep(0.5)  # at 60.0 bucket 0 leaves the window

        assert 60.0 == anyio.current_time()
        metrics = throttle.metrics()
        assert (0, 0, 0.0) == (
            metrics.requests,
            metrics.accepts,
            metrics.rejection_probability,
        )
        # Calls flow again (a draw of 0 would reject any p > 0).
        fresh = AdaptiveThrottle(
            ThrottlingConfig(window=60.0, buckets=60), rng=Fixed(ALWAYS)
        )
        pipeline = ResiliencePipeline(throttling=fresh)
        with pytest.raises(TemporaryError):
            await pipeline.call(refused)
        with pytest.raises(ThrottledError):
            await pipeline.call(ok)
        await anyio.sleep(60.0)
        assert "ok" == await pipeline.call(ok)

    run(scenario)


def test_outcomes_are_counted_once_after_the_retries(run):
    """The throttle sees each call's final outcome; one outcome per call."""

    async def scenario():
        throttle = AdaptiveThrottle(rng=Fixed(ALWAYS), name="svc")
        pipeline = ResiliencePipeline(
            throttling=throttle,
            bulkhead=BulkheadConfig(max_concurrent_requests=1, queue_size=0),
            retry=RetryConfig(max_attempts=3, jitter=False),
            name="svc",
        )
        # Two failed attempts, then a success: one request, one accept.
        flaky = Script(TemporaryError("a"), TemporaryError("b"), "ok")
        assert "ok" == await pipeline.call(flaky)
        assert 3 == flaky.calls
        # A bad request the backend answered is an accept.
        with pytest.raises(PermanentError):
            await pipeline.call(Script(PermanentError(400, "bad")))
        # Refused on every attempt: a request, no accept.
        with pytest.raises(TemporaryError):
            await pipeline.call(refused)
        metrics = throttle.metrics()
        assert (3, 2) == (metrics.requests, metrics.accepts)
        # 3 - 2 * 2 < 0: not throttled.  Two more refusals: p = 1 / 6.
        for _ in range(2):
            with pytest.raises(TemporaryError):
                await pipeline.call(refused)
        bulkhead = pipeline.bulkhead
        assert bulkhead is not None
        completed = bulkhead.metrics().completed_requests
        with pytest.raises(ThrottledError):
            await pipeline.call(ok)

        outcomes = pipeline.metrics().outcomes
        assert 1 == outcomes[Outcome.THROTTLED]
        assert 1 == throttle.metrics().throttled
        # A dropped call takes no bulkhead slot.
        assert completed == bulkhead.metrics().completed_requests
        assert 0 == bulkhead.metrics().rejected_requests
        total = pipeline.metrics().total_requests
        assert total == throttle.metrics().total_requests == 6
        assert pipeline.metrics().throttling == throttle.metrics()

    run(scenario)


def test_a_full_bulkhead_is_not_an_accept(run):
    """A call the bulkhead inside the throttle rejects counts no accept."""

    async def scenario():
        throttle = AdaptiveThrottle(rng=Fixed(NEVER))
        pipeline = ResiliencePipeline(
            throttling=throttle,
            bulkhead=BulkheadConfig(max_concurrent_requests=1, queue_size=0),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.call, sleep_then, 1.0)
            await wait_all_tasks_blocked()
            with pytest.raises(ResilienceError):
                await pipeline.call(ok)

        metrics = throttle.metrics()
        assert (2, 1) == (metrics.requests, metrics.accepts)
        assert 1 == pipeline.metrics().outcomes[Outcome.BULKHEAD_FULL]

    run(scenario)


def test_a_shared_throttle_judges_two_pipelines_as_one(run):
    """Refusals through one pipeline throttle the other."""

    async def scenario():
        throttle = AdaptiveThrottle(rng=Fixed(ALWAYS), name="server")
        tools = ResiliencePipeline(throttling=throttle, name="tools")
        prompts = ResiliencePipeline(throttling=throttle, name="prompts")
        with pytest.raises(TemporaryError):
            await tools.call(refused)
        with pytest.raises(ThrottledError):
            await prompts.call(ok)

        assert tools.throttling is prompts.throttling is throttle
        assert (2, 0, 1) == (
            throttle.metrics().requests,
            throttle.metrics().accepts,
            throttle.metrics().throttled,
        )
        assert 1 == prompts.metrics().outcomes[Outcome.THROTTLED]
        assert 0 == tools.metrics().outcomes[Outcome.THROTTLED]

    run(scenario)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("k", 0.5, "a finite number >= 1"),
        ("k", 0.0, "a finite number >= 1"),
        ("k", math.inf, "a finite number >= 1"),
        ("k", "2", "a finite number >= 1"),
        ("window", 0.0, "a finite number of seconds > 0"),
        ("window", math.inf, "a finite number of seconds > 0"),
        ("window", None, "a finite number of seconds > 0"),
        ("buckets", 0, "an integer >= 1"),
        ("buckets", 2.5, "an integer >= 1"),
        ("seed", "x", "an integer or None"),
        ("seed", True, "an integer or None"),
        ("is_accepted", 3, "a callable or None"),
    ],
)
def test_config_errors_name_the_field(field, value, rule):
    """An invalid value fails at construction, naming field and rule."""
    with pytest.raises(ConfigurationError) as info:
        ThrottlingConfig(**{field: value})

    assert f"ThrottlingConfig.{field} must be {rule}, got {value!r}" == str(
        info.value
    )


def test_config_defaults_and_timedelta():
    """The SRE book's defaults: k = 2 over two minutes, 1 s buckets."""
    from datetime import timedelta  # noqa: PLC0415

    config = ThrottlingConfig(window=timedelta(minutes=1))

    assert (2.0, 60.0, 120, None, None) == (
        ThrottlingConfig().k,
        config.window,
        config.buckets,
        config.seed,
        config.is_accepted,
    )
    assert 120.0 == ThrottlingConfig().window


def test_a_cancelled_call_is_neither_request_nor_accept(run):
    """Cancelled while running, or at its rejection: counted as neither."""

    async def scenario():
        throttle = AdaptiveThrottle(rng=Fixed(ALWAYS))
        pipeline = ResiliencePipeline(throttling=throttle)
        with anyio.move_on_after(1.0):
            await pipeline.call(sleep_then, 5.0)
        assert (0, 0, 1) == (
            throttle.metrics().requests,
            throttle.metrics().accepts,
            throttle.metrics().cancelled,
        )
        with pytest.raises(TemporaryError):
            await pipeline.call(refused)
        # p = 1 / 2 now: the next call is rejected, but its caller is
        # cancelled at the rejection's checkpoint and gets Cancelled.
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pipeline.call(ok)

        metrics = throttle.metrics()
        assert scope.cancelled_caught
        assert (1, 0, 0, 2) == (
            metrics.requests,
            metrics.accepts,
            metrics.throttled,
            metrics.cancelled,
        )
        assert 3 == metrics.total_requests
        outcomes = pipeline.metrics().outcomes
        assert (2, 0) == (
            outcomes[Outcome.CANCELLED],
            outcomes[Outcome.THROTTLED],
        )

    run(scenario)


def test_a_cancelled_call_that_left_the_window_changes_nothing(run):
    """A call cancelled after its request left the window takes none back."""

    async def scenario():
        throttle = AdaptiveThrottle(
            ThrottlingConfig(window=10.0, buckets=10), rng=Fixed(NEVER)
        )
        pipeline = ResiliencePipeline(throttling=throttle)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.call, sleep_then, 100.0)
            await anyio.sleep(50.0)
            drive(throttle, 3, 0, now=anyio.current_time())
            tg.cancel_scope.cancel()

        assert (3, 1) == (
            throttle.metrics().requests,
            throttle.metrics().cancelled,
        )

    run(scenario)


async def test_every_rejection_is_a_checkpoint():
    """A dropped call makes a full checkpoint before ThrottledError."""
    throttle = AdaptiveThrottle(rng=Fixed(ALWAYS))
    with pytest.raises(TemporaryError):
        await throttle.call(refused)
    for _ in range(3):
        with (
            trio.testing.assert_checkpoints(),
            pytest.raises(ThrottledError),
        ):
            await throttle.call(ok)


def test_is_accepted_decides_which_errors_are_accepts(run):
    """A config's is_accepted counts the errors it names as accepts."""

    async def scenario():
        throttle = AdaptiveThrottle(
            ThrottlingConfig(is_accepted=lambda e: isinstance(e, KeyError)),
            rng=Fixed(NEVER),
        )
        for error in (KeyError("x"), PermanentError(1, "x"), ValueError()):
            with pytest.raises(type(error)):
                await throttle.call(Script(error))

        assert (3, 1) == (
            throttle.metrics().requests,
            throttle.metrics().accepts,
        )

    run(scenario)


def test_a_seed_makes_the_rejections_reproducible():
    """Two throttles with one seed drop the same calls."""

    def pattern():
        throttle = AdaptiveThrottle(ThrottlingConfig(seed=42))
        out = []
        for i in range(200):
            try:
                permit = throttle.enter_nowait(i * 0.1)
            except ThrottledError:
                out.append(1)
            else:
                out.append(0)
                throttle.leave(permit, i * 0.1, 0.0, TemporaryError("no"))
        return out

    first = pattern()

    assert first == pattern()
    assert 0 < sum(first) < 200


def test_memory_is_the_ring_whatever_the_gap():
    """A call after a long silence empties the ring in one pass."""
    throttle = AdaptiveThrottle(
        ThrottlingConfig(window=1.0, buckets=4), rng=Fixed(NEVER)
    )
    drive(throttle, 5, 1, now=0.0)
    drive(throttle, 2, 0, now=1e9)

    metrics = throttle.metrics()

    assert (2, 0) == (metrics.requests, metrics.accepts)
    assert (7, 1) == (metrics.total_requests, metrics.total_accepts)


def test_a_clock_a_window_behind_starts_the_window_over():
    """Another loop's clock, far behind: the old counts are dropped."""
    throttle = AdaptiveThrottle(
        ThrottlingConfig(window=10.0, buckets=10), rng=Fixed(NEVER)
    )
    drive(throttle, 5, 0, now=1e6)
    drive(throttle, 1, 1, now=1e6 - 5.0)  # a little behind: same window
    drive(throttle, 2, 1, now=3.0)

    metrics = throttle.metrics()

    assert (2, 1) == (metrics.requests, metrics.accepts)
    assert (8, 2) == (metrics.total_requests, metrics.total_accepts)


def test_metrics_outside_an_event_loop_and_repr():
    """Outside a loop the window reads as of the last call; repr shows it."""
    throttle = AdaptiveThrottle(name="svc", rng=Fixed(NEVER))
    drive(throttle, 4, 1)

    assert isinstance(throttle.metrics(), ThrottlingMetrics)
    assert formula(4, 1, 2.0) == throttle.metrics().rejection_probability
    assert (
        "<AdaptiveThrottle 'svc': 4 requests, 1 accepts in the window, "
        "0 throttled>" == repr(throttle)
    )
    assert "throttling=<AdaptiveThrottle 'svc'" in repr(
        ResiliencePipeline(throttling=throttle)
    )


def test_the_pipeline_names_a_throttle_made_from_a_config():
    """A config becomes a throttle named after the pipeline."""
    pipeline = ResiliencePipeline(throttling=ThrottlingConfig(), name="x")

    assert isinstance(pipeline.throttling, AdaptiveThrottle)
    assert "x" == pipeline.throttling.name
    assert ResiliencePipeline().metrics().throttling is None


def test_throttled_error_by_keyword_formats_and_pickles():
    """ThrottledError is a ResilienceError built by keyword; it pickles."""
    error = ThrottledError(name="svc", probability=0.25)

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)

    assert isinstance(error, ResilienceError)
    assert (
        "Adaptive throttle 'svc' rejected the call locally "
        "(rejection probability 0.25)" == str(copy)
    )
    assert vars(error) == vars(copy)


async def _refuse_then_throttle(throttle):
    """Two pipelines share *throttle*: one refusal, then one drop."""
    first = ResiliencePipeline(throttling=throttle, name="tools")
    second = ResiliencePipeline(throttling=throttle, name="prompts")
    with pytest.raises(TemporaryError):
        await first.call(refused)
    with pytest.raises(ThrottledError):
        await second.call(ok)
    watchlist = Watchlist()
    watchlist.watch_pipeline(first)
    watchlist.watch_pipeline(second)
    return watchlist, (first, second)  # watched weakly: keep them alive


@pytest.mark.parametrize("backend_name", ["trio", "asyncio"])
def test_prometheus_scrape_over_http_shows_the_families(backend_name):
    """A real scrape shows a shared throttle's series, once."""

    async def scenario():
        throttle = AdaptiveThrottle(rng=Fixed(ALWAYS), name="server")
        watchlist, pipelines = await _refuse_then_throttle(throttle)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                port = await tg.start(
                    functools.partial(serve_metrics, watchlist, port=0)
                )
                async with httpx2.AsyncClient() as client:
                    response = await client.get(
                        f"http://127.0.0.1:{port}/metrics"
                    )
                tg.cancel_scope.cancel()
        del pipelines
        return response

    response = anyio.run(scenario, backend=backend_name)

    assert 200 == response.status_code
    samples = [
        (s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(response.text)
        for s in f.samples
        if s.name.startswith("resilient_mcp_throttling")
    ]
    server = {"throttle": "server"}
    assert [
        ("resilient_mcp_throttling_requests_total", server, 2.0),
        ("resilient_mcp_throttling_accepts_total", server, 0.0),
        ("resilient_mcp_throttling_throttled_total", server, 1.0),
        ("resilient_mcp_throttling_cancelled_total", server, 0.0),
        ("resilient_mcp_throttling_rejection_probability", server, 2 / 3),
    ] == samples
    assert (
        'resilient_mcp_requests_total{operation="prompts",outcome="throttled"}'
        " 1.0"
    ) in response.text


def test_opentelemetry_reports_the_throttle(run):
    """The throttle's series come out of an OpenTelemetry reader too."""

    async def scenario():
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        throttle = AdaptiveThrottle(rng=Fixed(ALWAYS), name="server")
        watchlist, pipelines = await _refuse_then_throttle(throttle)
        instrument_otel_metrics(watchlist, meter_provider=provider)

        data = await anyio.to_thread.run_sync(reader.get_metrics_data)
        del pipelines
        points = {
            metric.name: [
                (dict(p.attributes), p.value) for p in metric.data.data_points
            ]
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name.startswith("resilient_mcp.throttling")
        }
        provider.shutdown()

        server = {"throttle": "server"}
        assert {
            "resilient_mcp.throttling.requests": [(server, 2)],
            "resilient_mcp.throttling.accepts": [(server, 0)],
            "resilient_mcp.throttling.throttled": [(server, 1)],
            "resilient_mcp.throttling.cancelled": [(server, 0)],
            "resilient_mcp.throttling.rejection_probability": [
                (server, 2 / 3)
            ],
        } == points

    run(scenario)


def test_watch_throttle_directly_and_names_stay_unique():
    """A throttle can be watched alone; two of one name clash."""
    watchlist = Watchlist()
    throttle = AdaptiveThrottle(name="server")
    watchlist.watch_throttle(throttle)
    watchlist.watch_throttle(throttle)

    with pytest.raises(ValueError, match="throttle named 'server'"):
        watchlist.watch_pipeline(
            ResiliencePipeline(throttling=AdaptiveThrottle(name="server"))
        )
    reading = run_virtual(_read, watchlist)
    assert [throttle] == [t for t, _ in reading.throttles]


async def _read(watchlist):
    """A reading taken in the event loop."""
    return watchlist.read()
