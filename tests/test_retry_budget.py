"""The retry budget: Finagle's arithmetic, pipelines, clients, metrics."""

from __future__ import annotations

import math

import anyio
import pytest

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _scenario import ConnectionLost, Script, sleep_then
from resilient_mcp import (
    CallTimeout,
    CircuitBreakerConfig,
    CircuitBreakerError,
    ConfigurationError,
    Outcome,
    ResiliencePipeline,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetMetrics,
    RetryConfig,
    ServerError,
)
from resilient_mcp.instrumentation import ResilienceCollector, Watchlist
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


NOTE = "resilient_mcp: gave up after 1 attempt (the retry budget is exhausted)"


def no_reserve(**kwargs) -> RetryBudgetConfig:
    """A budget of percent_can_retry alone (no min_retries_per_second)."""
    return RetryBudgetConfig(min_retries_per_second=0, **kwargs)


def quick_retry(max_attempts: int = 3) -> RetryConfig:
    """Retries without waits, so that a run stays at virtual time 0."""
    return RetryConfig(
        max_attempts=max_attempts, initial_delay=0, max_delay=0, jitter=False
    )


def test_twenty_percent_of_a_hundred_calls():
    """After 100 calls at 20 %, 20 retries are allowed and the 21st not."""
    budget = RetryBudget(no_reserve(percent_can_retry=0.2), name="server")
    for _ in range(100):
        budget.deposit(0.0)

    allowed = [budget.try_withdraw(0.0) for _ in range(21)]

    assert [True] * 20 + [False] == allowed
    assert (
        RetryBudgetMetrics(
            name="server", calls=100, retries=20, rejected_retries=1, balance=0
        )
        == budget.metrics()
    )


def test_deposits_and_withdrawals_expire_after_ttl():
    """What a call or a retry put in the window counts for ttl seconds."""
    budget = RetryBudget(no_reserve(ttl=10.0))
    for _ in range(100):
        budget.deposit(0.0)
    for _ in range(10):
        assert budget.try_withdraw(0.0)

    still_there = budget.try_withdraw(9.9)
    expired = budget.try_withdraw(10.0)

    assert still_there
    assert not expired


def test_reserve_of_min_retries_per_second():
    """Without calls, min_retries_per_second * ttl retries per ttl."""
    budget = RetryBudget(
        RetryBudgetConfig(min_retries_per_second=2.0, ttl=5.0)
    )

    first = [budget.try_withdraw(1.0) for _ in range(11)]
    later = [budget.try_withdraw(6.0) for _ in range(11)]

    assert [True] * 10 + [False] == first
    assert [True] * 10 + [False] == later


def test_no_percent_and_no_reserve_never_retries():
    """percent_can_retry=0 without a reserve refuses every retry."""
    budget = RetryBudget(RetryBudgetConfig(percent_can_retry=0.0, ttl=1.0))
    empty = RetryBudget(no_reserve(percent_can_retry=0.0))
    for _ in range(100):
        budget.deposit(0.0)
        empty.deposit(0.0)

    assert [True] * 10 + [False] == [
        budget.try_withdraw(0.0) for _ in range(11)
    ]
    assert not empty.try_withdraw(0.0)
    assert 0 == empty.metrics().balance


