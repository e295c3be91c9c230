"""
MCP round trips: ``call_tool`` through resilience against the plain SDK.

The arms call the same server over the same connection in the same run,
interleaved, so the difference between them is what resilience adds to a
real round trip.  In memory, the server is one in-process ``MCPServer``
(an async echo tool), called through the SDK's direct dispatch; over stdio
it is ``bench/_echo_server.py`` in a subprocess; and over JSON-RPC in
memory it is an in-process ``MCPServer`` behind the SDK's
``InMemoryTransport``, a stream transport without a second process.
``list_tools()`` runs once after connecting, because the SDK otherwise
slips a hidden ``tools/list`` into the first ``call_tool``.

One ``ResilientMCPClient`` owns the connection (its session supervisor
runs the SDK ``Client`` in a task of its own); the plain arm calls that
very SDK ``Client`` (``supervisor.acquire()``; its ``call_tool`` may be
called from any task), and so do the pipeline arms and the minimal client
by hand.  A second connection would compare two server processes as much
as two clients: over stdio they were seen to differ by more than the 1%
once to be measured.

The target compares added times: what ``ResilientMCPClient.call_tool``
adds to the plain call, over what the minimal resilient client by hand
(:func:`bench._floors.minimal_client`) adds to it, both medians of the
per-round differences to the plain arm.
"""

from __future__ import annotations

import functools
import os
import sys

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import attrs

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from resilient_mcp import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ResiliencePipeline,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp._mcp._sdk_private import InMemoryTransport

from ._echo_server import build_server
from ._floors import TIMEOUT, minimal_client
from ._harness import Arm, Comparison, Factory, Variant
from ._ours import KEY, full_pipeline, new_recorder


TOOL: Final = "echo"
ARGUMENTS: Final = {"text": "hi"}
SERVER_SCRIPT: Final = Path(__file__).with_name("_echo_server.py")
TRANSPORTS: Final = ("in-memory", "stdio", "jsonrpc")
"""In process (the SDK's direct dispatch), over stdio, and in memory over
JSON-RPC (the SDK's ``InMemoryTransport``: a stream transport without a
second process, so without its noise)."""

_TITLES: Final = {
    "in-memory": "in-memory",
    "stdio": "stdio",
    "jsonrpc": "in memory over JSON-RPC",
}
_NOTES: Final = {
    "in-memory": "in-process MCPServer (direct dispatch), async echo tool",
    "stdio": "MCPServer subprocess over stdio (asyncio)",
    "jsonrpc": "in-process MCPServer behind the SDK's InMemoryTransport",
}

PLAIN: Final = "plain Client.call_tool"
MINIMAL: Final = "minimal resilient client (by hand)"
PIPELINE: Final = "pipeline.call(client.call_tool) + recording"
SDK_TIMEOUT: Final = "same, timeout as read_timeout_seconds"
CLIENT: Final = "ResilientMCPClient.call_tool"


@attrs.define(eq=False)
class Connection:
    """The server of one run and the one connection to it, shared."""

    transport: str
    _stack: AsyncExitStack | None = None
    _resilient: ResilientMCPClient | None = None

    def source(self, stack: AsyncExitStack) -> Any:
        """What to connect to: a server, or a transport factory (stdio)."""
        if self.transport == "in-memory":
            return build_server()
        if self.transport == "jsonrpc":
            # Private in the SDK, as the chaos toolkit's use of it is.
            return functools.partial(InMemoryTransport, build_server())
        params = StdioServerParameters(
            command=sys.executable, args=[str(SERVER_SCRIPT)]
        )
        # The stack closes it, after the servers it is the stderr of.
        devnull = stack.enter_context(
            Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115
        )
        return functools.partial(stdio_client, params, errlog=devnull)

    async def resilient(self, stack: AsyncExitStack) -> ResilientMCPClient:
        """The resilient client that owns the connection."""
        if self._stack is not stack or self._resilient is None:
            client = await stack.enter_async_context(
                ResilientMCPClient(self.source(stack), name="bench")
            )
            await client.list_tools()
            self._stack, self._resilient = stack, client
        return self._resilient

    async def client(self, stack: AsyncExitStack) -> Client:
        """The plain SDK client on that connection."""
        resilient = await self.resilient(stack)
        live = await resilient.supervisor.acquire()
        return live.client


