"""
ResilientMCPClient against a real in-process flaky server, in virtual time.

The in-process server runs its handlers in the caller's task, so trio's
MockClock drives the server's sleeps too: timeouts, backoff and recovery
are checked to the exact virtual second.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from resilient_mcp import (
    BulkheadConfig,
    BulkheadError,
    CallTimeout,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    ConfigurationError,
    Outcome,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
)
from resilient_mcp.testing import run_virtual
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


def make_server(**options):
    """
    A flaky server and its state (crash disabled in-process).

    It has one more tool than the stock flaky server: ``charge``, which
    has side effects, carries no annotations, and fails like ``flaky``.
    """
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=7, **options))
    server = create_flaky_server(state=state)

    @server.tool()
    async def charge(amount: int) -> int:
        """Charge an amount: not safe to repeat."""
        state.executions["charge"] += 1
        if state.should_fail():
            raise MCPError(code=INTERNAL_ERROR, message="charge failed")
        return amount

    return server, state


def config(**overrides):
    """Exact timings: no jitter, quick backoff."""
    settings = {
        "retry": RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
        "circuit_breaker": CircuitBreakerConfig(
            failure_threshold=3, recovery_timeout=30, request_timeout=10
        ),
    }
    settings.update(overrides)
    return ResilientClientConfig(**settings)


async def test_operations_return_the_sdks_types(autojump_clock):
    """Every operation works and returns the SDK's own result types."""
    server, state = make_server()
    async with ResilientMCPClient(server, config=config()) as client:
        tools = await client.list_tools()
        echoed = await client.call_tool("echo", {"text": "hi"})
        resources = await client.list_resources()
        templates = await client.list_resource_templates()
        static = await client.read_resource("flaky://static")
        prompts = await client.list_prompts()
        prompt = await client.get_prompt("greet", {"name": "Ada"})

    assert "echo" in {tool.name for tool in tools.tools}
    assert {"result": "hi"} == echoed.structured_content
    assert "flaky://static" in {str(r.uri) for r in resources.resources}
    assert templates.resource_templates
    assert "static content" in static.contents[0].text
    assert "greet" in {p.name for p in prompts.prompts}
    assert "Ada" in prompt.messages[0].content.text
    assert 1 == state.executions["echo"]


async def test_tool_errors_are_results_and_count_per_tool(autojump_clock):
    """is_error results come back, aren't retried, trip only their tool."""
    server, state = make_server()
    cfg = config(
        tool_circuit_breaker=CircuitBreakerConfig(failure_threshold=2)
    )
    async with ResilientMCPClient(server, config=cfg) as client:
        first = await client.call_tool("tool_error", {})
        await client.call_tool("tool_error", {})
        with pytest.raises(CircuitBreakerError) as info:
            await client.call_tool("tool_error", {})
        still_fine = await client.call_tool("echo", {"text": "x"})
        metrics = client.metrics()

    assert first.is_error
    assert not still_fine.is_error
    assert 2 == state.executions["tool_error"]
    assert "mcp/tool_error" == info.value.name
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 0 == metrics.circuit_breaker.total_failures
    assert 2 == metrics.tool_errors
    tool = metrics.tools["tool_error"]
    assert 2 == tool.tool_errors
    assert CircuitState.OPEN == tool.circuit_breaker.state
    assert 0 == metrics.retried_requests


async def test_idempotent_tools_are_retried(autojump_clock):
    """A tool annotated read-only/idempotent is retried after a failure."""
    server, state = make_server()
    async with ResilientMCPClient(server, config=config()) as client:
        state.fail_next = 1
        result = await client.call_tool("flaky", {"text": "ok"})
        metrics = client.metrics()

    assert "ok" == result.structured_content["result"]
    assert 2 == state.executions["flaky"]
    assert 1.0 == trio.current_time()  # one backoff of initial_delay
    assert 1 == metrics.retried_requests
    assert 1 == metrics.circuit_breaker.total_failures


async def test_unannotated_tools_are_not_retried(autojump_clock):
    """A call that reached the server is not repeated without annotations."""
    server, state = make_server()
    async with ResilientMCPClient(server, config=config()) as client:
        state.fail_next = 1
        with pytest.raises(ServerError):
            await client.call_tool("charge", {"amount": 5})
        metrics = client.metrics()

    assert 1 == state.executions["charge"]
    assert 1 == metrics.operations["tools/call"].failures[Outcome.ERROR]