@given(
    st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    st.sampled_from([0.0, 0.1, 0.5]),
    st.lists(
        st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=200
    ),
)
def test_the_budget_follows_its_rule(percent, rate, steps):
    """
    A retry is allowed exactly as a brute-force model of the rule says.

    The window's retries stay within percent_can_retry of its calls plus
    the reserve, over ten buckets of ttl / 10.
    """
    config = RetryBudgetConfig(
        percent_can_retry=percent, min_retries_per_second=rate, ttl=10.0
    )
    budget = RetryBudget(config)
    deposit = 1000 if percent else 0
    cost = int(1000 / percent) if percent else 1
    reserve = int(rate * 10.0 * cost)
    events: list[tuple[int, int]] = []  # (bucket, tokens)
    now = 0.0
    for advance, is_retry in steps:
        now += advance * 0.5  # exact in binary; buckets of 1 s
        bucket = int(now)
        live = sum(t for b, t in events if b > bucket - 10)
        if is_retry:
            allowed = live + reserve >= cost

            assert allowed == budget.try_withdraw(now)
            if allowed:
                events.append((bucket, -cost))
        else:
            budget.deposit(now)
            events.append((bucket, deposit))


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("percent_can_retry", -0.1, "a number in [0, 1]"),
        ("percent_can_retry", 1.5, "a number in [0, 1]"),
        ("percent_can_retry", math.nan, "a number in [0, 1]"),
        ("percent_can_retry", True, "a number in [0, 1]"),
        ("min_retries_per_second", -1.0, "a finite number >= 0"),
        ("min_retries_per_second", math.inf, "a finite number >= 0"),
        ("min_retries_per_second", "10", "a finite number >= 0"),
        ("ttl", 0.0, "a finite number of seconds > 0"),
        ("ttl", math.inf, "a finite number of seconds > 0"),
        ("ttl", None, "a finite number of seconds > 0"),
    ],
)
def test_config_validation_names_the_field(field, value, rule):
    """An invalid value fails at construction, naming field and range."""
    with pytest.raises(ConfigurationError) as caught:
        RetryBudgetConfig(**{field: value})

    assert f"RetryBudgetConfig.{field} must be {rule}, got {value!r}" == str(
        caught.value
    )


def test_a_budget_needs_a_retry_policy():
    """A pipeline with a retry budget but no retry is a config error."""
    with pytest.raises(ConfigurationError, match="retry_budget needs retry"):
        ResiliencePipeline(retry_budget=RetryBudgetConfig())


def test_refused_retry_propagates_the_last_error_with_a_note(run):
    """A refused retry is not made; the error propagates with a note."""

    async def scenario():
        pipeline = ResiliencePipeline(
            retry=quick_retry(), retry_budget=no_reserve(), name="p"
        )
        error = ConnectionLost("reset")
        op = Script(error, "ok")

        with pytest.raises(ConnectionLost) as caught:
            await pipeline.call(op)

        assert error is caught.value
        assert [NOTE] == caught.value.__notes__
        assert 1 == op.calls
        metrics = pipeline.metrics()
        assert 1 == metrics.outcomes[Outcome.RETRY_BUDGET_EXHAUSTED]
        assert 1 == metrics.failed_requests == metrics.total_requests
        assert 1 == metrics.retry.failed_calls
        assert 1 == metrics.retry.retry_budget_exhausted_calls
        assert (
            RetryBudgetMetrics(
                name="p", calls=1, retries=0, rejected_retries=1, balance=0
            )
            == metrics.retry_budget
        )

    run(scenario)


def test_a_timed_out_attempt_refused_a_retry_is_budget_exhausted(run):
    """A timeout whose retry the budget refused ends as budget exhausted."""

    async def scenario():
        pipeline = ResiliencePipeline(
            retry=quick_retry(), retry_budget=no_reserve(), timeout=1.0
        )

        with pytest.raises(CallTimeout) as caught:
            await pipeline.call(sleep_then, 10)

        assert NOTE == caught.value.__notes__[-1]
        assert 1.0 == anyio.current_time()
        outcomes = pipeline.metrics().outcomes
        assert (0, 1) == (
            outcomes[Outcome.TIMEOUT],
            outcomes[Outcome.RETRY_BUDGET_EXHAUSTED],
        )

    run(scenario)


