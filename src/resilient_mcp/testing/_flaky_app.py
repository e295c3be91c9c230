"""
The flaky MCP server itself: tools, resources, prompts and completions.

Every tool is ``async`` so that it runs on the server's event loop, never
in a worker thread: :class:`~._flaky_state.FlakyState` is then only ever
touched by one thread and needs no lock.
"""

from __future__ import annotations

import json
import os

from typing import TYPE_CHECKING, Any, Final, Literal

import anyio

from mcp.server.caching import CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
    ToolAnnotations,
)

from ._flaky_state import (
    CONTROL_TOOLS,
    HANDSHAKE_METHODS,
    FlakyServerConfig,
    FlakyState,
)


if TYPE_CHECKING:
    from mcp.server.caching import CacheableMethod
    from mcp.server.context import (
        CallNext,
        HandlerResult,
        ServerRequestContext,
    )


LIST_METHODS: Final[tuple[CacheableMethod, ...]] = (
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
)

ITEM_TEMPLATE: Final = "flaky://item/{item_id}"
COMPLETION_NAMES: Final = ("alice", "bob", "carol", "dave")
COMPLETION_ITEMS: Final = ("1", "2", "3", "42")

SAFE: Final = ToolAnnotations(
    read_only_hint=True, idempotent_hint=True, destructive_hint=False
)
"""Annotations of tools that may be retried freely."""
UNSAFE: Final = ToolAnnotations(
    read_only_hint=False, idempotent_hint=False, destructive_hint=True
)
"""Annotations of tools that must never be retried blindly."""


def _tool_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    if ctx.method != "tools/call" or ctx.params is None:
        return None
    name = ctx.params.get("name")
    return name if isinstance(name, str) else None


