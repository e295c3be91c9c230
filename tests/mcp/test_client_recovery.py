"""
ResilientMCPClient against servers in real processes: death and pushback.

Real processes cannot run on a mock clock; every wait here is bounded by a
generous ``trio.fail_after`` that only guards against hangs.
"""

from __future__ import annotations

import os
import signal

from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from resilient_mcp import (
    CircuitBreakerConfig,
    CircuitBreakerError,
    Outcome,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
    SessionLostError,
)


if TYPE_CHECKING:
    from conftest import HTTPServerProcess
    from resilient_mcp._mcp import SessionConfig


HANG_GUARD = 60  # seconds; never a timing assertion


def client_config(session: SessionConfig, **overrides: Any):
    """Quick, jitter-free retries over a real server's session settings."""
    settings: dict[str, Any] = {
        "retry": RetryConfig(max_attempts=4, initial_delay=0.1, jitter=False),
        "session": attrs.evolve(session, on_connect=None),
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


async def structured(client: ResilientMCPClient, tool: str, **args: Any):
    """Call a tool and return its structured result."""
    result = await client.call_tool(tool, args)
    assert result.structured_content is not None
    return result.structured_content.get("result", result.structured_content)


async def wait_for_execution(client: ResilientMCPClient, tool: str) -> None:
    """Poll the server until it has started running *tool*."""
    while tool not in (await structured(client, "stats"))["executions"]:
        await trio.sleep(0.01)


@pytest.mark.slow
async def test_sigkill_mid_call_is_recovered(stdio_params, session_config):
    """
    SIGKILL with a safe call in flight: it is retried on a new server.

    The client replaces the dead session; the in-flight call of an
    idempotent tool is retried there and succeeds; later calls succeed.
    """
    cfg = client_config(session_config)
    results = []
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(stdio_params(), config=cfg) as client:
            first_pid = (await structured(client, "stats"))["pid"]

            async def slow_call():
                results.append(await structured(client, "slow", seconds=1))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_call)
                await wait_for_execution(client, "slow")
                os.kill(first_pid, signal.SIGKILL)
            # The nursery waited for the retried slow call.
            second_pid = (await structured(client, "stats"))["pid"]
            metrics = client.metrics()

    assert ["done"] == results
    assert first_pid != second_pid
    assert 1 == metrics.session.sessions_lost
    assert 1 <= metrics.retried_requests
    assert 0 == metrics.failed_requests


@pytest.mark.slow
async def test_process_death_in_an_unsafe_call_is_not_retried(
    stdio_params, session_config
):
    """
    A non-idempotent call that killed the server fails, without a retry.

    It may have run (it did: it is what killed the server), so it must not
    run again; the next call gets a new server.
    """
    cfg = client_config(session_config)
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(stdio_params(), config=cfg) as client:
            with pytest.raises(SessionLostError):
                await client.call_tool("crash", {})
            text = await structured(client, "echo", text="again")
            stats = await structured(client, "stats")
            metrics = client.metrics()

    assert "again" == text
    assert 0 == stats["executions"].get("crash", 0)  # a new process
    calls = metrics.operations["tools/call"]
    assert 1 == calls.failures[Outcome.ERROR]
    # A retried crash would have killed the next server too.
    assert 1 == metrics.session.sessions_lost


@pytest.mark.slow
async def test_retry_after_is_honoured(
    http_server: HTTPServerProcess, session_config
):
    """A 429's Retry-After sets the retry delay (not initial_delay)."""
    url = await http_server.start()
    cfg = client_config(session_config)
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(url, config=cfg) as client:
            await structured(
                client,
                "configure",
                http_status=429,
                http_reject_count=1,
                retry_after="1",
            )
            start = trio.current_time()
            text = await structured(client, "echo", text="patient")
            waited = trio.current_time() - start

    assert "patient" == text
    assert waited >= 1.0  # the server's word, not initial_delay (0.1 s)


@pytest.mark.slow
async def test_retry_after_holds_the_breaker_open(
    http_server: HTTPServerProcess, session_config
):
    """A 429 that opens the breaker keeps it open for Retry-After."""
    url = await http_server.start()
    cfg = client_config(
        session_config,
        retry=RetryConfig(max_attempts=1),
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=1, recovery_timeout=0.5
        ),
    )
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(url, config=cfg) as client:
            await structured(
                client,
                "configure",
                http_status=429,
                http_reject_count=1,
                retry_after="30",
            )
            with pytest.raises(ServerError) as pushed_back:
                await client.call_tool("echo", {"text": "x"})
            with pytest.raises(CircuitBreakerError) as rejected:
                await client.call_tool("echo", {"text": "y"})

    assert 429 == pushed_back.value.status_code
    assert rejected.value.retry_after is not None
    assert rejected.value.retry_after > 29  # not recovery_timeout's 0.5 s


@pytest.mark.slow
async def test_http_server_restart_is_recovered(
    http_server: HTTPServerProcess, session_config
):
    """After the HTTP server dies and comes back, calls succeed again."""
    url = await http_server.start()
    cfg = client_config(
        session_config,
        retry=RetryConfig(max_attempts=10, initial_delay=0.2, jitter=False),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=50),
    )
    with trio.fail_after(HANG_GUARD):
        async with (
            ResilientMCPClient(url, config=cfg) as client,
            trio.open_nursery() as nursery,
        ):
            assert "before" == await structured(client, "echo", text="before")
            await http_server.kill()

            async def restart_soon():
                await trio.sleep(0.5)
                await http_server.start()

            nursery.start_soon(restart_soon)
            # Retried (echo is idempotent) until the server is back.
            text = await structured(client, "echo", text="after")
            metrics = client.metrics()

    assert "after" == text
    assert 1 <= metrics.retried_requests