def test_a_retry_budget_caps_amplification_against_a_dead_server(run):
    """
    A budget caps retry amplification against a server failing 100 %.

    3 attempts per call amplify 3x without a budget, and at most 1.2 plus
    the reserve with one.
    """

    async def amplification(budget):
        pipeline = ResiliencePipeline(retry=quick_retry(), retry_budget=budget)
        op = Script(ConnectionLost("down"))
        for _ in range(1000):
            with pytest.raises(ConnectionLost):
                await pipeline.call(op)
        assert 0.0 == anyio.current_time()  # one ttl window
        return pipeline.metrics(), op.calls / 1000

    async def scenario():
        _, unbudgeted = await amplification(None)
        assert 3.0 == unbudgeted

        # Each call deposits 1 token when it ends, a retry costs 1 / 0.2 = 5
        # and the reserve is 10/s * 10 s = 100 retries: the retries of
        # 1,000 calls are floor((999 + 5 * 100) / 5) = 299, once the budget
        # runs dry (and 0.2 * 1,000 + 100 = 300 bounds them).
        metrics, amplified = await amplification(RetryBudgetConfig())
        assert 299 == metrics.retry_budget.retries
        assert 1.299 == amplified
        assert amplified <= 1.2 + 100 / 1000
        outcomes = metrics.outcomes
        assert 1000 == (
            outcomes[Outcome.RETRIES_EXHAUSTED]
            + outcomes[Outcome.RETRY_BUDGET_EXHAUSTED]
        )
        assert (
            metrics.retry_budget.rejected_retries
            == outcomes[Outcome.RETRY_BUDGET_EXHAUSTED]
        )
        assert 1000 == metrics.total_requests == metrics.failed_requests

        # Without the reserve: floor(999 / 5) = 199 retries, under 1.2.
        metrics, amplified = await amplification(no_reserve())
        assert 199 == metrics.retry_budget.retries
        assert amplified <= 1.2

    run(scenario)


def test_transient_failures_succeed_as_without_a_budget(run):
    """At 5 % transient failures every call succeeds, budget or not."""

    async def successes(budget):
        attempts = 0

        async def op():
            nonlocal attempts
            attempts += 1
            await anyio.lowlevel.checkpoint()
            if attempts % 20 == 0:  # every 20th attempt: 5 %
                raise ConnectionLost("blip")
            return "ok"

        pipeline = ResiliencePipeline(retry=quick_retry(), retry_budget=budget)
        for _ in range(1000):
            assert "ok" == await pipeline.call(op)
        return pipeline.metrics()

    async def scenario():
        plain = await successes(None)
        budgeted = await successes(no_reserve())

        assert (
            1000 == plain.successful_requests == budgeted.successful_requests
        )
        assert plain.retry.total_retries == budgeted.retry_budget.retries
        assert 0 == budgeted.retry_budget.rejected_retries

    run(scenario)


def test_pipelines_share_one_budget_instance(run):
    """Calls through one pipeline pay for the retries of another."""

    async def scenario():
        budget = RetryBudget(no_reserve(), name="server")
        reads = ResiliencePipeline(
            retry=quick_retry(), retry_budget=budget, name="reads"
        )
        writes = ResiliencePipeline(
            retry=quick_retry(), retry_budget=budget, name="writes"
        )
        for _ in range(5):
            await reads.call(Script("ok"))

        paid = await writes.call(Script(ConnectionLost("blip"), "ok"))
        with pytest.raises(ConnectionLost):
            await writes.call(Script(ConnectionLost("blip"), "ok"))

        assert "ok" == paid
        assert budget is reads.retry_budget is writes.retry_budget
        assert (
            RetryBudgetMetrics(
                name="server",
                calls=7,
                retries=1,
                rejected_retries=1,
                balance=0,
            )
            == budget.metrics()
        )
        assert 1 == writes.metrics().outcomes[Outcome.RETRY_BUDGET_EXHAUSTED]
        assert 5 == reads.metrics().successful_requests

    run(scenario)


def test_cancellation_during_the_wait_gives_the_retry_back(run):
    """A retry whose wait is cancelled is not counted, nor a failure."""

    async def scenario():
        pipeline = ResiliencePipeline(
            retry=RetryConfig(initial_delay=1, jitter=False),
            retry_budget=RetryBudgetConfig(),
            name="p",
        )
        scope = anyio.CancelScope()

        async def cancel_later():
            await anyio.sleep(0.5)  # during the 1 s wait
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_later)
            with scope:
                await pipeline.call(Script(ConnectionLost("blip"), "ok"))

        metrics = pipeline.metrics()
        assert 1 == metrics.cancelled_requests == metrics.total_requests
        assert 0 == metrics.failed_requests
        assert (
            RetryBudgetMetrics(
                name="p", calls=1, retries=0, rejected_retries=0, balance=100
            )
            == metrics.retry_budget
        )

    run(scenario)


