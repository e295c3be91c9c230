"""
The flaky test server: its tools, knobs, HTTP fault injection and CLI.

The MCP side runs in-process; the fault middleware is driven through
httpx2's ASGI transport, without a network.
"""

from __future__ import annotations

import json

from typing import TYPE_CHECKING, Any

import httpx2
import pytest
import trio

from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    PromptReference,
    ResourceTemplateReference,
)

from resilient_mcp.testing.flaky_server import (
    ITEM_TEMPLATE,
    FlakyServerConfig,
    FlakyState,
    HTTPFaultMiddleware,
    create_flaky_server,
    main,
)


if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


async def structured(client: Client, tool: str, **arguments: Any) -> Any:
    """Call *tool* and return its structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    assert result.structured_content is not None
    return result.structured_content.get("result", result.structured_content)


async def test_tool_annotations():
    """
    Safe tools are retryable, unsafe ones destructive, ``add`` unannotated.
    """
    server = create_flaky_server(FlakyServerConfig(allow_crash=False))
    async with Client(server) as client:
        tools = {
            t.name: t.annotations for t in (await client.list_tools()).tools
        }

    assert tools["echo"] is not None
    assert tools["echo"].read_only_hint
    assert tools["echo"].idempotent_hint
    assert tools["increment"] is not None
    assert not tools["increment"].idempotent_hint
    assert tools["increment"].destructive_hint
    assert None is tools["add"]
    assert {
        "echo",
        "add",
        "increment",
        "flaky",
        "slow",
        "hang",
        "crash",
        "tool_error",
        "reject",
        "stats",
        "configure",
    } == set(tools)


async def test_tools_count_their_executions(flaky_state, inproc_server):
    """
    Every tool body that runs is counted; ``increment`` really increments.
    """
    async with Client(inproc_server) as client:
        assert "x" == await structured(client, "echo", text="x")
        assert 3.5 == await structured(client, "add", a=1, b=2.5)
        assert 1 == await structured(client, "increment")
        assert 6 == await structured(client, "increment", amount=5)
        assert "done" == await structured(client, "slow", seconds=0)
        stats = await structured(client, "stats")

    assert 6 == flaky_state.counter == stats["counter"]
    assert {"echo": 1, "add": 1, "increment": 2, "slow": 1} == (
        stats["executions"]
    )
    assert 6 == stats["requests"]["tools/call"]


async def test_flaky_is_seeded():
    """
    With the same seed, ``flaky`` fails on the same calls.
    """

    async def pattern() -> list[bool]:
        server = create_flaky_server(
            FlakyServerConfig(failure_rate=0.5, seed=42, allow_crash=False)
        )
        async with Client(server) as client:
            outcomes = []
            for _ in range(20):
                result = await client.call_tool(
                    "flaky", {"mode": "tool_error"}
                )
                outcomes.append(result.is_error)
            return outcomes

    first = await pattern()

    assert first == await pattern()
    assert 0 < sum(first) < 20


async def test_fail_next_overrides_the_rate(flaky_state, inproc_server):
    """
    ``fail_next`` fails exactly that many calls, whatever the rate.
    """
    async with Client(inproc_server) as client:
        await structured(client, "configure", fail_next=2)
        results = [
            (await client.call_tool("flaky", {"mode": "tool_error"})).is_error
            for _ in range(3)
        ]

    assert [True, True, False] == results


async def test_configure_rejects_bad_values(flaky_state, inproc_server):
    """
    Out-of-range knobs are refused, and nothing changes.
    """
    async with Client(inproc_server) as client:
        bad_rate = await client.call_tool("configure", {"failure_rate": 2})
        bad_status = await client.call_tool("configure", {"http_status": 200})
        bad_next = await client.call_tool("configure", {"fail_next": -1})

    assert bad_rate.is_error
    assert bad_status.is_error
    assert bad_next.is_error
    assert 0.0 == flaky_state.failure_rate
    assert 503 == flaky_state.http_status


async def test_latency_spares_control_tools(inproc_server, autojump_clock):
    """
    Added latency delays ordinary requests, not the control tools.
    """
    async with Client(inproc_server) as client:
        await structured(client, "configure", latency=2.0)
        start = trio.current_time()
        await structured(client, "stats")
        control = trio.current_time() - start
        await structured(client, "echo", text="late")
        delayed = trio.current_time() - start

    assert 0.0 == control
    assert 2.0 == delayed


async def test_reset_counters(flaky_state, inproc_server):
    """
    ``reset_counters`` zeroes the counters but keeps the knobs.
    """
    async with Client(inproc_server) as client:
        await structured(client, "increment")
        stats = await structured(
            client, "configure", failure_rate=0.25, reset_counters=True
        )

    assert 0 == stats["counter"]
    assert {} == stats["executions"]
    assert 0.25 == stats["failure_rate"]


async def test_resources_prompts_completions(inproc_server):
    """
    Resources, templates, the prompt and the completions all answer.
    """
    async with Client(inproc_server) as client:
        templates = await client.list_resource_templates()
        static = await client.read_resource("flaky://static")
        item = await client.read_resource("flaky://item/7")
        stats = await client.read_resource("flaky://stats")
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        names = await client.complete(
            PromptReference(name="greet"), {"name": "name", "value": "c"}
        )
        items = await client.complete(
            ResourceTemplateReference(uri=ITEM_TEMPLATE),
            {"name": "item_id", "value": "4"},
        )

    assert [ITEM_TEMPLATE] == [
        t.uri_template for t in templates.resource_templates
    ]
    assert "static content" == static.contents[0].text  # type: ignore[union-attr]
    assert "item 7" == item.contents[0].text  # type: ignore[union-attr]
    assert "pid" in json.loads(stats.contents[0].text)  # type: ignore[union-attr]
    assert "Hello, Ada!" == prompt.messages[0].content.text  # type: ignore[union-attr]
    assert ["carol"] == names.completion.values
    assert ["42"] == items.completion.values


async def test_list_cache_hint(flaky_state):
    """
    ``list_cache_ttl_ms`` lets the SDK cache list results client-side.
    """
    state = FlakyState(FlakyServerConfig(list_cache_ttl_ms=60_000))
    async with Client(create_flaky_server(state=state)) as client:
        await client.list_tools()
        await client.list_tools()
        await client.list_tools(cache_mode="bypass")

    assert 2 == state.requests["tools/list"]


def test_config_and_state_must_agree(flaky_state):
    """
    Passing a config that is not the state's is an error.
    """
    with pytest.raises(ValueError, match="not both"):
        create_flaky_server(FlakyServerConfig(seed=1), state=flaky_state)


def test_cli_rejects_bad_values(capsys):
    """
    An invalid option value exits with status 2 and a message.
    """
    assert 2 == main(["http", "--failure-rate", "1.5"])
    assert "probability" in capsys.readouterr().err


def _jsonrpc(method: str, request_id: int | None = 1, **params: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params:
        message["params"] = params
    return json.dumps(message).encode()


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that echoes the request body with 200."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_fault_middleware():
    """
    The middleware rejects the counted requests and passes the rest intact.

    Rejections carry the configured status and Retry-After; the handshake,
    notifications, control tools and GETs pass, and so do the bodies.
    """
    state = FlakyState(
        FlakyServerConfig(
            http_status=429, http_reject_count=2, retry_after="4"
        )
    )
    app = HTTPFaultMiddleware(_ok, state)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://test"
    ) as http:
        handshake = await http.post("/mcp", content=_jsonrpc("initialize"))
        notification = await http.post(
            "/mcp", content=_jsonrpc("notifications/x", None)
        )
        control = await http.post(
            "/mcp", content=_jsonrpc("tools/call", name="stats")
        )
        get = await http.get("/mcp")
        first = await http.post("/mcp", content=_jsonrpc("tools/list"))
        second = await http.post(
            "/mcp", content=_jsonrpc("tools/call", name="echo")
        )
        third = await http.post("/mcp", content=_jsonrpc("tools/list"))

    assert [200, 200, 200, 200] == [
        r.status_code for r in (handshake, notification, control, get)
    ]
    assert _jsonrpc("initialize") == handshake.content
    assert (429, "4") == (first.status_code, first.headers["retry-after"])
    assert "text/plain" in first.headers["content-type"]
    assert 429 == second.status_code
    assert 200 == third.status_code
    assert 2 == state.http_rejections


async def test_fault_middleware_rate_and_handshake():
    """
    A reject rate of 1 hits every request, the handshake too when asked.
    """
    state = FlakyState(
        FlakyServerConfig(http_reject_rate=1.0, http_fault_handshake=True)
    )
    transport = httpx2.ASGITransport(app=HTTPFaultMiddleware(_ok, state))
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://test"
    ) as http:
        handshake = await http.post("/mcp", content=_jsonrpc("initialize"))
        garbage = await http.post("/mcp", content=b"not json")

    assert 503 == handshake.status_code
    assert "retry-after" not in handshake.headers
    assert 200 == garbage.status_code


async def test_flaky_hangs_and_crashes_at_the_configured_rates(
    autojump_clock,
):
    """
    ``flaky`` fails, hangs and "crashes" call by call as its seed decides.

    The outcomes of 200 calls match, call for call, what a fresh state with
    the same seed decides, and each fate happens about as often as its
    rate says.  (Crashing is off in-process: it answers an error.)
    """
    config = FlakyServerConfig(
        failure_rate=0.1,
        hang_rate=0.2,
        crash_rate=0.3,
        seed=7,
        allow_crash=False,
    )
    replay = FlakyState(config)
    expected = [replay.fate() for _ in range(200)]
    seen = []
    async with Client(create_flaky_server(config)) as client:
        for _ in range(200):
            with trio.move_on_after(60):
                try:
                    await client.call_tool("flaky", {})
                except MCPError as exc:
                    crashed = "crash is disabled" in exc.error.message
                    seen.append("crash" if crashed else "fail")
                else:
                    seen.append("ok")
                continue
            seen.append("hang")

    assert expected == seen
    counts = {fate: seen.count(fate) for fate in ("fail", "hang", "crash")}
    assert 10 <= counts["fail"] <= 35
    assert 25 <= counts["hang"] <= 60
    assert 40 <= counts["crash"] <= 80


def test_the_fate_rates_must_add_up_to_at_most_one():
    """Exclusive fates cannot have more than certainty between them."""
    with pytest.raises(ValueError, match="failure_rate \\+ hang_rate"):
        FlakyServerConfig(failure_rate=0.5, hang_rate=0.4, crash_rate=0.2)
    state = FlakyState(FlakyServerConfig(failure_rate=0.5))
    with pytest.raises(ValueError, match="at most 1"):
        state.configure(hang_rate=0.6)
    assert 0.0 == state.hang_rate  # nothing was changed


@pytest.mark.slow
async def test_a_crash_rate_of_one_ends_the_stdio_process(stdio_params):
    """Over stdio, ``--crash-rate 1`` makes ``flaky`` end the process."""
    with trio.fail_after(30):
        async with Client(stdio_params("--crash-rate", "1")) as client:
            pid = (await structured(client, "stats"))["pid"]
            with pytest.raises(MCPError) as info:
                await client.call_tool("flaky", {})

    assert CONNECTION_CLOSED == info.value.code
    assert pid > 0
