"""
Regressions of issue 12 in the MCP client, against in-process servers.

The cache probe has no side effects, metrics and reprs outlive the event
loop, bad tool names never leave the client, and the client's own tool-list
refreshes are counted and logged apart from the caller's requests.
"""

from __future__ import annotations

import pytest
import trio

from mcp.server.mcpserver import MCPServer

from resilient_mcp import (
    CircuitBreakerError,
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