def test_a_retry_an_open_circuit_refuses_is_given_back(run):
    """When the breaker would reject the retry, the budget keeps it."""

    async def scenario():
        pipeline = ResiliencePipeline(
            retry=quick_retry(),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=1),
            retry_budget=RetryBudgetConfig(),
        )

        with pytest.raises(CircuitBreakerError):
            await pipeline.call(Script(ConnectionLost("down")))

        budget = pipeline.metrics().retry_budget
        assert (0, 0, 100) == (
            budget.retries,
            budget.rejected_retries,
            budget.balance,
        )

    run(scenario)


def test_prometheus_exports_a_shared_budget_once(run):
    """The retry budget families appear once per budget, with the outcome."""

    async def scenario():
        budget = RetryBudget(no_reserve(), name="server")
        watchlist = Watchlist()
        pipelines = []  # the watchlist holds them weakly: keep them alive
        for name in ("reads", "writes"):
            pipeline = ResiliencePipeline(
                retry=quick_retry(), retry_budget=budget, name=name
            )
            pipelines.append(pipeline)
            watchlist.watch_pipeline(pipeline)
            with pytest.raises(ConnectionLost):
                await pipeline.call(Script(ConnectionLost("down")))
        registry = CollectorRegistry()
        registry.register(ResilienceCollector(watchlist))

        samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(
                generate_latest(registry).decode()
            )
            for sample in family.samples
            if "retry_budget" in sample.name
            or sample.labels.get("outcome") == "retry_budget_exhausted"
        ]

        server = {"budget": "server"}
        assert [
            ("resilient_mcp_retry_budget_calls_total", server, 2.0),
            ("resilient_mcp_retry_budget_retries_total", server, 0.0),
            ("resilient_mcp_retry_budget_rejected_retries_total", server, 2.0),
            ("resilient_mcp_retry_budget_balance", server, 0.0),
            ("resilient_mcp_retry_budget_store_errors_total", server, 0.0),
            (
                "resilient_mcp_requests_total",
                {"operation": "reads", "outcome": "retry_budget_exhausted"},
                1.0,
            ),
            (
                "resilient_mcp_requests_total",
                {"operation": "writes", "outcome": "retry_budget_exhausted"},
                1.0,
            ),
        ] == samples

    run(scenario)


def test_opentelemetry_reports_the_budget(run):
    """The retry budget's counters reach OpenTelemetry instruments."""
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
        InMemoryMetricReader,
    )

    from resilient_mcp.instrumentation import (  # noqa: PLC0415
        instrument_otel_metrics,
    )

    async def scenario():
        pipeline = ResiliencePipeline(
            retry=quick_retry(), retry_budget=no_reserve(), name="p"
        )
        with pytest.raises(ConnectionLost):
            await pipeline.call(Script(ConnectionLost("down")))
        watchlist = Watchlist()
        watchlist.watch_pipeline(pipeline)
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        instrument_otel_metrics(watchlist, meter_provider=provider)

        data = reader.get_metrics_data()
        provider.shutdown()

        found = {
            metric.name: [
                (dict(point.attributes), point.value)
                for point in metric.data.data_points
            ]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }
        assert [({"budget": "p"}, 1)] == found[
            "resilient_mcp.retry_budget.rejected_retries"
        ]
        assert (
            {"operation": "p", "outcome": "retry_budget_exhausted"},
            1,
        ) in (found["resilient_mcp.requests"])

    run(scenario)