async def test_user_may_allow_retries_by_name(autojump_clock):
    """retryable_tools allows retries whatever the annotations say."""
    server, state = make_server()
    cfg = config(retryable_tools={"charge"})
    async with ResilientMCPClient(server, config=cfg) as client:
        state.fail_next = 1
        result = await client.call_tool("charge", {"amount": 5})

    assert 5 == result.structured_content["result"]
    assert 2 == state.executions["charge"]


async def test_annotations_can_be_distrusted(autojump_clock):
    """trust_tool_annotations=False retries no tool call that ran."""
    server, state = make_server()
    cfg = config(trust_tool_annotations=False)
    async with ResilientMCPClient(server, config=cfg) as client:
        state.fail_next = 1
        with pytest.raises(ServerError):
            await client.call_tool("flaky", {})

    assert 1 == state.executions["flaky"]


async def test_invalid_params_are_permanent(autojump_clock):
    """-32602 is never retried and never counted against the server."""
    server, state = make_server()
    async with ResilientMCPClient(server, config=config()) as client:
        for _ in range(5):
            with pytest.raises(PermanentError) as info:
                await client.call_tool("reject", {})
        metrics = client.metrics()

    assert -32602 == info.value.code
    assert 5 == state.executions["reject"]
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 0 == metrics.circuit_breaker.total_failures
    assert 0 == metrics.retried_requests


async def test_open_breaker_fails_fast_without_calling(autojump_clock):
    """Server failures open the breaker; then calls never reach it."""
    server, state = make_server()
    cfg = config(retry=RetryConfig(max_attempts=1))
    async with ResilientMCPClient(server, config=cfg) as client:
        state.fail_next = 3
        for _ in range(3):
            with pytest.raises(ServerError):
                await client.call_tool("flaky", {})
        with pytest.raises(CircuitBreakerError):
            await client.call_tool("flaky", {})
        with pytest.raises(CircuitBreakerError):
            await client.list_tools()
        await trio.sleep(30)
        recovered = await client.call_tool("flaky", {"text": "back"})
        metrics = client.metrics()

    assert 4 == state.executions["flaky"]
    assert "back" == recovered.structured_content["result"]
    assert 1 == metrics.circuit_breaker_trips
    assert 2 == metrics.failures[Outcome.CIRCUIT_OPEN]


async def test_timeout_cancels_the_call_on_the_server(autojump_clock):
    """A hung tool is cancelled at the timeout, server handler included."""
    server, state = make_server()
    cfg = config(timeout=2.0, retry=RetryConfig(max_attempts=1))
    async with ResilientMCPClient(server, config=cfg) as client:
        with pytest.raises(CallTimeout):
            await client.call_tool("hang", {})
        assert 2.0 == trio.current_time()
        metrics = client.metrics()

    assert 1 == state.executions["hang"]
    assert 1 == metrics.failures[Outcome.TIMEOUT]
    assert 1 == metrics.circuit_breaker.total_failures


async def test_bulkhead_deadline_ends_a_tool_call_as_the_bulkheads(
    autojump_clock,
):
    """
    The bulkhead's deadline, handed down to the call's one scope, ends it.

    The call is cancelled on the server at the bulkhead's deadline (before
    the attempt's own timeout), fails with the bulkhead's timeout, and
    counts as neither breaker's failure, as with a scope of the pipeline's.
    """
    server, state = make_server()
    cfg = config(
        timeout=10.0,
        bulkheads={"tools": BulkheadConfig(name="tools", request_timeout=3)},
    )
    async with ResilientMCPClient(server, config=cfg) as client:
        with pytest.raises(CallTimeout) as info:
            await client.call_tool("hang", {})
        assert 3.0 == trio.current_time()
        metrics = client.metrics()
        tool_breaker = client.tool_circuit_breaker("hang").metrics()

    assert "bulkhead 'tools'" == info.value.where
    assert 1 == state.executions["hang"]
    assert 1 == metrics.failures[Outcome.TIMEOUT]
    assert 0 == metrics.circuit_breaker.total_failures
    assert 0 == tool_breaker.total_failures


