"""
Bad input, from the server and from the user: one call fails, clearly.

The server's bad answers are made by a :class:`ChaosTransport` over a real
in-process server (the SDK's in-memory JSON-RPC transport) in virtual time,
so timeouts are exact; ``test_bad_input_stdio.py`` repeats them over a
real subprocess.  What the SDK does with each, and what resilient_mcp
makes of it:

* garbled JSON: the SDK cannot tell which request the bytes answered, so
  it hands the parse error to the message handler and the request waits;
  ours ends at its timeout (``CallTimeout``);
* an answer for an unknown id: the SDK drops it (a debug log line); the
  request it was meant for waits, and ends at its timeout;
* a result of the wrong shape: the SDK raises a bare pydantic error
  quoting the values; ours is :class:`InvalidResponseError`, naming the
  fields only (issue 6 regression);
* structured content against the tool's output schema: the SDK raises a
  ``RuntimeError`` quoting the values; ours is ``InvalidResponseError``;
* an oversized answer: neither the in-memory nor the stdio transport has a
  size limit, so it is delivered whole (streamable HTTP's SSE limit is in
  ``test_network.py``).

In every case the session stays up and the other calls go on.
"""

from __future__ import annotations

import datetime as dt

import pydantic_core
import pytest
import trio
import trio.testing

from hypothesis import given
from hypothesis import strategies as st
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    ListToolsResult,
    TextContent,
    Tool,
)

