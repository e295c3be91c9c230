"""
The fault-injection toolkit itself: decisions, replay, faults, proxy.

The injector's promises are checked on plain async callables in virtual
time; the transport's on a real in-process server; the TCP proxy on the
loopback interface, against a tiny echo server of the test's own.
"""

from __future__ import annotations

import math

from collections import Counter

import anyio
import pytest
import trio
import trio.testing

from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from resilient_mcp import ConfigurationError
from resilient_mcp.testing.chaos import (
    ChaosError,
    ChaosTransport,
    Corrupt,
    Corruption,
    Drop,
    DroppedConnectionError,
    Error,
    ExponentialDelay,
    FaultInjector,
    FixedDelay,
    Hang,
    Latency,
    LognormalDelay,
    ProxyMode,
    Reorder,
    UniformDelay,
    open_chaos_proxy,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    create_flaky_server,
)


pytestmark = pytest.mark.chaos

LIMIT = 10  # seconds any network test may take (a hang guard)


async def ok(value="ok"):
    """Succeed at once, after a checkpoint."""
    await trio.lowlevel.checkpoint()
    return value


def decisions(injector, n):
    """The names of the faults of the next *n* decisions."""
    return [injector.decide().names for _ in range(n)]


# -- decisions ---------------------------------------------------------------


def test_the_same_seed_replays_the_same_decisions():
    """Two injectors with one seed decide the same faults, call by call."""
    faults = [Latency(delay=UniformDelay(0, 1), rate=0.5), Error(rate=0.3)]

    first = decisions(FaultInjector(faults, seed=42), 500)
    again = decisions(FaultInjector(faults, seed=42), 500)
    other = decisions(FaultInjector(faults, seed=43), 500)

    assert first == again
    assert first != other


def test_decision_n_does_not_depend_on_enabled():
    """Turning chaos off and on again leaves later decisions unchanged."""
    faults = [Error(rate=0.5), Hang(rate=0.5)]
    steady = FaultInjector(faults, seed=7)
    switched = FaultInjector(faults, seed=7)

    expected = decisions(steady, 300)
    first = decisions(switched, 100)
    switched.enabled = False
    silent = decisions(switched, 100)
    switched.enabled = True
    last = decisions(switched, 100)

    assert expected[:100] == first
    assert [()] * 100 == silent
    assert expected[200:] == last


def test_rates_are_honoured_over_many_calls():
    """Over 20,000 decisions each fault strikes at about its rate."""
    injector = FaultInjector(
        [Error(rate=0.2), Drop(rate=0.25), Hang(rate=1.0)], seed=1
    )

    counts = Counter(decisions(injector, 20_000))
    metrics = injector.metrics()

    # Error first at 0.2; Drop at 0.25 of the rest; Hang takes the others.
    assert abs(counts[("error",)] / 20_000 - 0.2) < 0.015
    assert abs(counts[("drop",)] / 20_000 - 0.8 * 0.25) < 0.015
    assert 20_000 == sum(counts.values())
    assert 0 == metrics.passed
    assert dict(counts.most_common()) == {
        (name,): n for name, n in metrics.injected.items()
    }


def test_latency_adds_to_a_strike_and_is_summed():
    """Latency is counted on top of the strike it comes with."""
    injector = FaultInjector([Latency(delay=0.25), Error(rate=1.0)], seed=3)

    decided = [injector.decide() for _ in range(4)]
    metrics = injector.metrics()

    assert [("latency", "error")] * 4 == [d.names for d in decided]
    assert [0, 1, 2, 3] == [d.index for d in decided]
    assert 1.0 == metrics.total_delay
    assert {"latency": 4, "error": 4} == dict(metrics.injected)
    assert 8 == metrics.faults
    assert 0 == metrics.passed


def test_a_seed_is_picked_and_shown_when_none_is_given():
    """Without a seed the injector picks one, shown for replaying."""
    injector = FaultInjector([Error(rate=0.5)])
    replay = FaultInjector([Error(rate=0.5)], seed=injector.seed)

    assert f"seed={injector.seed}" in repr(injector)
    assert injector.seed == injector.metrics().seed
    assert decisions(injector, 50) == decisions(replay, 50)