async def test_a_tool_timeout_is_the_servers_failure_only(autojump_clock):
    """The attempt's timeout counts on the server's breaker, not the tool's."""
    server, _ = make_server()
    cfg = config(timeout=2.0, retry=RetryConfig(max_attempts=1))
    async with ResilientMCPClient(server, config=cfg) as client:
        with pytest.raises(CallTimeout) as info:
            await client.call_tool("hang", {})
        metrics = client.metrics()
        tool_breaker = client.tool_circuit_breaker("hang").metrics()

    assert 2.0 == info.value.timeout
    assert 1 == metrics.circuit_breaker.total_failures
    assert 0 == tool_breaker.total_failures
    assert 1 == tool_breaker.cancelled_requests


async def test_tools_bulkhead_isolates_and_accounts(autojump_clock):
    """Over the tools bulkhead, calls are rejected; resources go on."""
    server, _ = make_server()
    cfg = config(
        bulkheads={
            "tools": BulkheadConfig(max_concurrent_requests=2, queue_size=3)
        }
    )
    outcomes = []
    async with ResilientMCPClient(server, config=cfg) as client:

        async def call(i):
            try:
                await client.call_tool("slow", {"seconds": 1})
                outcomes.append("ok")
            except BulkheadError:
                outcomes.append("rejected")

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(call, i)
            await trio.testing.wait_all_tasks_blocked()
            listing = await client.list_resources()
        metrics = client.metrics()

    assert 5 == outcomes.count("ok")
    assert 5 == outcomes.count("rejected")
    assert listing.resources
    tools = metrics.operations["tools/call"]
    assert 10 == tools.total_requests
    assert 5 == tools.failures[Outcome.BULKHEAD_FULL]
    assert 5 == metrics.bulkhead_rejections
    assert 2 == metrics.bulkheads["tools"].max_concurrent_requests
    assert metrics.total_requests == (
        metrics.successful_requests
        + metrics.failed_requests
        + metrics.cancelled_requests
    )
    assert metrics.total_requests == (
        sum(op.latency.count for op in metrics.operations.values())
    )


async def test_cache_hits_are_not_requests(autojump_clock):
    """A listing served from the SDK cache isn't counted or timed."""
    server, state = make_server(list_cache_ttl_ms=60_000)
    async with ResilientMCPClient(server, config=config()) as client:
        await client.list_tools()
        await client.list_tools()
        await client.list_tools(cache_mode="bypass")
        metrics = client.metrics()

    listing = metrics.operations["tools/list"]
    assert 2 == listing.total_requests
    assert 2 == listing.latency.count
    # One at connect (annotations) and two of ours reached the server.
    assert 3 == state.requests["tools/list"]


async def test_errors_leave_async_with_unwrapped(autojump_clock):
    """An error in the body comes out as itself, not an ExceptionGroup."""
    server, _ = make_server()

    with pytest.raises(KeyError, match="body"):
        async with ResilientMCPClient(server, config=config()):
            raise KeyError("body")


def test_works_under_asyncio():
    """The client runs on asyncio through anyio, in virtual time too."""

    async def scenario():
        server, state = make_server()
        async with ResilientMCPClient(server, config=config()) as client:
            state.fail_next = 1
            result = await client.call_tool("flaky", {"text": "aio"})
            return result.structured_content["result"], client.metrics()

    text, metrics = run_virtual(scenario, backend="asyncio")

    assert "aio" == text
    assert 1 == metrics.retried_requests


def test_presets_follow_the_seed():
    """The production and development presets carry the seed's values."""
    production = ResilientClientConfig.production()
    development = ResilientClientConfig.development()

    assert 3 == production.circuit_breaker.failure_threshold
    assert 300.0 == production.circuit_breaker.monitoring_window
    assert 5 == production.retry.max_attempts
    assert 20 == production.bulkheads["tools"].max_concurrent_requests
    assert 2 == development.circuit_breaker.failure_threshold
    assert development.retry.jitter is False
    assert 5 == development.bulkheads["tools"].max_concurrent_requests
    assert 3 == development.bulkheads["completion"].max_concurrent_requests


def test_bad_client_config_is_rejected():
    """Invalid client configuration fails at construction, naming the field."""
    with pytest.raises(ConfigurationError, match=r"bulkheads keys must"):
        ResilientClientConfig(bulkheads={"tool": BulkheadConfig()})
    with pytest.raises(ConfigurationError, match=r"\.timeout must be"):
        ResilientClientConfig(timeout=0)
    with pytest.raises(ConfigurationError, match=r"max_tracked_tools"):
        ResilientClientConfig(max_tracked_tools=0)
