"""
Process death: the stdio server is SIGKILLed again and again mid-call.

Real processes cannot run on a mock clock.  Every call here runs under a
per-call hang guard far above its configured budget (attempts times
timeout plus backoff): a call that needs it has hung, and the test says
so.  No assertion is about wall-clock time.
"""

from __future__ import annotations

import os
import signal

from collections import Counter

import attrs
import pytest
import trio

from resilient_mcp import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ResilienceError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    SessionLostError,
    SessionState,
)


pytestmark = [pytest.mark.chaos, pytest.mark.slow]

HANG_GUARD = 120  # seconds for the whole test; a hang guard only
KILLS = 3  # SIGKILLs, each with calls in flight
TIMEOUT = 5.0  # seconds per attempt
ATTEMPTS = 3
CALL_GUARD = ATTEMPTS * TIMEOUT + 10  # seconds: past this, a call hung


async def structured(client, tool, **arguments):
    """Call a tool and return its structured result."""
    result = await client.call_tool(tool, arguments)
    return result.structured_content.get("result", result.structured_content)


def in_flight(stats):
    """Whether the server is running the round's 3 slow calls and 2 hangs."""
    executions = stats["executions"]
    return executions.get("slow", 0) >= 3 and executions.get("hang", 0) >= 2


async def test_sigkill_with_calls_in_flight_loses_nothing(  # noqa: PLR0915 (one scenario, top to bottom)
    stdio_params, session_config, trio_tasks
):
    """
    Repeated SIGKILLs mid-call lose no call, task, slot or session.

    Each SIGKILL ends every call in flight (a result, or a clear error)
    within its budget; the client reconnects every time, leaks no task and
    no bulkhead slot, and calls after each recovery succeed.
    """
    config = ResilientClientConfig(
        retry=RetryConfig(
            max_attempts=ATTEMPTS, initial_delay=0.1, jitter=False
        ),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=1000),
        bulkheads={
            "tools": BulkheadConfig(max_concurrent_requests=6, queue_size=20)
        },
        timeout=TIMEOUT,
        session=attrs.evolve(session_config, on_connect=None),
        # Only "slow" is safe to repeat; "hang" (never answers) is not.
        trust_tool_annotations=False,
        retryable_tools={"slow"},
    )
    outcomes: Counter[str] = Counter()
    ended: Counter[str] = Counter()  # calls that ended, by tool
    errors: set[type[BaseException]] = set()
    pids = []
    after_recovery = []

    async def guarded(tool, arguments):
        with trio.move_on_after(CALL_GUARD):
            try:
                await client.call_tool(tool, arguments)
            except ResilienceError as exc:
                errors.add(type(exc))
                outcomes["failed"] += 1
            else:
                outcomes["succeeded"] += 1
            finally:
                ended[tool] += 1
            return
        outcomes["hung"] += 1

    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(stdio_params(), config=config) as client:
            await structured(client, "echo", text="warm up")
            baseline = trio_tasks()
            for kill in range(KILLS):
                stats = await structured(client, "stats")
                pids.append(stats["pid"])
                async with trio.open_nursery() as nursery:
                    for _ in range(3):  # safe: retried on the next server
                        nursery.start_soon(guarded, "slow", {"seconds": 0.5})
                    for _ in range(2):  # unsafe: may have run, not retried
                        nursery.start_soon(guarded, "hang", {})
                        nursery.start_soon(guarded, "add", {"a": 1, "b": 2})
                    # The quick "add" calls must be over before the kill
                    # (else one may be lost with the process, and it is
                    # not safe to repeat): only "slow" and "hang" remain.
                    while not (
                        ended["add"] == 2 * (kill + 1)
                        and in_flight(await structured(client, "stats"))
                    ):
                        await trio.sleep(0.01)
                    os.kill(pids[-1], signal.SIGKILL)
                after_recovery.append(
                    await structured(client, "echo", text="back")
                )
            pids.append((await structured(client, "stats"))["pid"])
            while client.supervisor.metrics().state is not (
                SessionState.CONNECTED
            ):
                await trio.sleep(0.01)
            leftover = trio_tasks() - baseline
            metrics = client.metrics()

    bulkhead = metrics.bulkheads["tools"]
    assert 0 == outcomes["hung"]
    assert KILLS * 7 == outcomes["succeeded"] + outcomes["failed"]
    # Every slow call was retried on the next server; every hang was lost.
    assert 5 * KILLS == outcomes["succeeded"]
    assert 2 * KILLS == outcomes["failed"]
    assert {SessionLostError} == errors
    assert KILLS + 1 == len(set(pids))  # a new process each time
    assert ["back"] * KILLS == after_recovery
    assert KILLS == metrics.session.sessions_lost
    assert KILLS + 1 == metrics.session.connects
    assert (0, 0) == (bulkhead.active_requests, bulkhead.queued_requests)
    assert bulkhead.completed_requests + bulkhead.rejected_requests == (
        metrics.operations["tools/call"].total_requests
    )
    assert 0 == leftover
    assert 0 == metrics.cancelled_requests
