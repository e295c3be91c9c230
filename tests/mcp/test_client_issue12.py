"""
Regressions of issue 12 in the MCP client, against in-process servers.

The cache probe has no side effects, metrics and reprs outlive the event
loop, bad tool names never leave the client, and the client's own tool-list
refreshes are counted and logged apart from the caller's requests.
"""

from __future__ import annotations

import logging

import pytest
import trio

from mcp.server.mcpserver import Context, MCPServer

from resilient_mcp import (
    CircuitBreakerError,
    Outcome,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    SessionConfig,
)
from resilient_mcp.testing import run_virtual
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


def echo_server() -> MCPServer:
    """An in-process server with one ``echo`` tool."""
    server = MCPServer("echo")

    @server.tool()
    async def echo(text: str) -> str:
        """Echo."""
        return text

    return server


async def test_12_cache_probe_never_asks_for_a_connection(autojump_clock):
    """
    With no session and the circuit open, listings make no connect attempt.

    The cache probe used to ask the supervisor for a connection before the
    pipeline looked at the breaker: 20 rejected listings, 20 attempts.
    """
    specs = iter([echo_server()])

    def factory():
        spec = next(specs, None)
        if spec is None:
            raise ConnectionRefusedError("the server is gone")
        return spec

    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=1),
        session=SessionConfig(reconnect_delay=0.1, reconnect_max_delay=0.1),
    )
    async with ResilientMCPClient(factory, config=config) as client:
        client.circuit_breaker.force_open()
        client.supervisor.request_reconnect()
        await trio.testing.wait_all_tasks_blocked()
        attempts = client.supervisor.metrics().connect_attempts
        for _ in range(20):
            with pytest.raises(CircuitBreakerError):
                await client.list_tools()
            with pytest.raises(CircuitBreakerError):
                await client.read_resource("demo://x")
            await trio.sleep(1)  # well past the reconnect backoff
        after = client.supervisor.metrics().connect_attempts

    assert 2 == attempts
    assert attempts == after


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_12_metrics_and_repr_outlive_the_event_loop(backend):
    """metrics() and repr() never raise, even after the loop has ended."""

    async def scenario():
        async with ResilientMCPClient(echo_server()) as client:
            await client.call_tool("echo", {"text": "hi"})
        return client

    client = run_virtual(scenario, backend=backend)

    metrics = client.metrics()
    assert 1 == metrics.successful_requests
    assert metrics.session.reconnect_in is None
    assert "<ResilientMCPClient 'mcp' CLOSED, breaker CLOSED>" == repr(client)
    assert "closed" in repr(client.supervisor)


@pytest.mark.parametrize("name", ["", None, 7])
async def test_12_bad_tool_names_never_leave_the_client(autojump_clock, name):
    """
    An empty or non-string tool name is refused before anything is sent.

    It used to reach the server; the per-tool recorder then raised
    ValueError over the server's answer, and the call counted a success.
    Now it is a PermanentError (invalid params), like arguments that
    cannot be sent: not a request, so counted as nothing at all.
    """
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=7))
    server = create_flaky_server(state=state)
    async with ResilientMCPClient(server) as client:
        with pytest.raises(PermanentError) as info:
            await client.call_tool(name, {"text": "hi"})
        metrics = client.metrics()

    assert -32602 == info.value.code
    assert 0 == state.requests["tools/call"]
    assert 0 == metrics.total_requests
    assert 0 == metrics.successful_requests
    assert {} == dict(metrics.tools)
    assert 0 == metrics.circuit_breaker.total_requests


def announcing_server() -> MCPServer:
    """A server whose ``announce`` tool says the tool list changed."""
    server = echo_server()

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Tell the client the tool list changed (nothing changed)."""
        await ctx.session.send_tool_list_changed()
        return "announced"

    return server


async def test_12_refreshes_are_internal_and_log_once(autojump_clock, caplog):
    """
    The client's own tool-list refreshes are counted apart, logged once.

    After list_changed every call asks for a listing first; with the
    circuit open each one is refused.  That used to be a WARNING with a
    traceback per call and a tools/list request the caller never made in
    ``total_requests``; now it is one line per outage (again after a
    success) and ``internal_requests``.
    """
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=1),
        session=SessionConfig(client_options={"mode": "legacy"}),
    )
    caplog.set_level(logging.DEBUG, logger="resilient_mcp")
    async with ResilientMCPClient(announcing_server(), config=config) as c:
        for outage_calls in (5, 3):
            await c.call_tool("announce", {})  # the listing is stale now
            c.circuit_breaker.force_open()
            for _ in range(outage_calls):
                with pytest.raises(CircuitBreakerError):
                    await c.call_tool("echo", {"text": "x"})
            c.circuit_breaker.reset()
            await c.call_tool("echo", {"text": "y"})  # the refresh works
        metrics = c.metrics()

    refresh_logs = [
        record
        for record in caplog.records
        if "could not refresh the tool list" in record.getMessage()
    ]
    warnings = [r for r in refresh_logs if r.levelno == logging.WARNING]
    assert 2 == len(warnings)
    assert all(r.exc_info is None for r in warnings)
    assert 8 - 2 == len(refresh_logs) - len(warnings)
    assert 2 + 8 + 2 == metrics.total_requests
    assert 8 == metrics.failures[Outcome.CIRCUIT_OPEN]
    assert "tools/list" not in metrics.operations or (
        0 == metrics.operations["tools/list"].total_requests
    )
    assert 8 + 2 == metrics.internal_requests
    refresh = metrics.internal_operations["tools/list:refresh"]
    assert 8 == refresh.failures[Outcome.CIRCUIT_OPEN]
    assert 2 == refresh.successful_requests
    assert metrics.total_requests == sum(
        op.latency.count for op in metrics.operations.values()
    )
