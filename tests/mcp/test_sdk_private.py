"""
Pins of what resilient_mcp relies on where the SDK promises nothing.

Each test here fails when an SDK upgrade changes a behaviour that the
adapter reproduces or depends on without a public API to hold it:
the defaults of the SDK's own HTTP client, the private in-memory transport
(``_mcp/_sdk_private.py``), the request guard of the cache probe, and the
error texts that ``told_by_text`` and ``translate_runtime_error`` read.
"""

from __future__ import annotations

import inspect

from contextvars import ContextVar

import httpx2
import pytest

from mcp.client import Client
from mcp.client import session as sdk_session
from mcp.client import streamable_http as sdk_streamable_http
from mcp.server import streamable_http_manager as sdk_http_manager
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    JSONRPCRequest,
    JSONRPCResponse,
)

from resilient_mcp._mcp._cache_probe import guard_session
from resilient_mcp._mcp._errors import (
    RESPONSE_STREAM_LOST,
    SESSION_EXPIRED_MESSAGES,
    STRUCTURED_CONTENT_INVALID,
    told_by_text,
)
from resilient_mcp._mcp._http import (
    MCP_HTTP_READ_TIMEOUT,
    MCP_HTTP_TIMEOUT,
    create_http_client,
    default_http_client,
    record_http_error,
)
from resilient_mcp._mcp._sdk_private import (
    InMemoryTransport,
    refuse_requests_while,
)


class Refused(Exception):
    """What the guarded session raises in these tests."""


def counting_server() -> tuple[MCPServer, dict[str, int]]:
    """A server with a cached tool listing and a tool that counts its runs."""
    runs = {"count": 0}
    server = MCPServer(
        "pins", cache_hints={"tools/list": CacheHint(ttl_ms=60_000)}
    )

    @server.tool()
    async def count() -> int:
        runs["count"] += 1
        return runs["count"]

    return server, runs


async def test_default_http_client_has_the_sdks_timeouts():
    """Our httpx2 client times out as the SDK's default client does."""
    async with default_http_client() as http:
        timeout = http.timeout

        assert 30.0 == MCP_HTTP_TIMEOUT
        assert 300.0 == MCP_HTTP_READ_TIMEOUT
        assert 30.0 == timeout.connect
        assert 300.0 == timeout.read
        assert 30.0 == timeout.write
        assert 30.0 == timeout.pool
        assert http.follow_redirects is False


async def test_default_http_client_matches_the_sdks_factory():
    """Every public setting equals that of the SDK's private factory."""
    utils = pytest.importorskip("mcp.shared._httpx_utils")
    ours = default_http_client()
    theirs = utils.create_mcp_http_client()
    async with ours, theirs:
        assert theirs.timeout == ours.timeout
        assert theirs.follow_redirects == ours.follow_redirects
        assert theirs.max_redirects == ours.max_redirects
        assert dict(theirs.headers) == dict(ours.headers)
        assert theirs.trust_env == ours.trust_env
        assert theirs.auth is None
        assert ours.auth is None


async def test_create_http_client_adds_the_status_hook():
    """The client for a URL carries the hook that records HTTP statuses."""
    async with create_http_client() as http:
        hooks = http.event_hooks["response"]

        assert [record_http_error] == hooks
        assert isinstance(http, httpx2.AsyncClient)


async def test_in_memory_transport_speaks_json_rpc():
    """InMemoryTransport serves an MCPServer over JSON-RPC messages."""
    server, _ = counting_server()
    request = JSONRPCRequest(
        jsonrpc="2.0",
        id=1,
        method="initialize",
        params={
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "pin", "version": "0"},
        },
    )
    async with InMemoryTransport(server) as (read, write):
        await write.send(SessionMessage(request))
        answer = await read.receive()

    assert isinstance(answer, SessionMessage)
    assert isinstance(answer.message, JSONRPCResponse)
    assert 1 == answer.message.id


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_guarded_session_refuses_requests_under_the_flag(mode):
    """Under the flag no request reaches the server; otherwise all do."""
    server, runs = counting_server()
    flag = ContextVar("pin_flag", default=False)
    async with Client(server, mode=mode) as client:
        refuse_requests_while(client, flag, Refused)
        token = flag.set(True)
        try:
            with pytest.raises(Refused):
                await client.call_tool("count", {})
        finally:
            flag.reset(token)
        result = await client.call_tool("count", {})

    assert 1 == runs["count"]
    assert 1 == result.structured_content["result"]


async def test_guarded_session_still_serves_the_sdk_cache():
    """A listing the SDK cached comes back under the flag: no request."""
    server, _ = counting_server()
    flag = ContextVar("pin_flag", default=False)
    async with Client(server) as client:
        refuse_requests_while(client, flag, Refused)
        first = await client.list_tools()
        token = flag.set(True)
        try:
            cached = await client.list_tools()
            with pytest.raises(Refused):
                await client.list_tools(cache_mode="bypass")
        finally:
            flag.reset(token)

    assert [t.name for t in first.tools] == [t.name for t in cached.tools]


async def test_a_client_without_cache_is_not_guarded():
    """Without a response cache nothing is probed, so nothing is wrapped."""
    server, _ = counting_server()
    async with Client(server, cache=None) as plain, Client(server) as cached:
        guard_session(plain)
        guard_session(cached)

        assert "send_request" not in vars(plain.session)
        assert "send_request" in vars(cached.session)


def test_response_stream_texts_are_the_sdks():
    """The -32000 texts of one lost SSE response start as we expect."""
    source = inspect.getsource(sdk_streamable_http)

    # _resolve_abandoned_request(writer, id, message, *, code=-32000)
    assert "code: int = CONNECTION_CLOSED" in source
    for text in (
        'f"SSE stream failed: {exc}"',
        '"SSE stream ended without a response"',
        '"SSE stream ended and reconnection attempts were exhausted"',
    ):
        # The message is the last argument: the code stays the default.
        assert f"original_request_id, {text}\n" in source
        assert text.lstrip("f").strip('"').startswith(RESPONSE_STREAM_LOST)
    assert "response-stream-lost" == told_by_text(
        CONNECTION_CLOSED, "SSE stream ended without a response"
    )
    assert told_by_text(CONNECTION_CLOSED, "Connection closed") is None


def test_session_expired_texts_are_the_sdks():
    """The -32600 texts of an unknown HTTP session are the SDK's."""
    client_source = inspect.getsource(sdk_streamable_http)
    server_source = inspect.getsource(sdk_http_manager)

    assert (
        'ErrorData(code=INVALID_REQUEST, message="Session terminated")'
        in client_source
    )
    assert '_error_response("Session not found", 404)' in server_source
    assert {"Session not found", "Session terminated"} == set(
        SESSION_EXPIRED_MESSAGES
    )
    assert "session-expired" == told_by_text(
        INVALID_REQUEST, "Session not found"
    )
    assert told_by_text(INVALID_REQUEST, "Invalid request") is None


def test_structured_content_texts_are_the_sdks():
    """The SDK's RuntimeErrors about structured content read as we expect."""
    source = inspect.getsource(sdk_session)
    invalid, missing = STRUCTURED_CONTENT_INVALID

    assert (
        f'raise RuntimeError(f"{invalid}{{name}}: {{error}}") from error'
        in source
    )
    assert f'raise RuntimeError(f"Tool {{name}} {missing}")' in source
