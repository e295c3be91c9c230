"""
ResilientMCPClient.call_tool passes the SDK's own parameters on unchanged.

Its signature mirrors ``mcp.Client.call_tool`` (tests/typing/client.py
checks the types); these tests check that each value reaches the server,
through an in-process low-level server that answers with what it got.
"""

from __future__ import annotations

from mcp.server import Server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    TextContent,
    Tool,
)

from resilient_mcp import ResilientMCPClient


def recording_server() -> tuple[Server, list[CallToolRequestParams]]:
    """A server with one tool, ``record``, that keeps each request."""
    requests: list[CallToolRequestParams] = []

    async def list_tools(ctx, params):
        tool = Tool(name="record", input_schema={"type": "object"})
        return ListToolsResult(tools=[tool])

    async def call_tool(ctx, params):
        requests.append(params)
        return CallToolResult(content=[TextContent(type="text", text="ok")])

    server = Server(
        "recording", on_list_tools=list_tools, on_call_tool=call_tool
    )
    return server, requests


async def test_sdk_parameters_reach_the_server(autojump_clock):
    """meta, request_state and input_responses are sent as given."""
    server, requests = recording_server()
    async with ResilientMCPClient(server) as client:
        result = await client.call_tool(
            "record",
            {"n": 1},
            5.0,
            meta={"example.org/trace": "abc"},
            request_state="opaque",
            input_responses={},
        )

    assert not result.is_error
    [request] = requests
    assert {"n": 1} == request.arguments
    assert request.meta is not None
    assert "abc" == request.meta.get("example.org/trace")
    assert "opaque" == request.request_state
    assert {} == request.input_responses


async def test_parameters_left_out_are_not_sent(autojump_clock):
    """Without the optional parameters, the request carries none of them."""
    server, requests = recording_server()
    async with ResilientMCPClient(server) as client:
        await client.call_tool("record")

    [request] = requests
    assert request.request_state is None
    assert request.input_responses is None
    assert request.meta is not None
    assert "example.org/trace" not in request.meta
