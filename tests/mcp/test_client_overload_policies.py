"""
ResilientMCPClient's adaptive throttle and rate limiter, one per server.

The in-process flaky server runs in virtual time; the ``Retry-After``
test needs a real HTTP server (a 429 is an HTTP status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from resilient_mcp import (
    CircuitBreakerConfig,
    ConfigurationError,
    RateLimitedError,
    RateLimiterConfig,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
    ThrottledError,
    ThrottlingConfig,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


if TYPE_CHECKING:
    from conftest import HTTPServerProcess
    from resilient_mcp._mcp import SessionConfig


HANG_GUARD = 60  # seconds; never a timing assertion
NEVER_OPENS = 10**6  # a breaker threshold that is never reached


def make_server(**options):
    """An in-process flaky server and its state (crash disabled)."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=3, **options))
    return create_flaky_server(state=state), state


def test_throttling_and_rate_limit_are_off_by_default():
    """The client neither throttles nor rate-limits unless asked."""
    config = ResilientClientConfig()

    assert None is config.throttling
    assert None is config.rate_limit


@pytest.mark.parametrize("field", ["throttling", "rate_limit"])
def test_wrong_types_are_refused_naming_the_field(field):
    """A value that is not the field's config is refused by name."""
    with pytest.raises(ConfigurationError, match=f"\\.{field} must be"):
        ResilientClientConfig(**{field: 1.0})


async def test_one_throttle_per_server_drops_calls_locally(autojump_clock):
    """
    Against a server failing every call, the shared throttle drops calls.

    Every caller pipeline holds the same throttle, so tool calls teach it
    to drop a resource read too; the dropped calls never reach the server.
    """
    server, state = make_server(failure_rate=1.0)
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=1),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=NEVER_OPENS),
        throttling=ThrottlingConfig(k=2.0, window=60.0, seed=1),
    )
    throttled = 0
    async with ResilientMCPClient(server, config=config) as client:
        for _ in range(200):
            try:
                await client.call_tool("flaky", {})
            except ThrottledError:
                throttled += 1
            except ServerError:
                pass
        reads = []
        for _ in range(50):
            try:
                await client.read_resource("flaky://static")
            except ThrottledError:
                reads.append("throttled")
        throttles = {
            id(p.throttling) for p in client.pipelines()[:-1]
        }  # the refresh pipeline, last, is never throttled
        metrics = client.pipelines()[0].throttling.metrics()

    assert 1 == len(throttles)
    assert "throttled" in reads
    assert throttled > 0
    assert 200 - throttled == state.executions["flaky"]
    assert throttled <= metrics.throttled


async def test_one_rate_limiter_per_server(autojump_clock):
    """A tool call and a resource read share one limit (one turn each)."""
    server, _ = make_server()
    config = ResilientClientConfig(
        rate_limit=RateLimiterConfig(rate=1.0, period=10.0, burst=1)
    )
    async with ResilientMCPClient(server, config=config) as client:
        await client.call_tool("echo", {"text": "first"})
        with pytest.raises(RateLimitedError) as refused:
            await client.read_resource("flaky://static")
        await trio.sleep(10)
        await client.read_resource("flaky://static")
        limiters = {id(p.rate_limit) for p in client.pipelines()[:-1]}

    assert 1 == len(limiters)
    assert 10.0 >= refused.value.retry_after > 9.0


@pytest.mark.slow
async def test_retry_after_holds_the_rate_limiter(
    http_server: HTTPServerProcess, session_config: SessionConfig
):
    """A 429's Retry-After holds the client's rate limiter that long."""
    url = await http_server.start()
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=1),
        session=session_config,
        rate_limit=RateLimiterConfig(rate=1000.0, burst=100),
    )
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(url, config=config) as client:
            await client.call_tool(
                "configure",
                {
                    "http_status": 429,
                    "http_reject_count": 1,
                    "retry_after": "30",
                },
            )
            with pytest.raises(ServerError) as pushed_back:
                await client.call_tool("echo", {"text": "x"})
            with pytest.raises(RateLimitedError) as held:
                await client.call_tool("echo", {"text": "y"})

    assert 429 == pushed_back.value.status_code
    assert held.value.retry_after > 29  # the server's 30 s, not 1 ms


async def test_a_watched_client_reports_its_throttle_and_limiter_once(
    autojump_clock,
):
    """Shared by every pipeline, each is one object in the metrics."""
    from resilient_mcp.instrumentation import Watchlist  # noqa: PLC0415

    server, _ = make_server()
    config = ResilientClientConfig(
        throttling=ThrottlingConfig(), rate_limit=RateLimiterConfig()
    )
    async with ResilientMCPClient(server, config=config) as client:
        await client.call_tool("echo", {"text": "x"})
        watchlist = Watchlist()
        watchlist.watch_client(client)
        reading = watchlist.read()

    assert 1 == len(reading.throttles)
    assert 1 == len(reading.rate_limiters)
    assert 1 == reading.rate_limiters[0][1].admitted
