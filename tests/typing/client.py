"""
The MCP client as a user types it, checked by mypy --strict.

Not a test module: `nox -s typecheck` type-checks it.  The names it uses
load lazily at run time (``resilient_mcp.__getattr__``); type checkers must
still see the real classes, so every ``assert_type`` below fails if one of
them regresses to ``object`` or ``Any``.  ``warn_unused_ignores`` makes
each ``# type: ignore[...]`` a test too: the ignored error must exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import assert_type

import httpx2

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ListToolsResult

import resilient_mcp

from resilient_mcp import (
    AuthenticationError,
    BulkheadMetrics,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    InvalidResponseError,
    LatencyRecorder,
    LatencySnapshot,
    NotSentError,
    OperationMetrics,
    RequestTimeoutError,
    ResiliencePipeline,
    ResilientClientConfig,
    ResilientClientMetrics,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
    SessionClosedError,
    SessionConfig,
    SessionLostError,
    SessionMetrics,
    SessionState,
    TemporaryError,
    ToolError,
    ToolMetrics,
)


async def on_progress(
    progress: float, total: float | None, message: str | None
) -> None:
    print(progress, total, message)


def config() -> ResilientClientConfig:
    session = SessionConfig(connect_timeout=5.0, reconnect_max_delay=10.0)
    custom = ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(failure_threshold=3),
        retry=RetryConfig(max_attempts=2),
        timeout=timedelta(seconds=30),
        session=session,
        retryable_tools=frozenset({"search"}),
    )
    assert_type(custom.session, SessionConfig)
    assert_type(custom.timeout, float | None)
    assert_type(custom.retryable_tools, frozenset[str])
    assert_type(ResilientClientConfig.production(), ResilientClientConfig)
    assert_type(ResilientClientConfig.development(), ResilientClientConfig)
    authenticated = SessionConfig(
        auth=httpx2.BasicAuth("user", "secret"),
        login_timeout=timedelta(minutes=5),
    )
    assert_type(authenticated.auth, httpx2.Auth | None)
    assert_type(authenticated.login_timeout, float)
    SessionConfig(auth="Bearer x")  # type: ignore[arg-type]
    return custom


def read_metrics(client: ResilientMCPClient) -> None:
    metrics = client.metrics()
    assert_type(metrics, ResilientClientMetrics)
    assert_type(metrics.total_requests, int)
    assert_type(metrics.max_latency, float)
    assert_type(metrics.circuit_breaker, CircuitBreakerMetrics)
    assert_type(metrics.bulkheads, Mapping[str, BulkheadMetrics])
    assert_type(metrics.operations, Mapping[str, OperationMetrics])
    assert_type(metrics.tools, Mapping[str, ToolMetrics])
    assert_type(metrics.session, SessionMetrics)
    assert_type(metrics.session.state, SessionState)
    calls: OperationMetrics = metrics.operations["tools/call"]
    assert_type(calls.latency, LatencySnapshot)
    search: ToolMetrics = metrics.tools["search"]
    assert_type(search.circuit_breaker, CircuitBreakerMetrics | None)
    assert_type(client.circuit_breaker, CircuitBreaker)
    assert_type(client.tool_circuit_breaker("search"), CircuitBreaker | None)
    assert_type(client.latency_recorder, LatencyRecorder)
    assert_type(client.pipelines(), list[ResiliencePipeline])
    assert_type(client.config, ResilientClientConfig)
    assert_type(client.name, str)


async def main() -> None:
    server = MCPServer("typed")
    client = ResilientMCPClient(server, config=config(), name="typed")
    assert_type(client, ResilientMCPClient)
    async with client as entered:
        assert_type(entered, ResilientMCPClient)
        tools = await entered.list_tools(all_pages=True)
        assert_type(tools, ListToolsResult)
        try:
            result = await entered.call_tool(
                "search",
                {"query": "trio"},
                read_timeout_seconds=5.0,
                progress_callback=on_progress,
                request_state="opaque",
                meta={"progress_token": 1},
            )
        except (
            InvalidResponseError,
            NotSentError,
            RequestTimeoutError,
            ServerError,
            SessionClosedError,
            SessionLostError,
            ToolError,
        ) as exc:
            assert_type(exc.__cause__, BaseException | None)
        except AuthenticationError as exc:
            assert_type(exc.status_code, int | None)
            assert_type(exc.oauth_error, str | None)
        except TemporaryError:
            pass
        else:
            assert_type(result, CallToolResult)
            assert_type(result.is_error, bool)
        read_metrics(entered)

        # The SDK's parameters keep their types: wrong ones are errors.
        await entered.call_tool(
            "search",
            read_timeout_seconds="5",  # type: ignore[arg-type]
        )
        await entered.call_tool(
            "search",
            request_state=7,  # type: ignore[arg-type]
        )
        await entered.call_tool(
            "search",
            no_such_option=True,  # type: ignore[call-arg]
        )
        await entered.call_tool(42)  # type: ignore[arg-type]

    # A misspelt name is an error, not an attribute of type object.
    print(resilient_mcp.ResilientMCPClinet)  # type: ignore[attr-defined]
