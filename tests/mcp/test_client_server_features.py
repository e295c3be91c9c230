"""
The rest of mcp.Client on ResilientMCPClient (issue 12, item 18).

The server's identity, and the 2025-era operations (subscriptions, the
logging level, roots).  Against a real in-process low-level server at
protocol 2025-11-25 (``mode="legacy"``), where these operations exist,
and at 2026-07-28, where the server refuses them.  Each goes through the
pipeline: counted under its MCP method, retried on transient errors (all
are safe to repeat), refused by an open circuit.
"""

from __future__ import annotations

import warnings

import pytest
import trio

from mcp.server import Server
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import (
    INTERNAL_ERROR,
    EmptyResult,
    ListResourcesResult,
)

from resilient_mcp import (
    CircuitBreakerError,
    Outcome,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    SessionConfig,
)


def subscribing_server(fail_next: dict[str, int]) -> tuple[Server, list]:
    """
    A server that records subscriptions, logging levels and roots news.

    ``fail_next[method]`` makes the next that many requests of *method*
    fail with ``-32603`` (a transient server error).
    """
    heard: list = []

    def maybe_fail(method: str) -> None:
        if fail_next.get(method, 0):
            fail_next[method] -= 1
            raise MCPError(code=INTERNAL_ERROR, message=f"{method} failed")

    async def subscribe(ctx, params):
        maybe_fail("resources/subscribe")
        heard.append(("subscribe", str(params.uri)))
        return EmptyResult()

    async def unsubscribe(ctx, params):
        maybe_fail("resources/unsubscribe")
        heard.append(("unsubscribe", str(params.uri)))
        return EmptyResult()

    async def set_level(ctx, params):
        maybe_fail("logging/setLevel")
        heard.append(("level", params.level))
        return EmptyResult()

    async def roots_changed(ctx, params):
        heard.append(("roots", None))

    async def list_resources(ctx, params):
        return ListResourcesResult(resources=[])

    with warnings.catch_warnings():  # the SDK's server warns of logging
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = Server(
            "features",
            instructions="subscribe freely",
            on_list_resources=list_resources,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=unsubscribe,
            on_set_logging_level=set_level,
            on_roots_list_changed=roots_changed,
        )
    return server, heard


