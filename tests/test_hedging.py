"""
Hedged requests (issue 13, item 3), in virtual time, on trio and asyncio.

The operations are simulated servers: async functions that take a
scripted (virtual) time to answer, and record when they start and
whether they were cancelled.
"""

from __future__ import annotations

import datetime as dt
import math

import anyio
import pytest

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _scenario import Boom
from resilient_mcp import (
    BulkheadConfig,
    CallTimeout,
    CircuitBreakerConfig,
    ConfigurationError,
    Hedging,
    HedgingConfig,
    HedgingMetrics,
    Outcome,
    ResiliencePipeline,
    RetryConfig,
)
from resilient_mcp.instrumentation import (
    ResilienceCollector,
    Watchlist,
    instrument_otel_metrics,
)


class Server:
    """
    A simulated server: the n-th request takes ``latencies(n)`` seconds.

    A latency that is an exception instance is raised after one second.
    ``starts`` holds when each request began, ``cancelled`` the indexes of
    the requests whose caller went away, ``answered`` those that answered.
    """

    def __init__(self, latencies):
        self.latencies = latencies
        self.starts: list[float] = []
        self.cancelled: list[int] = []
        self.answered: list[int] = []

    async def __call__(self) -> object:
        index = len(self.starts)
        self.starts.append(anyio.current_time())
        latency = self.latencies(index)
        try:
            if isinstance(latency, BaseException):
                await anyio.sleep(1.0)
                raise latency
            await anyio.sleep(latency)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(index)
            raise
        self.answered.append(index)
        return index


def pipeline(**config) -> ResiliencePipeline:
    """A pipeline with hedging only, configured by *config*."""
    return ResiliencePipeline(hedging=HedgingConfig(**config), name="h")


def test_hedge_fires_after_the_delay_and_the_first_answer_wins(run):
    """A slow request gets a hedge, which wins; the original is cancelled."""
    server = Server(lambda n: [10.0, 1.0][n])
    p = pipeline(delay=2.0)

    async def main():
        result = await p.call(server)
        return result, anyio.current_time()

    assert (1, 3.0) == run(main)
    assert [0.0, 2.0] == server.starts
    assert [0] == server.cancelled
    assert [1] == server.answered
    m = p.metrics().hedging
    assert (1, 1, 1, 1, 1) == (
        m.calls,
        m.hedged_calls,
        m.hedges,
        m.hedge_wins,
        m.cancelled_attempts,
    )
    assert 1 == p.metrics().outcomes[Outcome.SUCCESS]
    assert 1 == p.metrics().total_requests


def test_an_answer_within_the_delay_is_never_hedged(run):
    """A request that answers before the delay costs no extra request."""
    server = Server(lambda _: 1.5)
    p = pipeline(delay=2.0)

    async def main():
        for _ in range(5):
            await p.call(server)
        return anyio.current_time()

    assert 7.5 == run(main)
    assert 5 == len(server.starts)
    assert 0 == p.metrics().hedging.hedges


def test_the_original_request_may_still_win(run):
    """A hedge that is slower still loses to its original, and is cancelled."""
    server = Server(lambda n: [3.0, 5.0][n])
    p = pipeline(delay=2.0)

    assert 0 == run(p.call, server)
    assert [1] == server.cancelled
    m = p.metrics().hedging
    assert (1, 0, 1) == (m.hedges, m.hedge_wins, m.cancelled_attempts)


def test_a_failed_attempt_waits_for_the_other(run):
    """
    A failed attempt waits for the other, whose success is the answer.

    An attempt that fails while another runs does not end the call
    (Polly's rule).
    """
    server = Server(lambda n: [Boom("first"), 2.0][n])
    p = pipeline(delay=0.5)

    async def main():
        result = await p.call(server)
        return result, anyio.current_time()

    # The hedge starts at 0.5 and answers at 2.5; the first fails at 1.0.
    assert (1, 2.5) == run(main)
    assert 1 == p.metrics().outcomes[Outcome.SUCCESS]