from resilient_mcp import (
    CallTimeout,
    CircuitBreakerError,
    CircuitState,
    InvalidResponseError,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp._mcp._tool_call import check_arguments
from resilient_mcp.testing.chaos import (
    PADDING_KEY,
    ChaosTransport,
    Corrupt,
    Corruption,
    FaultInjector,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


pytestmark = pytest.mark.chaos

TIMEOUT = 5.0  # seconds per attempt
OTHERS = 5  # well-behaved calls alongside the spoilt one
WRONG = "chaos: wrong type"  # the values a schema mismatch puts in


def setup(kind: Corruption, **config):
    """A flaky server behind a transport that spoils chosen answers."""
    state = FlakyState(FlakyServerConfig(allow_crash=False, seed=6))
    server = create_flaky_server(state=state)
    injector = FaultInjector(
        [Corrupt(rate=1.0, kind=kind, size=1_000_000)], seed=6, enabled=False
    )
    chaos = ChaosTransport(server, injector, methods={"tools/call"})
    settings = {"timeout": TIMEOUT, "retry": RetryConfig(jitter=False)}
    settings.update(config)
    client = ResilientMCPClient(
        chaos, config=ResilientClientConfig(**settings)
    )
    return client, injector, state


async def spoil_one_call(client, injector, tool, arguments):
    """
    Make one call whose answer is spoilt, with others alongside.

    Returns the spoilt call's outcome (result or exception), its duration,
    and the results of the others.
    """
    outcome = {}
    others = []

    async def victim():
        start = trio.current_time()
        try:
            outcome["value"] = await client.call_tool(tool, arguments)
        except Exception as exc:
            outcome["value"] = exc
        outcome["seconds"] = trio.current_time() - start

    async def other(i):
        others.append(await client.call_tool("echo", {"text": str(i)}))

    async with trio.open_nursery() as nursery:
        injector.enabled = True
        nursery.start_soon(victim)
        await trio.testing.wait_all_tasks_blocked()
        injector.enabled = False
        for i in range(OTHERS):
            nursery.start_soon(other, i)
    return outcome["value"], outcome["seconds"], others


@pytest.mark.parametrize(
    "kind", [Corruption.GARBLED_JSON, Corruption.UNKNOWN_ID]
)
async def test_an_unattributable_answer_times_out_that_call_only(
    autojump_clock, kind
):
    """
    A garbled or misaddressed answer fails only its call, at its timeout.

    The session and the other calls go on.
    """
    client, injector, state = setup(kind)
    async with client:
        error, seconds, others = await spoil_one_call(
            client, injector, "add", {"a": 1, "b": 2}
        )
        after = await client.call_tool("add", {"a": 2, "b": 2})
        metrics = client.metrics()

    assert isinstance(error, CallTimeout)
    assert TIMEOUT == seconds
    assert OTHERS == len([r for r in others if not r.is_error])
    assert {"result": 4.0} == after.structured_content
    assert 2 == state.executions["add"]  # it ran; its answer was lost
    assert (1, 0) == (metrics.session.connects, metrics.session.sessions_lost)
    assert 1 == metrics.circuit_breaker.total_failures
    assert 1 == injector.metrics().injected[f"corrupt:{kind.value}"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (Corruption.SCHEMA_MISMATCH, "invalid result"),
        (Corruption.OUTPUT_SCHEMA_MISMATCH, "violates its output schema"),
    ],
)
async def test_a_mistyped_result_is_a_clear_error_for_that_call_only(
    autojump_clock, kind, expected
):
    """
    A mistyped result fails its call at once with InvalidResponseError.

    The error quotes no values; the session and the other calls go on.
    """
    client, injector, _ = setup(kind)
    async with client:
        error, seconds, others = await spoil_one_call(
            client, injector, "add", {"a": 1, "b": 2}
        )
        after = await client.call_tool("add", {"a": 2, "b": 2})
        metrics = client.metrics()

    assert isinstance(error, InvalidResponseError)
    assert expected in str(error)
    assert WRONG not in str(error)
    assert "resilient_mcp/chaos" not in str(error)
    assert 0.0 == seconds
    assert OTHERS == len(others)
    assert {"result": 4.0} == after.structured_content
    assert (1, 0) == (metrics.session.connects, metrics.session.sessions_lost)
    assert 1 == metrics.circuit_breaker.total_failures


async def test_an_oversized_answer_is_delivered_whole(autojump_clock):
    """A 1 MB answer reaches its caller intact; the session carries on."""
    client, injector, _ = setup(Corruption.OVERSIZED)
    async with client:
        result, seconds, others = await spoil_one_call(
            client, injector, "add", {"a": 1, "b": 2}
        )
        metrics = client.metrics()

    assert {"result": 3.0} == result.structured_content
    assert 1_000_000 == len(result.meta[PADDING_KEY])
    assert 0.0 == seconds
    assert OTHERS == len(others)
    assert 0 == metrics.circuit_breaker.total_failures


@pytest.mark.parametrize(
    "kind",
    [
        Corruption.GARBLED_JSON,
        Corruption.UNKNOWN_ID,
        Corruption.SCHEMA_MISMATCH,
        Corruption.OUTPUT_SCHEMA_MISMATCH,
    ],
)
async def test_a_safe_call_with_a_spoilt_answer_is_retried(
    autojump_clock, kind
):
    """An idempotent call whose answer was spoilt succeeds on its retry."""
    client, injector, state = setup(
        kind, retry=RetryConfig(max_attempts=2, initial_delay=1, jitter=False)
    )
    async with client:
        result, _, others = await spoil_one_call(
            client, injector, "echo", {"text": "again"}
        )
        metrics = client.metrics()

    assert {"result": "again"} == result.structured_content
    assert OTHERS == len(others)
    assert 1 + OTHERS + 1 == state.executions["echo"]
    assert 1 == metrics.retried_requests


# -- bad input from the user -------------------------------------------------


class Opaque:
    """A value no JSON serialiser knows."""


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"text": Opaque()}, "not JSON-serialisable"),
        ({"text": b"\xff\xfe"}, "not JSON-serialisable"),
        ({1: "x"}, "string keys"),
        ("text=x", "must be a mapping, not str"),
        (["x"], "must be a mapping, not list"),
    ],
)
async def test_unsendable_arguments_fail_clearly_and_trip_nothing(
    autojump_clock, arguments, problem
):
    """
    Unsendable arguments fail at once with PermanentError, tripping nothing.

    The code is -32602; it happens before any policy, so nothing is sent
    and no breaker counts the call.
    """
    client, injector, state = setup(Corruption.GARBLED_JSON)
    async with client:
        before = dict(state.requests)
        with pytest.raises(PermanentError) as info:
            await client.call_tool("echo", arguments)
        after = dict(state.requests)
        metrics = client.metrics()
        tool_breaker = client.tool_circuit_breaker("echo")

    assert INVALID_PARAMS == info.value.code
    assert "tool 'echo'" in str(info.value)
    assert problem in str(info.value)
    assert "\\xff" not in str(info.value)
    assert before == after
    assert 0 == injector.metrics().calls
    assert 0 == metrics.total_requests
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 0 == metrics.circuit_breaker.total_requests
    assert 0 == tool_breaker.metrics().total_requests


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\ud800", "a\udfff", "caf\u00e9"])  # lone surrogates
    | st.binary(max_size=4)
    | st.dates()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.frozensets(st.integers(), max_size=2)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=5) | st.integers(), _VALUES))
