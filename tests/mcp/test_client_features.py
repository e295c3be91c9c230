"""
ResilientMCPClient features that need servers of their own.

Pagination, tool-list changes, progress-aware timeouts, and reconnects
that obey the breaker; in-process servers, in virtual time.
"""

from __future__ import annotations

import itertools

import pytest
import trio

from mcp.server import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    CallToolResult,
    ListResourcesResult,
    ListToolsResult,
    Resource,
    TextContent,
    Tool,
    ToolAnnotations,
)

from resilient_mcp import (
    CallTimeout,
    CircuitBreakerConfig,
    CircuitBreakerError,
    NotSentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    SessionConfig,
)


def paginated_server(pages: int, per_page: int) -> Server:
    """A low-level server listing its tools and resources in pages."""
    names = [f"tool-{i}" for i in range(pages * per_page)]

    def page_of(params):
        start = int(params.cursor) if params and params.cursor else 0
        end = start + per_page
        return slice(start, end), (str(end) if end < len(names) else None)

    async def list_tools(ctx, params):
        window, cursor = page_of(params)
        tools = [
            Tool(name=name, input_schema={"type": "object"})
            for name in names[window]
        ]
        return ListToolsResult(tools=tools, next_cursor=cursor)

    async def list_resources(ctx, params):
        window, cursor = page_of(params)
        resources = [
            Resource(name=name, uri=f"demo://{name}") for name in names[window]
        ]
        return ListResourcesResult(resources=resources, next_cursor=cursor)

    async def call_tool(ctx, params):
        return CallToolResult(content=[TextContent(type="text", text="ok")])

    return Server(
        "paged",
        on_list_tools=list_tools,
        on_list_resources=list_resources,
        on_call_tool=call_tool,
    )


async def test_all_pages_follows_the_cursor(autojump_clock):
    """all_pages=True returns every item; each page is one request."""
    server = paginated_server(pages=3, per_page=4)
    async with ResilientMCPClient(server) as client:
        first = await client.list_tools()
        everything = await client.list_tools(all_pages=True)
        resources = await client.list_resources(all_pages=True)
        metrics = client.metrics()

    assert 4 == len(first.tools)
    assert "4" == first.next_cursor
    assert [f"tool-{i}" for i in range(12)] == [
        t.name for t in everything.tools
    ]
    assert everything.next_cursor is None
    assert 12 == len(resources.resources)
    assert 1 + 3 == metrics.operations["tools/list"].total_requests
    assert 3 == metrics.operations["resources/list"].total_requests


def changing_server() -> tuple[MCPServer, dict[str, int]]:
    """A server whose ``grow`` tool adds an idempotent tool at run time."""
    server = MCPServer("changing")
    runs = {"later": 0, "grow": 0}
    failures = itertools.count()

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Add the ``later`` tool and tell the client the list changed."""
        runs["grow"] += 1

        @server.tool(annotations=ToolAnnotations(idempotent_hint=True))
        async def later() -> str:
            """Fail on the first call, then succeed."""
            runs["later"] += 1
            if next(failures) == 0:
                raise MCPError(code=INTERNAL_ERROR, message="first fails")
            return "later"

        await ctx.session.send_tool_list_changed()
        return "grown"

    return server, runs


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_new_tools_annotations_are_learned(autojump_clock, mode):
    """
    A tool added at run time is retried as its annotation allows.

    At 2025-11-25 the server's list_changed notification marks the
    listing stale; at 2026-07-28 (no notifications without listen()) the
    unknown name triggers a fresh listing.
    """
    server, runs = changing_server()
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=2, initial_delay=1, jitter=False),
        session=SessionConfig(client_options={"mode": mode}),
    )
    async with ResilientMCPClient(server, config=config) as client:
        assert not client._catalog.retry_safe("later")
        await client.call_tool("grow", {})
        # Legacy sessions hear the server's notification at once.
        assert (mode == "legacy") == client._catalog.stale
        result = await client.call_tool("later", {})

    assert "later" == result.structured_content["result"]
    assert 2 == runs["later"]


def progress_server() -> MCPServer:
    """A server whose ``job`` reports progress every second for n seconds."""
    server = MCPServer("progress")

    @server.tool()
    async def job(seconds: int, ctx: Context) -> str:
        """Work *seconds* seconds, reporting progress every second."""
        for done in range(seconds):
            await trio.sleep(1)
            await ctx.report_progress(done + 1, seconds)
        return "finished"

    @server.tool()
    async def silent(seconds: int) -> str:
        """Work *seconds* seconds without a word."""
        await trio.sleep(seconds)
        return "finished"

    return server


def progress_config(cap: float) -> ResilientClientConfig:
    """A 2 s timeout that progress may extend up to *cap* seconds."""
    return ResilientClientConfig(
        timeout=2.0,
        progress_timeout_cap=cap,
        retry=RetryConfig(max_attempts=1),
    )


async def test_progress_extends_the_timeout(autojump_clock):
    """A job that keeps reporting outlives the 2 s timeout, up to the cap."""
    server = progress_server()
    reports = []

    async def on_progress(progress, total, message):
        reports.append(progress)

    async with ResilientMCPClient(
        server, config=progress_config(10)
    ) as client:
        start = trio.current_time()
        result = await client.call_tool(
            "job", {"seconds": 5}, progress_callback=on_progress
        )
        finished = trio.current_time() - start

    assert not result.is_error
    assert 5.0 == finished
    assert [1, 2, 3, 4, 5] == reports


async def test_silence_still_times_out(autojump_clock):
    """Without progress the timeout is the plain 2 s."""
    server = progress_server()
    async with ResilientMCPClient(
        server, config=progress_config(10)
    ) as client:
        start = trio.current_time()
        with pytest.raises(CallTimeout):
            await client.call_tool("silent", {"seconds": 60})
        assert 2.0 == trio.current_time() - start


async def test_the_cap_ends_even_a_chatty_job(autojump_clock):
    """Progress never extends a call past progress_timeout_cap."""
    server = progress_server()
    async with ResilientMCPClient(server, config=progress_config(3)) as client:
        start = trio.current_time()
        with pytest.raises(CallTimeout):
            await client.call_tool("job", {"seconds": 60})
        assert 3.0 == trio.current_time() - start


async def test_reconnects_obey_the_breaker(autojump_clock):
    """Once failed reconnects open the circuit, no further attempt is made."""
    healthy = MCPServer("once")

    @healthy.tool()
    async def echo(text: str) -> str:
        """Echo."""
        return text

    specs = iter([healthy])

    def factory():
        # The first connection works; every later one is refused.
        spec = next(specs, None)
        if spec is None:
            raise ConnectionRefusedError("the server is gone")
        return spec

    config = ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=3, recovery_timeout=60
        ),
        retry=RetryConfig(max_attempts=1),
        session=SessionConfig(reconnect_delay=0.1, reconnect_max_delay=0.1),
    )
    async with ResilientMCPClient(factory, config=config) as client:
        assert (
            "hi"
            == (await client.call_tool("echo", {"text": "hi"})).content[0].text
        )
        client.supervisor.request_reconnect()
        failures = 0
        for _ in range(3):
            with pytest.raises(NotSentError):
                await client.call_tool("echo", {"text": "x"})
            failures += 1
            await trio.sleep(0.2)  # past the reconnect backoff
        attempts = client.supervisor.metrics().connect_attempts
        for _ in range(10):
            with pytest.raises(CircuitBreakerError):
                await client.call_tool("echo", {"text": "x"})
            await trio.sleep(1)
        after = client.supervisor.metrics().connect_attempts

    assert 3 == failures
    assert attempts == after