def test_when_every_attempt_fails_the_last_error_propagates(run):
    """No attempt succeeds: the call raises the error that came last."""
    server = Server(lambda n: [Boom("first"), Boom("second")][n])
    p = pipeline(delay=0.5)

    with pytest.raises(Boom, match="second"):
        run(p.call, server)
    assert 1 == p.metrics().outcomes[Outcome.ERROR]
    assert 1 == p.metrics().total_requests


def test_a_failure_before_the_delay_is_not_hedged(run):
    """An error before the delay ends the call at once: retries handle it."""
    server = Server(lambda _: Boom("fast"))
    p = pipeline(delay=5.0)

    with pytest.raises(Boom):
        run(p.call, server)
    assert 1 == len(server.starts)
    assert 0 == p.metrics().hedging.hedges


def test_the_retry_sees_one_result(run):
    """Two failed hedged attempts are one failed attempt to the retry."""
    server = Server(lambda n: Boom(str(n)) if n < 2 else 0.1)
    p = ResiliencePipeline(
        hedging=HedgingConfig(delay=0.5),
        retry=RetryConfig(
            max_attempts=2,
            initial_delay=1.0,
            jitter=False,
            is_retryable=lambda exc: isinstance(exc, Boom),
        ),
    )

    assert 2 == run(p.call, server)
    assert 1 == p.metrics().retry.retried_calls
    assert 1 == p.metrics().outcomes[Outcome.SUCCESS]


def test_each_hedged_attempt_goes_through_the_breaker_and_timeout(run):
    """The attempt policies judge each hedged attempt on its own."""
    server = Server(lambda n: [10.0, 1.0][n])
    p = ResiliencePipeline(
        hedging=HedgingConfig(delay=2.0),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
        timeout=4.0,
    )

    assert 1 == run(p.call, server)
    breaker = p.metrics().circuit_breaker
    # Two attempts entered the breaker: the hedge succeeded, and the
    # loser was cancelled (at 3 s, before its 4 s timeout), no failure.
    assert (2, 1, 1, 0) == (
        breaker.total_requests,
        breaker.total_successes,
        breaker.cancelled_requests,
        breaker.total_failures,
    )


def test_each_hedge_is_timed_from_its_own_start(run):
    """The per-attempt timeout counts from each hedged attempt's start."""
    server = Server(lambda _: math.inf)
    p = ResiliencePipeline(hedging=HedgingConfig(delay=2.0), timeout=4.0)

    async def main():
        with pytest.raises(CallTimeout):
            await p.call(server)
        return anyio.current_time()

    # The first attempt times out at 4 s, while its hedge (from 2 s) runs
    # on; the hedge times out at 6 s: its timeout is the call's error.
    assert 6.0 == run(main)
    assert [0.0, 2.0] == server.starts
    assert 1 == p.metrics().outcomes[Outcome.TIMEOUT]


def test_the_calls_deadline_ends_every_attempt(run):
    """The bulkhead's request_timeout ends the hedged call: a timeout."""
    server = Server(lambda _: math.inf)
    p = ResiliencePipeline(
        hedging=HedgingConfig(delay=1.0),
        bulkhead=BulkheadConfig(name="b", request_timeout=3.0),
    )

    async def main():
        with pytest.raises(CallTimeout):
            await p.call(server)
        return anyio.current_time()

    assert 3.0 == run(main)
    assert [0.0, 1.0] == server.starts
    assert [0, 1] == sorted(server.cancelled)
    assert 1 == p.metrics().outcomes[Outcome.TIMEOUT]


def test_a_cancelled_caller_cancels_every_attempt(run):
    """Cancelling the caller cancels the original and its hedges alike."""
    server = Server(lambda _: math.inf)
    p = pipeline(delay=1.0, max_hedged_attempts=2)

    async def main():
        with anyio.move_on_after(5.0) as scope:
            await p.call(server)
        return scope.cancelled_caught, anyio.current_time()

    assert (True, 5.0) == run(main)
    assert [0.0, 1.0, 2.0] == server.starts
    assert [0, 1, 2] == sorted(server.cancelled)
    m = p.metrics()
    assert 1 == m.cancelled_requests
    assert 0 == m.failed_requests
    assert 2 == m.hedging.hedges