def client_config(**overrides):
    """No waits between retries, and a breaker that stays closed."""
    settings = {
        "retry": quick_retry(),
        "circuit_breaker": CircuitBreakerConfig(failure_threshold=100),
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


def flaky_server():
    """A real in-process MCP server whose ``flaky`` tool fails on demand."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=7))
    return create_flaky_server(state=state), state


async def test_a_client_has_one_budget_per_server_by_default(autojump_clock):
    """Every retrying pipeline of a client shares the server's budget."""
    server, _ = flaky_server()
    async with ResilientMCPClient(server, name="srv") as client:
        pipelines = client.pipelines()

    budgets = {id(p.retry_budget) for p in pipelines if p.retry is not None}
    budget = pipelines[0].retry_budget
    assert budget is not None
    assert [id(budget)] == list(budgets)
    assert "srv" == budget.name
    assert RetryBudgetConfig() == budget.config
    assert [None] == [p.retry_budget for p in pipelines if p.retry is None]


async def test_a_clients_calls_pay_for_its_retries(autojump_clock):
    """Over MCP, calls of any operation fund retries; an empty budget not."""
    server, state = flaky_server()
    config = client_config(retry_budget=no_reserve())
    async with ResilientMCPClient(server, config=config) as client:
        state.fail_next = 1
        with pytest.raises(ServerError) as caught:
            await client.call_tool("flaky", {"text": "a"})
        for _ in range(4):
            await client.list_tools()
        state.fail_next = 1
        paid = await client.call_tool("flaky", {"text": "b"})
        metrics = client.metrics()
        budget = client.pipelines()[0].retry_budget

    assert NOTE == caught.value.__notes__[-1]
    assert "b" == paid.structured_content["result"]
    assert 3 == state.executions["flaky"]
    tools_call = metrics.operations["tools/call"]
    assert 1 == tools_call.failures[Outcome.RETRY_BUDGET_EXHAUSTED]
    assert (1, 1) == (
        budget.metrics().retries,
        budget.metrics().rejected_retries,
    )


async def test_retry_budget_none_turns_it_off(autojump_clock):
    """With retry_budget=None the client retries as before."""
    server, state = flaky_server()
    config = client_config(retry_budget=None)
    async with ResilientMCPClient(server, config=config) as client:
        state.fail_next = 1
        result = await client.call_tool("flaky", {"text": "a"})
        pipelines = client.pipelines()

    assert "a" == result.structured_content["result"]
    assert 2 == state.executions["flaky"]
    assert {None} == {p.retry_budget for p in pipelines}


async def test_13_amplification_over_mcp_is_finagles_bound(autojump_clock):
    """
    Against a server failing 100 %, retries stay within Finagle's rule.

    50 calls a second for 20 s through one client, 3 attempts 1 s and
    2 s apart, breakers that never open: each ``ttl`` window's retries
    stay under 20 % of its calls plus the reserve of 100, so the second
    window's attempts per call stay under 1 + 0.2 + 10 / 50 = 1.4, and
    the server runs exactly the attempts the budget allowed (no other
    retry loop, no second budget, no retries counted as calls).
    """
    server, state = flaky_server()
    state.failure_rate = 1.0
    config = client_config(
        retry=RetryConfig(initial_delay=1.0, jitter=False),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=2**31 - 1),
        tool_circuit_breaker=None,
        bulkheads={"tools": None},
    )
    samples = {}
    async with ResilientMCPClient(server, config=config) as client:
        budget = client.pipelines()[0].retry_budget
        before = budget.metrics()
        start = anyio.current_time()

        async def call():
            with pytest.raises(ServerError):
                await client.call_tool("flaky", {})

        async with anyio.create_task_group() as tasks:
            for i in range(1000):  # 50 a second for 20 s
                await anyio.sleep_until(start + i / 50)
                if i % 500 == 0:
                    samples[i // 50] = budget.metrics()
                tasks.start_soon(call)
            await anyio.sleep_until(start + 20)
            samples[20] = budget.metrics()
        after = budget.metrics()
        retry = client.metrics().operations["tools/call"]

    calls = after.calls - before.calls
    retries = after.retries - before.retries
    windows = [
        (
            samples[t + 10].calls - samples[t].calls,
            samples[t + 10].retries - samples[t].retries,
        )
        for t in (0, 10)
    ]
    assert 0.0 == start % 1.0  # the windows are the budget's buckets
    assert 1000 == calls == retry.total_requests
    assert calls + retries == state.executions["flaky"]
    assert all(r <= 0.2 * c + 100 for c, r in windows)
    # The second window is steady: about 500 calls ended in it (trio's
    # scheduling order moves one across its edge now and then) and the
    # budget allowed its rule's 0.2 * 500 + 100 retries: 1.4 per call.
    steady_calls, steady_retries = windows[1]
    ratio = 1 + steady_retries / steady_calls
    assert 1.39 <= ratio <= 1 + 0.2 + 100 / steady_calls
