"""
Network faults on streamable HTTP, against the flaky server in a process.

The server goes down and comes back; it answers 503 and 429 with
Retry-After; a :func:`open_chaos_proxy` in front of it accepts connections
and never answers.  Real processes run on the real clock: every call runs
under a hang guard far above its budget (a call that needs it has hung),
and no assertion is about wall-clock time.  That Retry-After was honoured
is read from the retry manager's own log line ("Retrying in 1.000s"),
not from a stopwatch.
"""

from __future__ import annotations

import logging
import re

from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from resilient_mcp import (
    CallTimeout,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    ResilienceError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
    SessionLostError,
    SessionState,
)
from resilient_mcp.testing.chaos import ProxyMode, open_chaos_proxy


if TYPE_CHECKING:
    from resilient_mcp import SessionConfig


pytestmark = [pytest.mark.chaos, pytest.mark.slow]

HANG_GUARD = 120  # seconds for a whole test; a hang guard only
CALL_GUARD = 30  # seconds for one call, far above its budget
RETRYING = re.compile(r"Retrying in (\d+\.\d+)s")


def config(session: SessionConfig, **overrides: Any) -> ResilientClientConfig:
    """Quick, jitter-free policies over the real server's session config."""
    settings: dict[str, Any] = {
        "retry": RetryConfig(max_attempts=2, initial_delay=0.1, jitter=False),
        "circuit_breaker": CircuitBreakerConfig(
            failure_threshold=2, recovery_timeout=0.5, success_threshold=1
        ),
        "timeout": 2.0,
        "session": attrs.evolve(session, connect_timeout=10.0),
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


async def guarded(client, outcomes, errors, text="x"):
    """One echo call under the hang guard, its outcome counted."""
    with trio.move_on_after(CALL_GUARD):
        try:
            result = await client.call_tool("echo", {"text": text})
        except ResilienceError as exc:
            outcomes["failed"] += 1
            errors[type(exc).__name__] += 1
            return exc
        outcomes["succeeded"] += 1
        return result
    outcomes["hung"] += 1
    return None


async def wait_for_probe(client):
    """Sleep until the open breaker lets a probe through."""
    while client.circuit_breaker.state is CircuitState.OPEN:
        await trio.sleep(0.05)


async def test_server_down_and_back_opens_then_recovers_the_breaker(
    http_server, session_config
):
    """
    A dead server opens the breaker; once it is back, the breaker recovers.

    While it is down calls fail, then fail fast; once it is back the
    breaker probes, closes, and calls succeed.
    """
    url = await http_server.start()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    with trio.fail_after(HANG_GUARD):
        cfg = config(session_config)
        async with ResilientMCPClient(url, config=cfg) as client:
            await guarded(client, outcomes, errors, "before")
            await http_server.kill()
            for _ in range(6):
                await guarded(client, outcomes, errors, "down")
            opened = client.metrics().circuit_breaker.trips
            await http_server.start()
            await wait_for_probe(client)
            back = await guarded(client, outcomes, errors, "back")
            metrics = client.metrics()

    assert 0 == outcomes["hung"]
    assert 8 == outcomes["succeeded"] + outcomes["failed"]
    assert 1 <= opened
    assert 1 <= errors["CircuitBreakerError"]  # failing fast while open
    assert {"result": "back"} == back.structured_content
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 2 <= metrics.session.connects


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_honoured_and_holds_the_breaker_open(
    http_server, session_config, caplog, status
):
    """
    Retry-After of a 503 or 429 sets the retry's wait and the open time.

    The retry waits what the server asked, and the breaker it opens stays
    open that long, then recovers.
    """
    caplog.set_level(logging.INFO, logger="resilient_mcp")
    url = await http_server.start()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(
            url, config=config(session_config)
        ) as client:
            await client.call_tool(
                "configure",
                {
                    "http_status": status,
                    "http_reject_count": 2,  # both attempts of one call
                    "retry_after": "1",
                },
            )
            pushed_back = await guarded(client, outcomes, errors)
            with pytest.raises(CircuitBreakerError) as held:
                await client.call_tool("echo", {"text": "too soon"})
            await wait_for_probe(client)
            recovered = await guarded(client, outcomes, errors, "later")
            metrics = client.metrics()
    delays = [
        float(match.group(1))
        for record in caplog.records
        if (match := RETRYING.search(record.getMessage()))
    ]

    assert isinstance(pushed_back, ServerError)
    assert status == pushed_back.status_code
    assert 1.0 == pushed_back.retry_after
    assert [1.0] == delays  # Retry-After, not initial_delay (0.1 s)
    assert held.value.retry_after is not None
    assert held.value.retry_after > 0.5  # not recovery_timeout's 0.5 s
    assert {"result": "later"} == recovered.structured_content
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 0 == outcomes["hung"]


async def test_a_server_that_accepts_and_never_answers_times_out(
    http_server, session_config
):
    """
    A server that accepts and never answers times calls out; nothing hangs.

    Behind a black-holing proxy each call ends at its timeout and the
    breaker opens; when answers flow again it recovers and calls succeed.
    """
    await http_server.start()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    with trio.fail_after(HANG_GUARD):
        async with open_chaos_proxy(http_server.port) as proxy:
            url = f"http://127.0.0.1:{proxy.port}/mcp"
            cfg = config(session_config, timeout=1.0)
            async with ResilientMCPClient(url, config=cfg) as client:
                await guarded(client, outcomes, errors, "before")
                proxy.mode = ProxyMode.BLACKHOLE
                silent = [
                    await guarded(client, outcomes, errors) for _ in range(4)
                ]
                opened = client.metrics().circuit_breaker.trips
                proxy.mode = ProxyMode.FORWARD
                await wait_for_probe(client)
                back = await guarded(client, outcomes, errors, "back")
                metrics = client.metrics()

    assert 0 == outcomes["hung"]
    assert isinstance(silent[0], CallTimeout)
    assert 1 <= opened
    assert 1 <= errors["CircuitBreakerError"]
    assert {"result": "back"} == back.structured_content
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 1 == metrics.session.connects  # the session itself survived


# The SDK abandons the failed SSE response's async generators (httpx2's
# and its own) to the garbage collector; not ours to close.
@pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)
async def test_an_oversized_sse_event_fails_its_call_not_the_session(
    http_server, session_config
):
    """
    An SSE answer over the SDK's 1 MiB limit fails only its own call.

    At protocol 2025-11-25 (SSE answers) the session, and a call in flight
    beside it, go on (the supervisor used to drop the whole session).
    """
    url = await http_server.start()
    legacy = attrs.evolve(session_config, client_options={"mode": "legacy"})
    cfg = config(
        legacy,
        trust_tool_annotations=False,  # nothing is retried
        timeout=10.0,
    )
    results = {}
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(url, config=cfg) as client:

            async def beside():
                results["beside"] = await client.call_tool(
                    "slow", {"seconds": 1, "text": "beside"}
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(beside)
                with pytest.raises(SessionLostError) as lost:
                    await client.call_tool("echo", {"text": "x" * 2_000_000})
            after = await client.call_tool("echo", {"text": "after"})
            metrics = client.metrics()
        # At 2026-07-28 answers are plain JSON: no size limit at all.
        async with ResilientMCPClient(url, config=config(session_config)) as c:
            big = await c.call_tool("echo", {"text": "x" * 2_000_000})

    assert 2_000_000 == len(big.structured_content["result"])
    assert "response stream lost" in str(lost.value)
    assert "exceeded" in str(lost.value)
    assert {"result": "beside"} == results["beside"].structured_content
    assert {"result": "after"} == after.structured_content
    assert (1, 0) == (metrics.session.connects, metrics.session.sessions_lost)
    assert SessionState.CONNECTED == metrics.session.state
    assert "2025-11-25" == metrics.session.protocol_version