def test_delay_from_the_percentile(run):
    """
    The delay is the percentile of recent answers; too few, no hedge.

    Without a fixed delay, the delay is the configured percentile of the
    recent answers.
    """
    server = Server(lambda n: 0.01 * (n % 100 + 1))
    # No budget: nothing is hedged, every request answers in its latency.
    p = pipeline(
        percentile=0.9,
        min_samples=20,
        window=1000.0,
        budget_percent=0.0,
        min_hedges_per_second=0.0,
    )

    async def main():
        for _ in range(19):
            await p.call(server)
        before = p.metrics().hedging.delay
        # Read every 16 answers after the 20th: at 212, the 191st of the
        # 212 answers is 0.90 s.
        for _ in range(212 - 19):
            await p.call(server)
        return before, p.metrics().hedging.delay

    before, after = run(main)

    assert before is None
    assert 0.9 == pytest.approx(after, rel=0.001)
    assert 0 == p.metrics().hedging.hedges
    assert 0 < p.metrics().hedging.budget_rejections


def test_budget_caps_hedges_over_many_calls(run):
    """
    Without a reserve, hedges stay within budget_percent of the calls.

    The hedges the budget refused are counted.
    """
    # Every tenth request is slow: twice as many hedges as the budget.
    server = Server(lambda n: 5.0 if n % 10 == 0 else 0.1)
    p = pipeline(delay=1.0, budget_percent=0.05, min_hedges_per_second=0.0)
    calls = 2000

    async def main():
        async with anyio.create_task_group() as tasks:
            for _ in range(calls):
                tasks.start_soon(p.call, server)
                await anyio.sleep(0.01)

    run(main)
    m = p.metrics().hedging

    assert calls == m.calls
    assert 0 < m.hedges <= 0.05 * calls
    assert m.hedges > 0.04 * calls
    assert 0 < m.budget_rejections
    assert calls + m.hedges == len(server.starts)


def test_a_call_the_budget_refused_asks_again_one_delay_later(run):
    """A refused hedge is asked for again at the next delay, and made."""
    server = Server(lambda n: [5.0, 0.1, 0.1][n])
    # Two calls' deposits pay for one hedge; there is no reserve.
    p = pipeline(delay=1.0, budget_percent=0.5, min_hedges_per_second=0.0)
    answers = {}

    async def call(name):
        await p.call(server)
        answers[name] = anyio.current_time()

    async def main():
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call, "slow")
            await anyio.sleep(1.5)
            tasks.start_soon(call, "quick")

    run(main)
    m = p.metrics().hedging

    assert [0.0, 1.5, 2.0] == server.starts
    assert {"slow": 2.1, "quick": 1.6} == pytest.approx(answers)
    assert (1, 1, 1) == (m.budget_rejections, m.hedges, m.hedge_wins)


def test_a_broad_slowdown_is_not_hedged(run):
    """When most recent calls outlive the delay, hedging stops."""
    server = Server(lambda _: 5.0)
    p = pipeline(delay=1.0, budget_percent=1.0, min_samples=10, window=1000.0)

    async def main():
        for _ in range(30):
            await p.call(server)

    run(main)
    m = p.metrics().hedging

    # The first ten calls are hedged (too few judged to tell); every call
    # after them is slow, so none is.
    assert 10 == m.hedges
    assert 20 == m.suppressed_by_slowdown
    assert 1.0 == m.slow_fraction
    assert 40 == len(server.starts)


def test_a_tail_is_hedged_with_the_default_config(run):
    """
    One percent of requests 10x slower are hedged at the default p95.

    The slowest call then takes about the delay plus one normal request.
    """
    server = Server(lambda n: 1.0 if n % 100 == 50 else 0.1)
    p = pipeline(min_hedges_per_second=0.0)
    durations = []

    async def one():
        start = anyio.current_time()
        await p.call(server)
        durations.append(anyio.current_time() - start)

    async def main():
        async with anyio.create_task_group() as tasks:
            for _ in range(1000):
                tasks.start_soon(one)
                await anyio.sleep(0.01)

    run(main)
    m = p.metrics().hedging

    assert 1000 == m.calls
    assert 0 < m.hedges <= 50
    assert m.hedge_wins == m.hedges
    assert max(durations[100:]) < 0.25


