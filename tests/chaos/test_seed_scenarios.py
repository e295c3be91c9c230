"""
The seed design's two chaos scenarios, written with the fault injector.

Both run against a real in-process flaky server over the SDK's in-memory
JSON-RPC transport, with a :class:`ChaosTransport` in between, in virtual
time: the injected latencies, the backoff and the breaker's recovery take
no real time, and their effects are exact.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from resilient_mcp import (
    BulkheadConfig,
    BulkheadError,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    Outcome,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
)
from resilient_mcp.testing.chaos import (
    ChaosTransport,
    Error,
    FaultInjector,
    Latency,
    UniformDelay,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


pytestmark = pytest.mark.chaos

SEED = 20240806  # the injector's seed: rerun with it to replay a failure
CALLERS = 100  # concurrent callers of the slow tool


def flaky_server():
    """A well-behaved in-process flaky server and its state."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=SEED))
    return create_flaky_server(state=state), state


async def test_80_percent_failures_open_the_breaker_which_then_fails_fast(
    autojump_clock,
):
    """
    A transport failing 80 % of calls opens the breaker, which fails fast.

    While it is open, calls fail at once and nothing reaches the transport.
    """
    server, state = flaky_server()
    injector = FaultInjector([Error(rate=0.8)], seed=SEED)
    chaos = ChaosTransport(server, injector, methods={"tools/call"})
    config = ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=5, recovery_timeout=30, success_threshold=1
        ),
        retry=RetryConfig(max_attempts=3, initial_delay=0.5, jitter=False),
        timeout=10,
    )
    outcomes: Counter[str] = Counter()
    while_open = []  # (requests that reached the transport, seconds taken)
    async with ResilientMCPClient(chaos, config=config) as client:
        for _ in range(200):
            was_open = client.circuit_breaker.state is CircuitState.OPEN
            sent = injector.metrics().calls
            started = trio.current_time()
            try:
                await client.call_tool("echo", {"text": "x"})
            except CircuitBreakerError:
                outcomes["rejected"] += 1
            except ServerError:
                outcomes["failed"] += 1
            else:
                outcomes["succeeded"] += 1
            if was_open:
                while_open.append(
                    (
                        injector.metrics().calls - sent,
                        trio.current_time() - started,
                    )
                )
            await trio.sleep(1)  # one call a second
        metrics = client.metrics()
    chaos_metrics = injector.metrics()

    assert 200 == sum(outcomes.values())
    assert 2 <= metrics.circuit_breaker_trips
    assert outcomes["rejected"] == metrics.failures[Outcome.CIRCUIT_OPEN]
    # Every call made while the circuit was open failed fast, unsent.
    assert len(while_open) > 50
    assert {(0, 0.0)} == set(while_open)
    # Each request the transport saw either failed there or ran once.
    assert chaos_metrics.calls == (
        chaos_metrics.injected["error"] + chaos_metrics.passed
    )
    assert chaos_metrics.passed == state.executions["echo"]
    assert outcomes["succeeded"] == metrics.successful_requests


async def test_a_slow_tool_under_100_callers_is_held_to_the_bulkhead(
    autojump_clock, trio_tasks
):
    """
    100 callers of a slow tool are held to 2 running and 5 waiting.

    Never more than 2 requests are in flight, some calls are rejected, and
    every call is accounted for exactly once.
    """
    server, state = flaky_server()
    injector = FaultInjector(
        [Latency(delay=UniformDelay(0.5, 1.5))], seed=SEED
    )
    chaos = ChaosTransport(server, injector, methods={"tools/call"})
    tools = BulkheadConfig(
        max_concurrent_requests=2, queue_size=5, request_timeout=2.5
    )
    config = ResilientClientConfig(
        bulkheads={"tools": tools},
        retry=RetryConfig(max_attempts=1),
        timeout=10,
    )
    outcomes: Counter[str] = Counter()

    async def caller(i: int) -> None:
        try:
            await client.call_tool("echo", {"text": str(i)})
        except BulkheadError:
            outcomes["rejected"] += 1
        except Exception:
            outcomes["failed"] += 1
        else:
            outcomes["completed"] += 1

    async with ResilientMCPClient(chaos, config=config) as client:
        baseline = trio_tasks()
        async with trio.open_nursery() as nursery:
            for i in range(CALLERS):
                nursery.start_soon(caller, i)
        # Let the answers still on the (chaotic) wire arrive, then count.
        await trio.sleep(2)
        leftover = trio_tasks() - baseline
        metrics = client.metrics()
        bulkhead = metrics.bulkheads["tools"]

    assert CALLERS == (
        outcomes["completed"] + outcomes["rejected"] + outcomes["failed"]
    )
    assert 2 == chaos.peak_in_flight  # never more than 2 at once
    assert 93 == outcomes["rejected"]  # 2 running + 5 queued admitted
    assert outcomes["completed"] > 0
    assert outcomes["failed"] > 0  # the bulkhead's 2.5 s wait-plus-run
    # A call that timed out may have run: its answer was on its way.
    ran = state.executions["echo"]
    assert outcomes["completed"] <= ran <= CALLERS - outcomes["rejected"]
    assert outcomes["rejected"] == bulkhead.rejected_requests
    assert CALLERS == metrics.operations["tools/call"].total_requests
    assert outcomes["failed"] == metrics.failures[Outcome.TIMEOUT]
    assert (0, 0) == (bulkhead.active_requests, bulkhead.queued_requests)
    assert 0 == leftover