def create_flaky_server(
    config: FlakyServerConfig | None = None,
    *,
    state: FlakyState | None = None,
) -> MCPServer:
    """
    Build an MCP server whose tools fail, stall and crash on demand.

    Tools (every one async; the annotations matter to retry policies):

    * ``echo(text)``: returns *text*; read-only and idempotent.
    * ``add(a, b)``: returns ``a + b``; deliberately **unannotated**, so
      a client must assume the worst of it.
    * ``increment(amount=1)``: adds to a server-side counter and returns
      the new value; destructive and not idempotent.  ``stats`` shows how
      many times it really ran.
    * ``flaky(text="ok", mode="error")``: fails with probability
      ``failure_rate`` (seeded), or for the next ``fail_next`` calls; a
      failure is a JSON-RPC ``-32603`` error, or with
      ``mode="tool_error"`` an ``is_error`` result.  It also hangs with
      probability ``hang_rate`` and crashes the process with probability
      ``crash_rate``.
    * ``slow(seconds, text="done")``: sleeps, then returns *text*.
    * ``hang()``: never answers.
    * ``crash(exit_code=1)``: ends the server process with
      :func:`os._exit` (a JSON-RPC error when ``allow_crash`` is off).
    * ``tool_error(message)``: an ``is_error`` result.
    * ``reject(message)``: a JSON-RPC ``-32602`` (invalid params) error.
    * ``stats()`` and ``configure(...)``: the control tools, never
      delayed or failed, to read the counters and change the knobs.

    Every other request (not the handshake) waits ``latency`` seconds,
    then goes through the capacity model: it takes ``base_latency *
    max(1, in_flight / capacity)`` seconds, *in_flight* counted on its
    arrival, itself included, and fails at once with a JSON-RPC
    ``-32603`` error ("flaky: overloaded") when more than
    ``overload_factor * capacity`` would be in flight.  With probability
    ``slow_rate`` (seeded) a request is slow: ``slow_factor`` times that.

    Resources: ``flaky://static``, ``flaky://stats`` (JSON counters) and
    the template ``flaky://item/{item_id}``.  Prompt: ``greet(name)``.
    Completions are offered for ``greet``'s ``name`` and the template's
    ``item_id``.

    Args:
        config: The initial knobs; ``None`` for a well-behaved server.
        state: A :class:`FlakyState` to share with the caller (for example
            to read counters of an in-process server); built from
            *config* when omitted.

    Returns:
        A fresh :class:`~mcp.server.mcpserver.MCPServer`.

    Raises:
        ValueError: Both *config* and *state* were given and disagree.

    .. versionadded:: 0.1.0
    """
    if state is None:
        state = FlakyState(
            config if config is not None else FlakyServerConfig()
        )
    elif config is not None and config != state.config:
        raise ValueError("pass either config or state, not both")
    config = state.config
    hints: dict[CacheableMethod, CacheHint] | None = None
    if config.list_cache_ttl_ms:
        hint = CacheHint(ttl_ms=config.list_cache_ttl_ms)
        hints = dict.fromkeys(LIST_METHODS, hint)
    server: MCPServer = MCPServer(
        config.name,
        version="1.0",
        instructions="A test server that fails on purpose.",
        cache_hints=hints,
        log_level="WARNING",
    )

    async def observe(
        ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.request_id is None:  # a notification
            return await call_next(ctx)
        state.requests[ctx.method] += 1
        if ctx.method in HANDSHAKE_METHODS or _tool_name(ctx) in CONTROL_TOOLS:
            return await call_next(ctx)
        if state.latency > 0:
            await anyio.sleep(state.latency)
        return await _within_capacity(state, ctx, call_next)

    server.middleware.append(observe)
    _add_tools(server, state)
    _add_control_tools(server, state)
    _add_resources_and_prompts(server, state)
    return server


async def _within_capacity(
    state: FlakyState,
    ctx: ServerRequestContext[Any, Any],
    call_next: CallNext,
) -> HandlerResult:
    """
    Serve one request under the capacity model.

    The request counts as in flight from its arrival to its answer; its
    delay is :meth:`FlakyState.service_time` of the count on arrival
    (itself included), times :meth:`FlakyState.slowdown` (the slow
    share), and it fails at once, without running, when
    :meth:`FlakyState.overloaded` says so.
    """
    in_flight = state.in_flight + 1
    if state.overloaded(in_flight):
        state.overload_rejections += 1
        raise MCPError(
            code=INTERNAL_ERROR,
            message="flaky: overloaded",
            data={"in_flight": state.in_flight, "capacity": state.capacity},
        )
    state.in_flight = in_flight
    try:
        delay = state.service_time(in_flight) * state.slowdown()
        if delay > 0:
            await anyio.sleep(delay)
        return await call_next(ctx)
    finally:
        state.in_flight -= 1


def _add_tools(server: MCPServer, state: FlakyState) -> None:  # noqa: C901
    executions = state.executions

    @server.tool(annotations=SAFE)
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        executions["echo"] += 1
        return text

    @server.tool()
    async def add(a: float, b: float) -> float:
        """Add two numbers (unannotated on purpose)."""
        executions["add"] += 1
        return a + b

    @server.tool(annotations=UNSAFE)
    async def increment(amount: int = 1) -> int:
        """Add to the server-side counter and return its new value."""
        executions["increment"] += 1
        state.counter += amount
        return state.counter

    @server.tool(annotations=SAFE)
    async def flaky(
        text: str = "ok", mode: Literal["error", "tool_error"] = "error"
    ) -> str:
        """Return the text, or fail, hang or crash at the configured rates."""
        executions["flaky"] += 1
        fate = state.fate()
        if fate == "hang":
            await anyio.sleep_forever()
        if fate == "crash":
            _crash(state, 1)
        if fate != "ok":
            if mode == "tool_error":
                raise ToolError("injected failure")
            raise MCPError(
                code=INTERNAL_ERROR,
                message="flaky: injected failure",
                data={"tool": "flaky"},
            )
        return text

    @server.tool(annotations=SAFE)
    async def slow(seconds: float, text: str = "done") -> str:
        """Sleep for the given seconds, then return the text."""
        executions["slow"] += 1
        await anyio.sleep(seconds)
        return text

    @server.tool(annotations=SAFE)
    async def hang() -> str:
        """Never answer (until cancelled)."""
        executions["hang"] += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    @server.tool(annotations=UNSAFE)
    async def crash(exit_code: int = 1) -> str:
        """End the server process at once, mid-request."""
        executions["crash"] += 1
        _crash(state, exit_code)
        raise AssertionError("unreachable")  # pragma: no cover

    @server.tool(annotations=SAFE)
    async def tool_error(message: str = "tool failed on purpose") -> str:
        """Answer with an is_error result carrying the message."""
        executions["tool_error"] += 1
        raise ToolError(message)

    @server.tool(annotations=SAFE)
    async def reject(message: str = "rejected on purpose") -> str:
        """Answer with a JSON-RPC invalid-params error."""
        executions["reject"] += 1
        raise MCPError(
            code=INVALID_PARAMS, message=message, data={"tool": "reject"}
        )


def _crash(state: FlakyState, exit_code: int) -> None:
    """End the process at once, or answer an error where that is off."""
    if not state.config.allow_crash:
        raise MCPError(
            code=INTERNAL_ERROR, message="crash is disabled on this server"
        )
    os._exit(exit_code)


def _add_control_tools(server: MCPServer, state: FlakyState) -> None:
    @server.tool(annotations=SAFE)
    async def stats() -> dict[str, Any]:
        """Return the server's counters and current knobs."""
        return state.snapshot()

    @server.tool(annotations=UNSAFE)
    async def configure(
        *,
        failure_rate: float | None = None,
        hang_rate: float | None = None,
        crash_rate: float | None = None,
        fail_next: int | None = None,
        latency: float | None = None,
        http_status: int | None = None,
        http_reject_count: int | None = None,
        http_reject_rate: float | None = None,
        retry_after: str | None = None,
        capacity: int | None = None,
        base_latency: float | None = None,
        overload_factor: float | None = None,
        slow_rate: float | None = None,
        slow_factor: float | None = None,
        reset_counters: bool = False,
    ) -> dict[str, Any]:
        """
        Change the server's knobs; omitted ones stay as they are.

        ``retry_after=""`` removes the Retry-After header.  The HTTP knobs
        only matter on the HTTP transport.  ``capacity=0`` removes the
        capacity limit, ``overload_factor=0`` the overload failures,
        ``slow_rate=0`` the slow share.
        """
        state.configure(
            failure_rate=failure_rate,
            hang_rate=hang_rate,
            crash_rate=crash_rate,
            fail_next=fail_next,
            latency=latency,
            http_status=http_status,
            http_reject_count=http_reject_count,
            http_reject_rate=http_reject_rate,
            retry_after=retry_after,
            capacity=capacity,
            base_latency=base_latency,
            overload_factor=overload_factor,
            slow_rate=slow_rate,
            slow_factor=slow_factor,
        )
        if reset_counters:
            state.reset_counters()
        return state.snapshot()


def _add_resources_and_prompts(server: MCPServer, state: FlakyState) -> None:
    @server.resource("flaky://static", mime_type="text/plain")
    async def static() -> str:
        """A resource that never changes."""
        return "static content"

    @server.resource(
        "flaky://stats", name="stats", mime_type="application/json"
    )
    async def stats_resource() -> str:
        """The server's counters, as JSON."""
        return json.dumps(state.snapshot(), sort_keys=True)

    @server.resource(ITEM_TEMPLATE, mime_type="text/plain")
    async def item(item_id: str) -> str:
        """One item of a templated collection."""
        return f"item {item_id}"

    @server.prompt()
    async def greet(name: str) -> str:
        """Greet someone by name."""
        return f"Hello, {name}!"

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,  # noqa: ARG001
    ) -> Completion | None:
        if isinstance(ref, PromptReference):
            candidates = COMPLETION_NAMES if ref.name == "greet" else ()
        else:
            candidates = COMPLETION_ITEMS if ref.uri == ITEM_TEMPLATE else ()
        values = [v for v in candidates if v.startswith(argument.value)]
        return Completion(values=values, total=len(values), has_more=False)

    server.completion()(complete)  # type: ignore[no-untyped-call]
