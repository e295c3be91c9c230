"""
The flaky server's capacity model, in virtual time.

A request takes ``base_latency * max(1, in_flight / capacity)`` seconds,
*in_flight* counted on its arrival (itself included), and fails at once
beyond ``overload_factor * capacity`` in flight; with probability
``slow_rate`` a request is ``slow_factor`` times slower (a slow tail).
"""

from __future__ import annotations

import pytest
import trio

from mcp import Client
from mcp.shared.exceptions import MCPError

from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
    main,
)


def make_state(**options):
    """The state of an in-process flaky server (crash disabled)."""
    return FlakyState(FlakyServerConfig(allow_crash=False, **options))


def test_service_time_grows_with_concurrency_beyond_capacity():
    """Full speed up to capacity, then slower in proportion."""
    state = make_state(capacity=4, base_latency=0.1)

    assert [0.1, 0.1, 0.1, 0.15, 0.2, 1.0] == [
        round(state.service_time(n), 9) for n in (1, 2, 4, 6, 8, 40)
    ]
    assert 0.1 == make_state(base_latency=0.1).service_time(1000)


def test_overloaded_beyond_the_factor_times_capacity():
    """More than overload_factor * capacity in flight is overloaded."""
    state = make_state(capacity=4, overload_factor=1.5)

    assert [False, True] == [state.overloaded(6), state.overloaded(7)]
    assert not make_state(capacity=4).overloaded(10**6)
    assert not make_state(overload_factor=2).overloaded(10**6)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capacity", -1),
        ("base_latency", -0.5),
        ("overload_factor", 0.5),
        ("slow_rate", 1.5),
        ("slow_rate", -0.1),
        ("slow_factor", 0.5),
        ("slow_factor", float("inf")),
    ],
)
def test_bad_capacity_settings_are_refused(field, value):
    """The capacity knobs and the slow share are checked, naming the field."""
    with pytest.raises(ValueError, match=field):
        FlakyServerConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        make_state().configure(**{field: value})


async def _calls_at_once(client, count):
    """Start *count* echo calls together; their (seconds, error) each."""
    results = []

    async def one(i):
        start = trio.current_time()
        try:
            await client.call_tool("echo", {"text": str(i)})
        except MCPError as exc:
            results.append((trio.current_time() - start, exc.error.message))
        else:
            results.append((trio.current_time() - start, None))

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return sorted(results, key=lambda r: (r[0], r[1] or ""))


async def test_concurrent_requests_share_the_capacity(autojump_clock):
    """
    Concurrent requests beyond the capacity are slower in proportion.

    Four requests at once on a server of capacity 2 and 1 s base latency
    take 1, 1, 1.5 and 2 s: the third and fourth arrive with 3 and 4 in
    flight.
    """
    state = make_state(capacity=2, base_latency=1.0)
    async with Client(create_flaky_server(state=state)) as client:
        await client.list_tools()  # the SDK's tool cache, warmed up
        start = trio.current_time()
        results = await _calls_at_once(client, 4)

    assert [(1.0, None), (1.0, None), (1.5, None), (2.0, None)] == results
    assert 2.0 == trio.current_time() - start
    assert 0 == state.in_flight


async def test_an_overloaded_server_fails_at_once(autojump_clock):
    """
    An overloaded server fails requests at once.

    Beyond overload_factor * capacity in flight, requests fail with a
    server error without running; the others are served.
    """
    state = make_state(capacity=2, base_latency=1.0, overload_factor=1.5)
    async with Client(create_flaky_server(state=state)) as client:
        await client.list_tools()
        results = await _calls_at_once(client, 5)
        stats = (await client.call_tool("stats")).structured_content

    overloaded = (0.0, "flaky: overloaded")
    assert [overloaded, overloaded, (1.0, None), (1.0, None), (1.5, None)] == (
        results
    )
    assert (2, 3) == (state.overload_rejections, state.executions["echo"])
    assert 2 == stats["overload_rejections"]
    assert 0 == stats["in_flight"]


async def test_configure_changes_the_capacity(autojump_clock):
    """The configure tool sets the capacity knobs; 0 removes the limit."""
    state = make_state()
    async with Client(create_flaky_server(state=state)) as client:
        await client.call_tool(
            "configure",
            {"capacity": 1, "base_latency": 0.5, "overload_factor": 1},
        )
        await client.list_tools()
        limited = await _calls_at_once(client, 2)
        await client.call_tool("configure", {"capacity": 0})
        unlimited = await _calls_at_once(client, 2)

    assert [(0.0, "flaky: overloaded"), (0.5, None)] == limited
    assert [(0.5, None), (0.5, None)] == unlimited


def test_the_command_line_checks_the_capacity_options(capsys):
    """A bad --overload-factor is a usage error naming the field."""
    status = main(["stdio", "--capacity", "2", "--overload-factor", "0.5"])

    assert 2 == status
    assert "overload_factor" in capsys.readouterr().err


def test_the_slow_share_is_seeded_and_close_to_the_rate():
    """
    slowdown() is slow_factor with probability slow_rate, else 1.

    Over 20,000 draws the share is within 0.1 point of 1 %, and the same
    seed draws the same requests slow.
    """
    draws = 20_000
    first = make_state(slow_rate=0.01, seed=7)
    again = make_state(slow_rate=0.01, seed=7)
    factors = [first.slowdown() for _ in range(draws)]

    assert {1.0, 10.0} == set(factors)
    assert factors == [again.slowdown() for _ in range(draws)]
    assert first.slow_requests == factors.count(10.0)
    assert abs(first.slow_requests / draws - 0.01) < 0.001


def test_no_slow_share_draws_nothing():
    """Without a slow share the random source is untouched (seeds agree)."""
    state = make_state(seed=7)
    before = state.rng.getstate()

    assert [1.0] * 100 == [state.slowdown() for _ in range(100)]
    assert before == state.rng.getstate()
    assert 0 == state.slow_requests


async def test_slow_requests_take_slow_factor_times_longer(autojump_clock):
    """
    Over MCP, a slow request's service time is slow_factor times longer.

    400 echo calls one after the other on a server of 0.1 s with a slow
    share of 5 % (factor 3, set by the configure tool): each takes 0.1 or
    0.3 s, the slow ones are the ones the server counted, about 5 %.
    """
    state = make_state(capacity=4, base_latency=0.1, seed=11)
    async with Client(create_flaky_server(state=state)) as client:
        await client.list_tools()
        await client.call_tool(
            "configure", {"slow_rate": 0.05, "slow_factor": 3}
        )
        durations = []
        for i in range(400):
            start = trio.current_time()
            await client.call_tool("echo", {"text": str(i)})
            durations.append(round(trio.current_time() - start, 9))
        stats = (await client.call_tool("stats")).structured_content

    slow = durations.count(0.3)
    assert 400 == slow + durations.count(0.1)
    assert (slow, slow) == (state.slow_requests, stats["slow_requests"])
    assert 10 <= slow <= 30
    assert (0.05, 3.0) == (stats["slow_rate"], stats["slow_factor"])


def test_the_command_line_checks_the_slow_share(capsys):
    """A bad --slow-factor is a usage error naming the field."""
    status = main(["stdio", "--slow-rate", "0.01", "--slow-factor", "0"])

    assert 2 == status
    assert "slow_factor" in capsys.readouterr().err
