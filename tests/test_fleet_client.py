"""
ResilientClientConfig.store: a client's server policies shared through Redis.

Real parts: a redis-server on 127.0.0.1 on a free port
(tests/_redis_server.py; the tests skip, saying why, without the binary)
and real in-process MCP servers.  Real time: Redis has its own clock.
"""

from __future__ import annotations

import pytest
import trio

from resilient_mcp import (
    CircuitBreakerConfig,
    CircuitBreakerError,
    ConfigurationError,
    RateLimitedError,
    RateLimiterConfig,
    RedisStore,
    ResilienceError,
    RetryConfig,
)
from resilient_mcp._mcp import ResilientClientConfig, ResilientMCPClient
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


pytestmark = pytest.mark.slow

TIMEOUT = 0.25  # seconds: generous, a loaded CI machine is slow
LIMIT = 30  # seconds: hang guard


def _server(failure_rate: float):
    state = FlakyState(
        FlakyServerConfig(allow_crash=False, seed=7, failure_rate=failure_rate)
    )
    return create_flaky_server(state=state), state


def _config(store: RedisStore, **overrides) -> ResilientClientConfig:
    settings = {
        "circuit_breaker": CircuitBreakerConfig(
            failure_threshold=2, recovery_timeout=60
        ),
        "retry": RetryConfig(max_attempts=1),
        "tool_circuit_breaker": None,
        "store": store,
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


async def test_two_clients_on_one_store_share_the_servers_breaker(
    redis_server,
):
    """One client's failures open the breaker of another of that name."""
    failing, _ = _server(1.0)
    healthy, healthy_state = _server(0.0)
    seen: list[str] = []
    with trio.fail_after(LIMIT):
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            sick = ResilientMCPClient(
                failing, config=_config(store), name="srv"
            )
            well = ResilientMCPClient(
                healthy, config=_config(store), name="srv"
            )
            async with sick, well:
                for client in (well, sick, sick, well):
                    await trio.sleep(0.1)  # past the refresh interval
                    try:
                        await client.call_tool("flaky", {})
                        seen.append("ok")
                    except CircuitBreakerError:
                        seen.append("rejected")
                    except ResilienceError:
                        seen.append("failed")
                errors = well.circuit_breaker.metrics().store_errors

    assert ["ok", "failed", "failed", "rejected"] == seen
    assert 1 == healthy_state.executions["flaky"]
    assert 0 == errors


async def test_two_clients_on_one_store_share_the_rate_limit(redis_server):
    """The second client of that name finds the fleet's one call spent."""
    server, state = _server(0.0)
    limit = RateLimiterConfig(rate=1, period=60, burst=1)
    seen: list[str] = []
    with trio.fail_after(LIMIT):
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            config = _config(store, rate_limit=limit)
            a = ResilientMCPClient(server, config=config, name="srv")
            b = ResilientMCPClient(server, config=config, name="srv")
            async with a, b:
                for client in (a, b):
                    try:
                        await client.call_tool("flaky", {})
                        seen.append("ok")
                    except RateLimitedError:
                        seen.append("limited")

    assert ["ok", "limited"] == seen
    assert 1 == state.executions["flaky"]


def test_the_store_is_validated():
    """A store that is not a StateStore is refused, naming the field."""
    with pytest.raises(ConfigurationError, match=r"\.store must be"):
        ResilientClientConfig(store="redis://localhost")


def test_no_store_by_default():
    """Without a store the client's policies stay in the process."""
    assert ResilientClientConfig().store is None