@pytest.mark.parametrize(
    ("distribution", "quantiles"),
    [
        (FixedDelay(0.3), [0.3, 0.3, 0.3]),
        (UniformDelay(1, 3), [1.0, 2.0, 3.0]),
        (ExponentialDelay(mean=1.0), [0.0, math.log(2), 5.0]),
        (LognormalDelay(median=0.1, sigma=1.0), [0.0, 0.1, 5.0]),
    ],
)
def test_distributions_map_quantiles_to_delays(distribution, quantiles):
    """Each distribution is an inverse CDF: 0, the median, and a cap."""
    capped = {
        ExponentialDelay: ExponentialDelay(mean=1.0, cap=5.0),
        LognormalDelay: LognormalDelay(median=0.1, sigma=1.0, cap=5.0),
    }.get(type(distribution), distribution)

    samples = [capped.sample(u) for u in (0.0, 0.5, 1.0 - 1e-12)]

    assert pytest.approx(quantiles) == samples


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Error(rate=1.5), "Error.rate"),
        (lambda: Hang(rate=-0.1), "Hang.rate"),
        (lambda: Latency(delay=-1), "Latency.delay"),
        (lambda: Latency(delay=float("inf")), "Latency.delay"),
        (lambda: UniformDelay(2, 1), "UniformDelay.high"),
        (lambda: Corrupt(rate=1, kind=Corruption.OVERSIZED, size=0), "size"),
        (lambda: Error(rate=1, error=42), "Error.error"),
        (lambda: FaultInjector(["boom"]), "FaultInjector.faults"),
        (lambda: FaultInjector([], seed="x"), "FaultInjector.seed"),
    ],
)
def test_invalid_faults_are_rejected_naming_the_field(build, field):
    """A bad fault fails at construction with a message naming the field."""
    with pytest.raises(ConfigurationError) as info:
        build()

    assert field in str(info.value)


# -- around a callable -------------------------------------------------------


async def test_wrap_injects_errors_drops_hangs_and_latency(autojump_clock):
    """A wrapped callable raises, drops, hangs or waits as decided."""
    injector = FaultInjector(
        [
            Latency(delay=2.0, rate=0.5),
            Error(rate=0.2),
            Drop(rate=0.2),
            Hang(rate=0.2),
        ],
        seed=11,
    )
    replay = FaultInjector(injector.faults, seed=11)
    plan = [replay.decide() for _ in range(60)]
    chaotic = injector.wrap(ok)
    seen = []
    for decision in plan:
        start = trio.current_time()
        with trio.move_on_after(100) as hung:
            try:
                seen.append(await chaotic(value="fine"))
            except ChaosError:
                seen.append("error")
            except DroppedConnectionError:
                seen.append("drop")
        if hung.cancelled_caught:
            seen.append("hang")
        waited = trio.current_time() - start
        assert (100.0 if hung.cancelled_caught else decision.delay) == waited

    expected = [
        decision.names[-1] if decision.fault else "fine" for decision in plan
    ]
    assert expected == seen
    assert {"error", "drop", "hang", "fine"} == set(seen)


async def test_errors_are_fresh_copies_and_can_be_any_kind():
    """An error instance is copied per call; classes and factories work."""
    template = MCPError(INVALID_PARAMS, "bad")
    injector = FaultInjector([Error(rate=1.0, error=template)], seed=1)
    raised = []
    for _ in range(2):
        with pytest.raises(MCPError) as info:
            await injector.call(ok)
        raised.append(info.value)
    by_class = FaultInjector([Error(rate=1.0, error=KeyError)], seed=1)

    assert raised[0] is not raised[1]
    assert raised[0] is not template
    assert INVALID_PARAMS == raised[1].error.code
    with pytest.raises(KeyError):
        await by_class.call(ok)


def test_transport_only_faults_refuse_to_wrap_a_callable():
    """Corrupt and Reorder need a transport: wrap() says so."""
    injector = FaultInjector([Reorder(rate=1.0)], seed=1)

    with pytest.raises(TypeError, match="ChaosTransport"):
        injector.wrap(ok)


# -- the transport -----------------------------------------------------------


