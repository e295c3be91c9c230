"""
Hedging through ResilientMCPClient, against a real in-process server.

The client hedges only what is safe to repeat: the rule of retries.  A
tool annotated read-only gets a hedge when it is slow, and the slow
request is cancelled; a tool without annotations never does.
"""

from __future__ import annotations

import pytest
import trio

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from resilient_mcp import (
    HedgingConfig,
    ResilientClientConfig,
    ResilientMCPClient,
)
from resilient_mcp._mcp import SessionConfig


def slow_first_server():
    """A server whose tools take 10 s on their first call, then 0.1 s."""
    server = MCPServer("slow-first")
    runs = {"lookup": [], "charge": []}

    async def run(name: str) -> str:
        index = len(runs[name])
        runs[name].append("started")
        try:
            await trio.sleep(10.0 if index == 0 else 0.1)
        except trio.Cancelled:
            runs[name][index] = "cancelled"
            raise
        runs[name][index] = "answered"
        return f"{name} {index}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def lookup() -> str:
        """Read something: safe to repeat."""
        return await run("lookup")

    @server.tool()
    async def charge() -> str:
        """Charge: not safe to repeat (no annotations)."""
        return await run("charge")

    return server, runs


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_read_only_tools_are_hedged_and_others_never(
    autojump_clock, mode
):
    """
    A slow read-only tool is hedged; a tool with side effects is not.

    The slow read-only request is cancelled once the hedge answers; the
    slow tool with side effects is waited for.
    """
    server, runs = slow_first_server()
    config = ResilientClientConfig(
        hedging=HedgingConfig(delay=1.0),
        session=SessionConfig(client_options={"mode": mode}),
    )
    async with ResilientMCPClient(server, config=config) as client:
        await client.list_tools()
        start = trio.current_time()
        hedged = await client.call_tool("lookup")
        hedged_at = trio.current_time() - start
        start = trio.current_time()
        unhedged = await client.call_tool("charge")
        unhedged_at = trio.current_time() - start
        await trio.testing.wait_all_tasks_blocked()
        pipelines = {p.name: p for p in client.pipelines()}
        safe = pipelines["tools/call"].metrics().hedging
        unsafe = pipelines["tools/call:unsafe"].metrics().hedging

    assert "lookup 1" == hedged.structured_content["result"]
    assert 1.1 == pytest.approx(hedged_at)
    assert ["cancelled", "answered"] == runs["lookup"]
    assert "charge 0" == unhedged.structured_content["result"]
    assert 10.0 == pytest.approx(unhedged_at)
    assert ["answered"] == runs["charge"]
    assert (1, 1) == (safe.hedges, safe.hedge_wins)
    assert unsafe is None