def _plain(connection: Connection) -> Factory:
    async def make(stack: AsyncExitStack) -> Variant:
        client = await connection.client(stack)
        return functools.partial(client.call_tool, TOOL, ARGUMENTS)

    return make


def _piped(connection: Connection, *, sdk_timeout: bool) -> Factory:
    async def make(stack: AsyncExitStack) -> Variant:
        client = await connection.client(stack)
        if not sdk_timeout:
            pipeline = full_pipeline(recorder=new_recorder())
            return functools.partial(
                pipeline.call, client.call_tool, TOOL, ARGUMENTS
            )
        # No cancel scope of our own: the SDK enters one for every request
        # anyway, so the per-attempt timeout rides on it.
        pipeline = ResiliencePipeline(
            bulkhead=BulkheadConfig(name="bench", request_timeout=None),
            retry=RetryConfig(max_attempts=3),
            circuit_breaker=CircuitBreakerConfig(request_timeout=None),
            timeout=None,
            recorder=new_recorder(),
            record_key=KEY,
        )
        return functools.partial(
            pipeline.call, client.call_tool, TOOL, ARGUMENTS, TIMEOUT
        )

    return make


def _minimal(connection: Connection, backend: str) -> Factory:
    async def make(stack: AsyncExitStack) -> Variant:
        client = await connection.client(stack)
        op = functools.partial(client.call_tool, TOOL, ARGUMENTS)
        return minimal_client(backend, TIMEOUT, op)

    return make


def _resilient(connection: Connection) -> Factory:
    async def make(stack: AsyncExitStack) -> Variant:
        client = await connection.resilient(stack)
        return functools.partial(client.call_tool, TOOL, ARGUMENTS)

    return make


def mcp_arms(connection: Connection, backend: str) -> tuple[Arm, ...]:
    return (
        Arm(label=PLAIN, factory=_plain(connection), kind="floor"),
        Arm(
            label=MINIMAL,
            factory=_minimal(connection, backend),
            kind="floor",
            note=(
                "CapacityLimiter, failure counter, one move_on_after, "
                "one histogram record"
            ),
        ),
        Arm(
            label=PIPELINE,
            factory=_piped(connection, sdk_timeout=False),
            note="bulkhead+retry+breaker+timeout",
        ),
        Arm(
            label=SDK_TIMEOUT,
            factory=_piped(connection, sdk_timeout=True),
            note="pipeline timeout=None",
        ),
        Arm(
            label=CLIENT,
            factory=_resilient(connection),
            note="default config",
        ),
    )


def mcp_comparisons(
    backends: tuple[str, ...], *, quick: bool
) -> list[Comparison]:
    found = []
    for transport in TRANSPORTS:
        for backend in backends:
            connection = Connection(transport)
            # Short rounds, many of them: the arms' calls lie close together
            # in time, so the machine's drift (seconds) cancels out of the
            # per-round differences, and the median over rounds steadies
            # the per-call jitter of a round trip (100s of us over stdio).
            if quick:
                calls, rounds = 5, 2
            elif transport == "in-memory":
                calls, rounds = 8, 500
            elif transport == "jsonrpc":
                calls, rounds = 6, 300
            else:
                calls, rounds = 4, 800
            found.append(
                Comparison(
                    id=f"mcp-{transport}-{backend}",
                    title=f"MCP call_tool round trip, {_TITLES[transport]}",
                    backend=backend,
                    floor=PLAIN,
                    arms=mcp_arms(connection, backend),
                    calls=calls,
                    rounds=rounds,
                    note=_NOTES[transport],
                )
            )
    return found
