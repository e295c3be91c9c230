"""
The open-loop load generator (resilient_mcp._load), in virtual time.

The in-process flaky server runs its handlers in the caller's task, so
trio's MockClock drives its latencies too: start times, latencies and
service times are checked to the exact virtual second.
"""

from __future__ import annotations

import anyio
import pytest
import trio

from resilient_mcp import (
    CircuitBreakerConfig,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp._load import (
    LATENCY,
    SERVICE,
    LoadPlan,
    SeriesLog,
    Timeline,
    client_config,
    load_config,
    run_load,
    run_open_loop,
    server_source,
)
from resilient_mcp.testing import set_testing
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


def make_server(**options):
    """An in-process flaky server and its state (crash disabled)."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=3, **options))
    return create_flaky_server(state=state), state


def test_the_timetable_holds_rate_times_duration_requests():
    """A plan offers rate * duration requests, i / rate apart."""
    plan = LoadPlan(rate=50, duration=2)

    assert 100 == plan.offered
    assert 1.98 == plan.intended(99)
    assert 3 == LoadPlan(rate=3, duration=0.9).offered  # 0, 1/3, 2/3
    assert 1 == LoadPlan(rate=0.5, duration=1).offered


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate", 0), ("duration", -1), ("max_in_flight", 0), ("drain", -1.0)],
)
def test_the_plan_names_a_bad_field(field, value):
    """A bad value fails at construction, naming the field."""
    options = {"rate": 1.0, "duration": 1.0, field: value}

    with pytest.raises(ValueError, match=f"LoadPlan.{field} must be"):
        LoadPlan(**options)


async def test_every_request_starts_at_its_intended_time(autojump_clock):
    """
    Exactly rate * duration requests start, each at origin + i / rate.

    Each takes longer than the interval between them: none waits.
    """
    server, state = make_server(base_latency=0.35)
    starts = []
    async with ResilientMCPClient(server) as client:
        await client.list_tools()

        async def call():
            starts.append(trio.current_time())
            result = await client.call_tool("echo", {"text": "x"})
            return not result.is_error

        origin = trio.current_time()
        plan = LoadPlan(rate=20, duration=1.5)
        tally = await run_open_loop(plan, call, series=SeriesLog())

    assert [origin + i / 20 for i in range(30)] == starts
    assert (30, 30, 30, 0, 0) == (
        tally.offered,
        tally.started,
        tally.succeeded,
        tally.failed,
        tally.shed,
    )
    assert 30 == state.executions["echo"]
    assert 0 == tally.late_starts


async def test_queueing_shows_in_latency_not_in_service_time(
    autojump_clock,
):
    """
    Queueing shows in the latency from the intended start, not in service.

    With one request in flight at a time against a server slower than
    the arrival rate, the latency grows request after request while the
    service time stays the server's: the coordinated omission a closed
    loop would hide.  Requests not started by the end are shed, and
    counted.
    """
    server, _ = make_server(base_latency=0.3)
    series = SeriesLog()
    async with ResilientMCPClient(server) as client:
        await client.list_tools()

        async def call():
            await client.call_tool("echo", {"text": "x"})
            return True

        plan = LoadPlan(rate=10, duration=1, max_in_flight=1)
        tally = await run_open_loop(plan, call, series=series)

    latency = series.histogram(LATENCY)
    service = series.histogram(SERVICE)

    # Starts at 0, 0.3, 0.6 and 0.9 (intended 0, 0.1, 0.2 and 0.3),
    # ends at 0.3, 0.6, 0.9 and 1.2: latencies 0.3, 0.5, 0.7 and 0.9.
    assert (10, 4, 6, 3) == (
        tally.offered,
        tally.started,
        tally.shed,
        tally.late_starts,
    )
    assert 4 == latency.count == service.count
    assert [0.3, 0.5, 0.7, 0.9] == [
        round(latency.percentile(p), 3) for p in (25, 50, 75, 100)
    ]
    assert 0.3 == round(service.min(), 3) == round(service.max(), 3)


def test_the_scheduler_runs_on_trio_and_asyncio(run):
    """
    The scheduler keeps its timetable and its books on either backend.

    A request of 0.25 s every 0.1 s with at most two in flight: starts
    wait for a slot, and the latency counts the wait.
    """

    async def scenario():
        starts = []

        async def call():
            starts.append(anyio.current_time())
            await anyio.sleep(0.25)
            return True

        series = SeriesLog()
        plan = LoadPlan(rate=10, duration=0.45, max_in_flight=2)
        tally = await run_open_loop(plan, call, series=series)
        return starts, tally, series

    starts, tally, series = run(scenario)

    # Slots free at 0.25, 0.35 (started 0.1), then 0.5: after the end of
    # the starts (0.45), so the request intended at 0.4 is shed.
    assert [0.0, 0.1, 0.25, 0.35] == [round(t, 9) for t in starts]
    assert (5, 4, 1, 2) == (
        tally.offered,
        tally.started,
        tally.shed,
        tally.late_starts,
    )
    assert 0.25 == round(series.histogram(SERVICE).max(), 3)
    assert 0.3 == round(series.histogram(LATENCY).max(), 3)


async def test_requests_still_running_after_the_drain_are_unfinished(
    autojump_clock,
):
    """
    Requests still running when the drain ends are unfinished.

    They are cancelled, counted (not recorded), and the run ends on time.
    """
    series = SeriesLog()

    async def call():
        await trio.sleep(10)
        return True

    plan = LoadPlan(rate=2, duration=1, drain=3)
    tally = await run_open_loop(plan, call, series=series)

    assert (2, 2, 0, 2) == (
        tally.offered,
        tally.started,
        tally.succeeded,
        tally.unfinished,
    )
    assert 0 == series.histogram(LATENCY).count
    assert 4.0 == trio.current_time()


async def test_error_results_and_exceptions_are_failures(autojump_clock):
    """A false result is a tool error, an exception a failure."""
    answers = iter([True, False, "raise", True])

    async def call():
        answer = next(answers)
        if answer == "raise":
            raise RuntimeError("boom")
        return answer

    tally = await run_open_loop(
        LoadPlan(rate=4, duration=1), call, series=SeriesLog()
    )

    assert (4, 2, 2, 1) == (
        tally.offered,
        tally.succeeded,
        tally.failed,
        tally.tool_errors,
    )


def test_the_timeline_measures_from_the_fault_start():
    """
    The timeline measures from the fault's start.

    The fault starts at the first failure after the last success; the
    circuit's opening and the first success after it closed are measured
    from there.
    """
    timeline = Timeline(origin=100.0)
    timeline.failure(100.5)  # an isolated failure
    timeline.success(101.0)
    timeline.failure(102.0)  # the fault starts here
    timeline.failure(102.5)
    timeline.circuit_changed("open", 103.0)
    timeline.success(104.0)  # a probe's success, before it closed
    timeline.circuit_changed("half_open", 105.0)
    timeline.circuit_changed("closed", 105.0)
    timeline.success(105.25)
    timeline.circuit_changed("open", 106.0)

    assert (2, 2.0, 3.0, 5.0, 5.25) == (
        timeline.opens,
        timeline.fault_start,
        timeline.opened_at,
        timeline.closed_at,
        timeline.recovered_at,
    )
    assert 1.0 == timeline.time_to_open
    assert 3.25 == timeline.time_to_recover


async def test_a_fault_opens_the_circuit_and_the_report_says_when(
    autojump_clock,
):
    """
    A server that fails for a while opens the client's circuit.

    The report counts every request once, the rejections by outcome, the
    retry amplification, and the times to open and to recover.
    """
    set_testing(True)  # no backoff: attempts are counted, not timed
    server, state = make_server(base_latency=0.01)
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=2),
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=3, recovery_timeout=1.0
        ),
    )

    async def fault():  # between requests, which start every 0.1 s
        await trio.sleep(1.05)
        state.configure(failure_rate=1.0)
        await trio.sleep(1.0)
        state.configure(failure_rate=0.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fault)
        report = await run_load(
            server,
            LoadPlan(rate=10, duration=4),
            tool="flaky",
            config=config,
            target="in-process",
        )

    # Requests start every 0.1 s and take 0.01 s.  The one of 1.1 s fails
    # twice (1.11, 1.12): the fault is seen at 1.12 s.  The one of 1.2 s
    # fails at 1.21 s, the third failure: the circuit opens, and rejects
    # its retry and the calls until it half-opens at 2.21 s (11 in all).
    # Three probes (2.3, 2.4, 2.5 s) close it at 2.51 s, a success.
    assert (40, 28, 12, 0) == (
        report.offered,
        report.succeeded,
        report.failed,
        report.shed,
    )
    assert {"circuit_open": 11, "retries_exhausted": 1} == report.failures
    assert 11 == report.rejected
    assert (41, 40) == (report.attempts, report.calls)
    assert 1 == report.circuit_opens
    assert 0.09 == round(report.time_to_open, 9)
    assert 1.39 == round(report.time_to_recover, 9)


async def test_a_missing_tool_is_named(autojump_clock):
    """run_load refuses a tool the server does not have, naming its tools."""
    server, _ = make_server()

    with pytest.raises(ValueError, match=r"no tool 'nope' \(its tools: add"):
        await run_load(server, LoadPlan(rate=1, duration=1), tool="nope")


def test_presets_change_the_base_config():
    """The command line's presets are applied over the base config."""
    base = ResilientClientConfig(timeout=5.0)

    config = client_config(
        base, attempts=1, breaker=False, bulkhead=False, timeout=2.0
    )

    assert 1 == config.retry.max_attempts
    assert config.circuit_breaker.failure_threshold > 10**9
    assert config.tool_circuit_breaker is None
    assert config.bulkheads["tools"] is None
    assert 2.0 == config.timeout
    assert base is client_config(base)


def test_load_config_reads_an_attribute_or_calls_a_factory():
    """--config takes module:attr, a config or a function returning one."""
    config = load_config("resilient_mcp:ResilientClientConfig")

    assert ResilientClientConfig() == config
    with pytest.raises(TypeError, match="is not a ResilientClientConfig"):
        load_config("resilient_mcp:__name__")
    with pytest.raises(ValueError, match="module:attribute"):
        load_config("resilient_mcp")


def test_a_url_is_http_anything_else_a_command():
    """One http(s) word is a URL; other words are a stdio command."""
    url = "http://127.0.0.1:1/mcp"

    assert (url, url) == server_source([url])
    params, name = server_source(["python3", "-m", "server", "a b"])
    assert "python3 -m server 'a b'" == name
    assert ["-m", "server", "a b"] == params.args