async def test_transport_faults_reach_the_sdk_as_they_would_on_the_wire(
    autojump_clock,
):
    """
    Transport faults reach the bare SDK client as they would on the wire.

    An Error is a JSON-RPC error, a Drop ends the connection, and answers
    can be delayed and reordered.
    """
    server = create_flaky_server(FlakyServerConfig(allow_crash=False))
    error = FaultInjector([Error(rate=1.0)], seed=1)
    chaos = ChaosTransport(server, error, methods={"tools/call"})
    async with Client(chaos) as client:
        await client.list_tools()  # or the SDK lists them behind a call
        with pytest.raises(MCPError) as failed:
            await client.call_tool("echo", {"text": "x"})
        chaos.injector = FaultInjector(
            [Latency(delay=1.0, rate=0.5), Reorder(rate=0.5)], seed=5
        )
        order = []

        async def call(i):
            await client.call_tool("echo", {"text": str(i)})
            order.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(call, i)
        peak = chaos.peak_in_flight
        chaos.injector = FaultInjector([Drop(rate=1.0)], seed=1)
        with pytest.raises(MCPError) as dropped:
            await client.call_tool("echo", {"text": "x"})

    assert -32603 == failed.value.error.code
    assert "chaos: injected by resilient_mcp" == failed.value.error.message
    assert sorted(order) == list(range(10))
    assert order != sorted(order)  # answers overtook each other
    assert 10 == peak
    assert -32000 == dropped.value.error.code
    assert 0 == chaos.in_flight


async def test_the_transport_is_reusable_and_spares_the_handshake(
    autojump_clock,
):
    """Each connection is fresh; the handshake never meets a fault."""
    server = create_flaky_server(FlakyServerConfig(allow_crash=False))
    injector = FaultInjector([Hang(rate=1.0)], seed=1)
    chaos = ChaosTransport(server, injector)  # every request but handshake
    for _ in range(3):
        async with Client(chaos) as client:
            with trio.move_on_after(5) as hung:
                await client.list_tools()

        assert hung.cancelled_caught

    assert 3 == chaos.connections
    assert 3 == injector.metrics().calls


async def test_a_factory_builds_the_inner_transport_per_connection(
    autojump_clock,
):
    """A zero-argument callable is called for each connection."""
    built = []

    def factory():
        built.append(create_flaky_server(FlakyServerConfig(allow_crash=False)))
        return built[-1]

    chaos = ChaosTransport(factory, FaultInjector([], seed=1))
    for _ in range(2):
        async with Client(chaos) as client:
            await client.call_tool("echo", {"text": "x"})

    async with chaos:
        with pytest.raises(RuntimeError, match="already has a connection"):
            await chaos.__aenter__()

    assert 3 == len(built)


# -- the TCP proxy -----------------------------------------------------------


async def echo_server(task_status=trio.TASK_STATUS_IGNORED):
    """A loopback TCP echo server; reports its port."""

    async def handle(stream):
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        task_status.started(
            listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
        )
        await listener.serve(handle)


async def exchange(port, data=b"ping"):
    """Send *data* through the proxy; the answer, or b"" if it closed."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        try:
            return await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return b""


async def test_the_proxy_forwards_blackholes_resets_and_cuts():
    """Forward echoes; blackhole never answers; reset closes; cut drops."""
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(echo_server)
            async with open_chaos_proxy(port) as proxy:
                forwarded = await exchange(proxy.port)
                proxy.mode = ProxyMode.BLACKHOLE
                with trio.move_on_after(0.5) as silent:
                    await exchange(proxy.port)
                proxy.mode = ProxyMode.RESET
                reset = await exchange(proxy.port)
                proxy.mode = ProxyMode.FORWARD
                async with await anyio.connect_tcp(
                    "127.0.0.1", proxy.port
                ) as held:
                    await held.send(b"hello")
                    assert b"hello" == await held.receive()
                    cut = proxy.cut()
                    with pytest.raises(
                        (anyio.EndOfStream, anyio.BrokenResourceError)
                    ):
                        await held.receive()
                accepted = proxy.accepted
            nursery.cancel_scope.cancel()

    assert b"ping" == forwarded
    assert silent.cancelled_caught
    assert b"" == reset
    assert 1 == cut
    assert 4 == accepted
    assert "127.0.0.1" == proxy.host


def test_public_names_exist_and_claim_the_public_module():
    """Every name resilient_mcp.testing.chaos exports exists."""
    from resilient_mcp.testing import chaos  # noqa: PLC0415

    missing = [name for name in chaos.__all__ if not hasattr(chaos, name)]

    assert [] == missing


async def test_closing_the_proxy_closes_the_connections_it_holds():
    """
    Stopping the proxy closes the connections it holds.

    The client sees the end of the stream, and no socket is left to the
    garbage collector (issue 6 regression: a ResourceWarning).
    """
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(echo_server)
            async with open_chaos_proxy(
                port, mode=ProxyMode.BLACKHOLE
            ) as proxy:
                held = await anyio.connect_tcp("127.0.0.1", proxy.port)
                await held.send(b"anyone there?")
                while proxy.open_connections == 0:
                    await trio.sleep(0.01)
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await held.receive()
            await held.aclose()
            nursery.cancel_scope.cancel()
