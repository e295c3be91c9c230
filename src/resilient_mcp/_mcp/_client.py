"""
ResilientMCPClient: every operation of ``mcp.Client`` through the pipeline.

How a call travels::

    ResilientMCPClient.call_tool("search", {...})
      -> ResiliencePipeline "tools/call"   bulkhead "tools", retry, the
                                           server's breaker, the timeout
        -> the tool's own breaker          (is_error results count here)
          -> SessionSupervisor.call        the live mcp.Client; SDK errors
                                           become ours; a dead session is
                                           replaced on demand

The server's breaker counts what says the *server* is unwell: lost
sessions, timeouts, JSON-RPC internal errors, HTTP 429/503, failed
connects.  A tool's ``is_error`` result is the tool's answer: it is
returned, never retried, and counted only by that tool's breaker.  Bad
requests (``-32602``, ``-32601``) are permanent: never retried, never
counted against anything.

Retries of ``tools/call`` happen only where they are safe: for tools the
server annotates read-only or idempotent (unless annotations are not
trusted), for tools the user names, and for any request that provably
never left the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any, Final, TypeVar, final

import anyio
import anyio.abc
import attrs

from mcp.client import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    CallToolResult,
    CompleteResult,
    GetPromptResult,
    InputResponses,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    ReadResourceResult,
    RequestParamsMeta,
)

from .._breaker import CircuitBreaker
from .._metrics import LatencyRecorder
from .._pipeline import ResiliencePipeline
from .._timeouts import DeadlineAware, current_time
from ._cache_probe import from_cache
from ._client_config import ResilientClientConfig
from ._client_extras import ServerFeatures
from ._client_hooks import SessionHooks
from ._client_metrics import ResilientClientMetrics, client_metrics
from ._client_policies import ClientPolicies
from ._errors import single_error
from ._listing import list_through
from ._payload_log import call_logged
from ._session import SessionSupervisor
from ._session_types import ServerSource
from ._tool_call import ToolCall, ToolCalls, check_arguments
from ._tool_catalog import ToolCatalog


T = TypeVar("T")


@final
class ResilientMCPClient(ServerFeatures):
    """
    A drop-in resilient ``mcp.Client``: the same methods, with resilience.

    Every operation goes through a bulkhead for its kind, the retry
    policy, the server's circuit breaker and a timeout; a dead session is
    replaced on demand, with backoff, and an open circuit stops the
    reconnect attempts along with the calls::

        async with ResilientMCPClient(server) as client:
            tools = await client.list_tools()
            result = await client.call_tool("echo", {"message": "hi"})
            print(client.metrics().p99_latency)

    Enter and exit it in the same task (structured concurrency): it owns a
    task group where its session supervisor runs.

    Args:
        server: Anything ``mcp.Client`` accepts (an ``MCPServer`` for
            in-process use, ``StdioServerParameters``, a streamable-HTTP
            URL, a transport), or a zero-argument callable returning one
            afresh for each connection.
        config: The configuration; ``None`` for the defaults.
        name: A name for logs, errors and metrics.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        server: ServerSource,
        *,
        config: ResilientClientConfig | None = None,
        name: str = "mcp",
    ) -> None:
        config = ResilientClientConfig() if config is None else config
        self.config: Final = config
        self.name: Final = name
        policies = ClientPolicies.from_config(config, name)
        self._policies = policies
        self._breaker = policies.breaker
        self._pushback = policies.pushback
        self._recorder = policies.recorder
        self._tool_recorder = policies.tool_recorder
        self._pipelines = policies.pipelines
        self._unsafe_calls = policies.unsafe_calls
        self._catalog = ToolCatalog(
            trust_annotations=config.trust_tool_annotations,
            retryable_tools=config.retryable_tools,
        )
        session_config = config.session
        options = dict(session_config.client_options)
        hooks = SessionHooks(
            self._catalog,
            session_config.on_connect,
            options.get("message_handler"),
        )
        self._hooks = hooks
        options["message_handler"] = hooks.on_message
        self._supervisor = SessionSupervisor(
            server,
            attrs.evolve(
                session_config,
                on_connect=hooks.on_connect,
                client_options=options,
            ),
            name=name,
        )
        self._tools = ToolCalls.from_config(
            config,
            name,
            call_until=self._supervisor.call_until,
            note_pushback=self._pushback.note,
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        self._bounded = DeadlineAware(self._call_until)
        self._list = partial(list_through, self._bounded, self._supervisor)

    def __repr__(self) -> str:
        # Snapshots, which never raise (not even once the loop has ended).
        return (
            f"<ResilientMCPClient {self.name!r} "
            f"{self._supervisor.metrics().state.name}, breaker "
            f"{self._breaker.metrics().state.name}>"
        )

    # -- lifetime ----------------------------------------------------------

    async def __aenter__(self) -> ResilientMCPClient:
        if self._task_group is not None:
            raise RuntimeError(f"{self!r} is already entered")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._supervisor.run)
            # Connect now, so that configuration errors (a wrong command, a
            # refused URL) surface here rather than on the first call.
            await self._supervisor.connect()
        except BaseException as exc:
            await self._shut_down()
            if isinstance(exc, BaseExceptionGroup):
                raise single_error(exc) from None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The body's own error (if any) propagates unchanged: the task group
        # is exited as if the body had ended normally, so that it is never
        # wrapped in an ExceptionGroup.
        await self._shut_down()

    async def _shut_down(self) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        self._supervisor.close()
        try:
            await task_group.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            raise single_error(group) from None

    # -- MCP operations ------------------------------------------------------

    async def list_tools(
        self,
        *,
        cursor: str | None = None,
        all_pages: bool = False,
        **kwargs: Any,
    ) -> ListToolsResult:
        """
        ``tools/list``; with ``all_pages=True``, every page in one result.

        Keyword arguments (``meta``, ``cache_mode``) go to
        ``mcp.Client.list_tools``.  The listing also refreshes the tool
        annotations that decide which calls may be retried.
        """
        result: ListToolsResult = await self._list(
            self._pipelines["tools/list"],
            "tools",
            "list_tools",
            cursor,
            all_pages,
            kwargs,
        )
        if cursor is None and result.next_cursor is None:
            self._catalog.learn(result, complete=True)
        return result

    async def list_resources(
        self,
        *,
        cursor: str | None = None,
        all_pages: bool = False,
        **kwargs: Any,
    ) -> ListResourcesResult:
        """``resources/list``; ``all_pages=True`` follows ``next_cursor``."""
        result: ListResourcesResult = await self._list(
            self._pipelines["resources/list"],
            "resources",
            "list_resources",
            cursor,
            all_pages,
            kwargs,
        )
        return result

    async def list_resource_templates(
        self,
        *,
        cursor: str | None = None,
        all_pages: bool = False,
        **kwargs: Any,
    ) -> ListResourceTemplatesResult:
        """``resources/templates/list``; ``all_pages`` follows cursors."""
        result: ListResourceTemplatesResult = await self._list(
            self._pipelines["resources/templates/list"],
            "resource_templates",
            "list_resource_templates",
            cursor,
            all_pages,
            kwargs,
        )
        return result

    async def list_prompts(
        self,
        *,
        cursor: str | None = None,
        all_pages: bool = False,
        **kwargs: Any,
    ) -> ListPromptsResult:
        """``prompts/list``; ``all_pages=True`` follows ``next_cursor``."""
        result: ListPromptsResult = await self._list(
            self._pipelines["prompts/list"],
            "prompts",
            "list_prompts",
            cursor,
            all_pages,
            kwargs,
        )
        return result

    async def read_resource(
        self, uri: Any, **kwargs: Any
    ) -> ReadResourceResult:
        """``resources/read``; keyword arguments go to the SDK."""

        async def read(client: Client) -> ReadResourceResult:
            return await client.read_resource(uri, **kwargs)

        cacheable = kwargs.get("cache_mode", "use") == "use"
        if cacheable:
            hit = await from_cache(self._supervisor, read)
            if hit is not None:
                return hit
        return await self._pipelines["resources/read"].call(
            self._bounded, read
        )

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> GetPromptResult:
        """``prompts/get``; keyword arguments go to the SDK."""

        async def get(client: Client) -> GetPromptResult:
            return await client.get_prompt(name, arguments, **kwargs)

        return await self._pipelines["prompts/get"].call(self._bounded, get)

    async def complete(
        self,
        ref: Any,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None = None,
    ) -> CompleteResult:
        """``completion/complete``, through the ``completion`` bulkhead."""

        async def complete(client: Client) -> CompleteResult:
            return await client.complete(ref, argument, context_arguments)

        return await self._pipelines["completion/complete"].call(
            self._bounded, complete
        )

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: ProgressFnT | None = None,
        *,
        input_responses: InputResponses | None = None,
        request_state: str | None = None,
        meta: RequestParamsMeta | None = None,
    ) -> CallToolResult:
        """
        ``tools/call``: run a tool, with its retries only where safe.

        The parameters are ``mcp.Client.call_tool``'s; those given are
        passed on.  A result with ``is_error=True`` is returned as it is
        (never retried) and counted against the tool's own breaker.

        Args:
            name: The tool.
            arguments: Its arguments (JSON-serialisable).
            read_timeout_seconds: The SDK's own read timeout, if any.
            progress_callback: Called on the server's progress
                notifications, as by the SDK.
            input_responses: As for the SDK (resuming input requests).
            request_state: As for the SDK (resuming input requests).
            meta: The request's ``_meta``, as for the SDK.

        Returns:
            The SDK's ``CallToolResult``, unchanged.

        Raises:
            CircuitBreakerError: The server's or the tool's circuit is
                open.
            BulkheadError: The ``tools`` bulkhead is full.
            CallTimeout: The call took longer than the timeout.
            PermanentError: The request was invalid.
            TemporaryError: The server failed (after the retries allowed).
        """
        check_arguments(name, arguments)
        catalog = self._catalog
        if catalog.needs_refresh(name):
            await self._refresh_tools()
        pipeline = (
            self._pipelines["tools/call"]
            if catalog.retry_safe(name)
            else self._unsafe_calls
        )
        options: dict[str, Any] = {}  # usually empty
        if read_timeout_seconds is not None:
            options["read_timeout_seconds"] = read_timeout_seconds
        if progress_callback is not None:
            options["progress_callback"] = progress_callback
        if input_responses is not None:
            options["input_responses"] = input_responses
        if request_state is not None:
            options["request_state"] = request_state
        if meta is not None:
            options["meta"] = meta
        op = DeadlineAware(ToolCall(self._tools, name, arguments, options).run)
        if self.config.log_payloads:
            return await call_logged(
                pipeline, op, name, arguments, self._tool_recorder
            )
        start = current_time()
        try:
            return await pipeline.call(op)
        finally:
            self._tool_recorder.record(name, current_time() - start)

    # -- metrics -------------------------------------------------------------

    def metrics(self) -> ResilientClientMetrics:
        """
        Take a snapshot of the client's counters and latencies.

        It never raises, even once the event loop has ended.

        Returns:
            A frozen :class:`ResilientClientMetrics`.
        """
        policies = self._policies
        return client_metrics(
            policies.caller_pipelines(),
            policies.recorder,
            policies.retry,
            policies.breaker,
            policies.bulkheads,
            self._tools,
            self._tool_recorder,
            self._supervisor.metrics(),
            internal=(policies.refresh,),
        )

    def pipelines(self) -> list[ResiliencePipeline]:
        """
        The pipelines behind the operations, one per MCP method.

        ``tools/call`` has two: ``"tools/call"`` for calls safe to retry
        and ``"tools/call:unsafe"`` for the others (both record latency
        under ``"tools/call"``); ``"tools/list:refresh"`` carries the
        client's own listings after ``list_changed``.
        """
        return self._policies.all_pipelines()

    @property
    def circuit_breaker(self) -> CircuitBreaker:
        """The server's circuit breaker."""
        return self._breaker

    @property
    def latency_recorder(self) -> LatencyRecorder:
        """Per-method latencies (keys are MCP methods) plus the overall."""
        return self._recorder

    @property
    def tool_latency_recorder(self) -> LatencyRecorder:
        """Per-tool latencies of ``tools/call`` (keys are tool names)."""
        return self._tool_recorder

    @property
    def supervisor(self) -> SessionSupervisor:
        """The session supervisor (connections and reconnects)."""
        return self._supervisor

    def tool_circuit_breaker(self, name: str) -> CircuitBreaker | None:
        """The breaker of tool *name*, if per-tool breakers are on."""
        return self._tools.breaker(name)

    # -- internals -----------------------------------------------------------

    async def _refresh_tools(self) -> None:
        # Through a pipeline of its own: the caller never asked for it.
        refresh = partial(
            self._list,
            self._policies.refresh,
            "tools",
            "list_tools",
            None,
            all_pages=True,
            kwargs={"cache_mode": "refresh"},
        )
        await self._catalog.refresh(refresh, self.name)

    async def _call_until(
        self, deadline: float, operation: Callable[[Client], Awaitable[T]]
    ) -> T:
        """
        The supervisor's call until *deadline*, noting a Retry-After.

        Wrapped in a :class:`DeadlineAware` (``self._bounded``), so that
        the pipelines hand it their deadline: one cancel scope per attempt.
        """
        try:
            return await self._supervisor.call_until(deadline, operation)
        except Exception as exc:
            self._pushback.note(exc)
            raise