def test_a_shared_policy_instance(run):
    """A Hedging instance passed to two pipelines is shared by both."""
    hedging = Hedging(HedgingConfig(delay=2.0), name="shared")
    one = ResiliencePipeline(hedging=hedging)
    two = ResiliencePipeline(hedging=hedging)

    async def main():
        await one.call(Server(lambda _: 0.1))
        await two.call(Server(lambda _: 0.1))

    run(main)

    assert hedging is one.hedging is two.hedging
    assert 2 == hedging.metrics().calls
    assert "hedging=<Hedging 'shared'" in repr(one)


def test_no_hedging_no_metrics():
    """A pipeline without hedging reports none."""
    assert ResiliencePipeline().metrics().hedging is None


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("max_hedged_attempts", 0, "an integer >= 1"),
        ("delay", 0, "a finite number of seconds > 0 or None"),
        ("delay", "1", "a finite number of seconds > 0 or None"),
        ("percentile", 1.0, r"a number in \(0, 1\)"),
        ("budget_percent", 1.5, r"a number in \[0, 1\]"),
        ("min_hedges_per_second", -1, "a finite number >= 0"),
        ("budget_ttl", 0, "a finite number of seconds > 0"),
        ("window", math.inf, "a finite number of seconds > 0"),
        ("min_samples", 0, "an integer >= 1"),
        ("max_slow_fraction", 0, r"a number in \(0, 1\]"),
    ],
)
def test_config_errors_name_the_field(field, value, rule):
    """An invalid setting fails at construction, naming the field."""
    with pytest.raises(
        ConfigurationError, match=rf"HedgingConfig\.{field} must be {rule}"
    ):
        HedgingConfig(**{field: value})


def test_config_defaults_and_timedelta():
    """The issue's defaults; durations may be timedeltas."""
    config = HedgingConfig(delay=dt.timedelta(milliseconds=250))

    assert (1, 0.25, 0.95, 0.05) == (
        config.max_hedged_attempts,
        config.delay,
        config.percentile,
        config.budget_percent,
    )
    assert isinstance(Hedging().metrics(), HedgingMetrics)


def test_prometheus_and_opentelemetry_show_the_hedging_families(run):
    """A watched pipeline's hedging policy is exported by both exporters."""
    server = Server(lambda n: [10.0, 1.0][n])
    p = pipeline(delay=2.0)
    watchlist = Watchlist()
    watchlist.watch_pipeline(p)

    async def main():
        await p.call(server)
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        instrument_otel_metrics(watchlist, meter_provider=provider)
        data = await anyio.to_thread.run_sync(reader.get_metrics_data)
        provider.shutdown()
        registry = CollectorRegistry()
        registry.register(ResilienceCollector(watchlist))
        return generate_latest(registry).decode(), {
            metric.name: [
                (dict(q.attributes), q.value) for q in metric.data.data_points
            ]
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name.startswith("resilient_mcp.hedging")
        }

    text, points = run(main)
    samples = [
        (s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("resilient_mcp_hedging")
    ]
    h = {"hedging": "h"}

    assert [
        ("resilient_mcp_hedging_calls_total", h, 1.0),
        ("resilient_mcp_hedging_hedged_calls_total", h, 1.0),
        ("resilient_mcp_hedging_hedges_total", h, 1.0),
        ("resilient_mcp_hedging_hedge_wins_total", h, 1.0),
        ("resilient_mcp_hedging_refused_total", {**h, "reason": "budget"}, 0),
        (
            "resilient_mcp_hedging_refused_total",
            {**h, "reason": "slowdown"},
            0,
        ),
        ("resilient_mcp_hedging_delay_seconds", h, 2.0),
        ("resilient_mcp_hedging_slow_fraction", h, 1.0),
    ] == samples
    assert [(h, 1)] == points["resilient_mcp.hedging.hedges"]
    assert [(h, 2.0)] == points["resilient_mcp.hedging.delay_seconds"]