def legacy(**overrides):
    """A 2025-11-25 session, exact retries (one retry, 1 s apart)."""
    settings = {
        "retry": RetryConfig(max_attempts=2, initial_delay=1, jitter=False),
        "session": SessionConfig(client_options={"mode": "legacy"}),
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


async def test_server_identity_is_the_sdks(autojump_clock):
    """server_capabilities & co. are what the SDK's Client reports."""
    server, _ = subscribing_server({})
    client = ResilientMCPClient(server, config=legacy())
    with pytest.raises(RuntimeError, match="no MCP session"):
        _ = client.server_capabilities
    async with client:
        capabilities = client.server_capabilities
        live = client.supervisor.live_session().client
        expected = live.server_capabilities

        assert expected == capabilities
        assert capabilities.resources.subscribe
        assert capabilities.logging is not None
        assert "features" == client.server_info.name
        assert "subscribe freely" == client.instructions
        assert live.protocol_version == client.protocol_version
        assert "2025-11-25" == client.protocol_version


async def test_legacy_operations_reach_the_server(autojump_clock):
    """Each operation arrives once and returns the SDK's result type."""
    server, heard = subscribing_server({})
    async with ResilientMCPClient(server, config=legacy()) as client:
        with pytest.warns(MCPDeprecationWarning, match="resources/subscribe"):
            subscribed = await client.subscribe_resource("demo://a")
        with pytest.warns(MCPDeprecationWarning, match="unsubscribe"):
            unsubscribed = await client.unsubscribe_resource("demo://a")
        with pytest.warns(MCPDeprecationWarning, match="logging"):
            level = await client.set_logging_level("warning")
        with pytest.warns(MCPDeprecationWarning, match="roots"):
            roots = await client.send_roots_list_changed()
        await trio.testing.wait_all_tasks_blocked()
        metrics = client.metrics()

    assert isinstance(subscribed, EmptyResult)
    assert isinstance(unsubscribed, EmptyResult)
    assert isinstance(level, EmptyResult)
    assert roots is None
    assert [
        ("subscribe", "demo://a"),
        ("unsubscribe", "demo://a"),
        ("level", "warning"),
        ("roots", None),
    ] == heard
    for method in (
        "resources/subscribe",
        "resources/unsubscribe",
        "logging/setLevel",
        "notifications/roots/list_changed",
    ):
        assert 1 == metrics.operations[method].successful_requests
    assert 2 == metrics.bulkheads["resources"].completed_requests


@pytest.mark.filterwarnings(
    "ignore::mcp.shared.exceptions.MCPDeprecationWarning"
)
@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("resources/subscribe", lambda c: c.subscribe_resource("demo://a")),
        (
            "resources/unsubscribe",
            lambda c: c.unsubscribe_resource("demo://a"),
        ),
        ("logging/setLevel", lambda c: c.set_logging_level("debug")),
    ],
)
async def test_legacy_requests_are_retried(autojump_clock, method, call):
    """A transient server error is retried: each is safe to repeat."""
    server, heard = subscribing_server({method: 1})
    async with ResilientMCPClient(server, config=legacy()) as client:
        start = trio.current_time()
        await call(client)
        elapsed = trio.current_time() - start
        metrics = client.metrics()

    assert 1 == len(heard)
    assert 1.0 == elapsed  # one retry, after the 1 s backoff
    assert 1 == metrics.retried_requests
    assert 1 == metrics.operations[method].successful_requests
    assert 1 == metrics.circuit_breaker.total_failures


@pytest.mark.filterwarnings(
    "ignore::mcp.shared.exceptions.MCPDeprecationWarning"
)
async def test_an_open_circuit_refuses_them(autojump_clock):
    """With the circuit open nothing is sent; each is a rejection."""
    server, heard = subscribing_server({})
    async with ResilientMCPClient(server, config=legacy()) as client:
        client.circuit_breaker.force_open()
        for call in (
            client.subscribe_resource("demo://a"),
            client.unsubscribe_resource("demo://a"),
            client.set_logging_level("info"),
            client.send_roots_list_changed(),
        ):
            with pytest.raises(CircuitBreakerError):
                await call
        await trio.testing.wait_all_tasks_blocked()
        metrics = client.metrics()

    assert [] == heard
    assert 4 == metrics.failures[Outcome.CIRCUIT_OPEN]


@pytest.mark.filterwarnings(
    "ignore::mcp.shared.exceptions.MCPDeprecationWarning"
)
async def test_a_2026_server_refuses_them_permanently(autojump_clock):
    """At 2026-07-28 the methods are gone: PermanentError, never retried."""
    server, heard = subscribing_server({})
    config = legacy(session=SessionConfig())
    async with ResilientMCPClient(server, config=config) as client:
        assert "2025-11-25" != client.protocol_version
        with pytest.raises(PermanentError) as info:
            await client.subscribe_resource("demo://a")
        metrics = client.metrics()

    assert -32601 == info.value.code
    assert [] == heard
    assert 0 == metrics.retried_requests
    assert 0 == metrics.circuit_breaker.total_failures


async def test_send_ping_warns_as_the_sdk_does(autojump_clock):
    """send_ping() works at 2025-11-25 and warns like mcp.Client's."""
    server, _ = subscribing_server({})
    async with ResilientMCPClient(server, config=legacy()) as client:
        with pytest.warns(MCPDeprecationWarning, match="ping is removed"):
            pong = await client.send_ping()
        metrics = client.metrics()

    assert isinstance(pong, EmptyResult)
    assert 1 == metrics.operations["ping"].successful_requests