def test_the_argument_check_agrees_with_the_sdks_serialiser(arguments):
    """
    The check refuses exactly what the SDK's serialiser cannot serialise.

    Its fast path (flat dicts of numbers and ASCII text) must never pass
    what pydantic's serialiser refuses, nor refuse what it accepts.
    """
    try:
        pydantic_core.to_json(arguments)
    except ValueError:
        serialisable = False
    else:
        serialisable = all(isinstance(key, str) for key in arguments)
    try:
        check_arguments("t", arguments)
    except PermanentError:
        accepted = False
    else:
        accepted = True

    assert serialisable == accepted


async def test_arguments_the_sdk_can_serialise_still_pass(autojump_clock):
    """Dates, UUIDs and tuples are serialised as the SDK does: no error."""
    client, _, state = setup(Corruption.GARBLED_JSON)
    async with client:
        result = await client.call_tool("echo", {"text": "plain"})
        dated = await client.call_tool("echo", {"text": dt.date(2024, 8, 6)})

    assert {"result": "plain"} == result.structured_content
    assert {"result": "2024-08-06"} == dated.structured_content
    assert 2 == state.executions["echo"]


async def test_an_unknown_tool_is_the_servers_answer_not_its_failure(
    autojump_clock,
):
    """
    An unknown tool gets the server's is_error answer, not a server failure.

    The server's breaker never counts it (the name's own breaker fences it
    off), and the other tools go on.
    """
    client, _, _ = setup(Corruption.GARBLED_JSON)
    async with client:
        answers = [await client.call_tool("no-such-tool") for _ in range(5)]
        with pytest.raises(CircuitBreakerError) as fenced:
            await client.call_tool("no-such-tool")
        echoed = await client.call_tool("echo", {"text": "fine"})
        metrics = client.metrics()

    assert all(answer.is_error for answer in answers)
    assert "Unknown tool: no-such-tool" in answers[0].content[0].text
    assert "mcp/no-such-tool" == fenced.value.name
    assert {"result": "fine"} == echoed.structured_content
    assert CircuitState.CLOSED == metrics.circuit_breaker.state
    assert 0 == metrics.circuit_breaker.total_failures
    assert 5 == metrics.tools["no-such-tool"].tool_errors


async def test_an_unknown_tool_rejected_by_the_server_is_permanent(
    autojump_clock,
):
    """
    A spec-following server's -32602 for an unknown tool is permanent.

    The PermanentError is never retried and counted by no breaker.
    """
    calls = []

    async def list_tools(ctx, params):
        return ListToolsResult(
            tools=[Tool(name="known", input_schema={"type": "object"})]
        )

    async def call_tool(ctx, params):
        calls.append(params.name)
        if params.name != "known":
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        return CallToolResult(content=[TextContent(type="text", text="ok")])

    server = Server("strict", on_list_tools=list_tools, on_call_tool=call_tool)
    async with ResilientMCPClient(server) as client:
        with pytest.raises(PermanentError) as info:
            await client.call_tool("nope", {})
        known = await client.call_tool("known", {})
        metrics = client.metrics()

    assert INVALID_PARAMS == info.value.code
    assert "Unknown tool: nope" in str(info.value)
    assert "ok" == known.content[0].text
    assert ["nope", "known"] == calls
    assert 0 == metrics.circuit_breaker.total_failures
    assert 0 == metrics.retried_requests
