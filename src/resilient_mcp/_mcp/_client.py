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

import contextvars
import logging
import math

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import MappingProxyType, TracebackType
from typing import Any, Final, TypeVar, final

import anyio
import anyio.abc
import attrs
import pydantic_core

from mcp.client import Client
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    CompleteResult,
    EmptyResult,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    ReadResourceResult,
    ToolListChangedNotification,
)

from .._breaker import CircuitBreaker, CircuitBreakerMetrics, CircuitState
from .._bulkhead import Bulkhead, BulkheadMetrics
from .._errors import (
    CallTimeout,
    CircuitBreakerError,
    PermanentError,
    ResilienceError,
)
from .._metrics import LatencyRecorder, LatencySnapshot
from .._pipeline import FAILURE_OUTCOMES, Outcome, ResiliencePipeline
from .._registry import BoundedRegistry
from .._retry import RetryManager
from .._timeouts import (
    DeadlineAware,
    checkpoint,
    current_time,
    deadline_scope,
)
from ._client_config import ResilientClientConfig
from ._errors import NotSentError, RequestTimeoutError, leaf_exceptions
from ._session import (
    ServerSource,
    SessionMetrics,
    SessionSupervisor,
)


T = TypeVar("T")

logger: Final = logging.getLogger("resilient_mcp")
payload_logger: Final = logging.getLogger("resilient_mcp.payloads")
"""Tool arguments and results, only with ``log_payloads=True``."""

UNKNOWN_TOOL_REFRESH: Final = 1.0  # seconds between listings for unknowns
TOOL_LATENCY_DIGITS: Final = 2  # significant digits of per-tool histograms

_KIND: Final = {
    "tools/list": "tools",
    "tools/call": "tools",
    "resources/list": "resources",
    "resources/templates/list": "resources",
    "resources/read": "resources",
    "prompts/list": "prompts",
    "prompts/get": "prompts",
    "completion/complete": "completion",
    "ping": None,
}
"""Each MCP method, and the bulkhead (operation kind) it goes through."""

# Set while probing the SDK's response cache: a request that would go on
# the wire is refused instead (see ResilientMCPClient._from_cache).
_PROBING: Final = contextvars.ContextVar(
    "resilient_mcp_probing", default=False
)


class _CacheMiss(Exception):  # noqa: N818
    """The SDK's response cache did not have the answer (never escapes)."""


class ToolError(ResilienceError):
    """
    What a tool's breaker counts for a ``CallToolResult(is_error=True)``.

    Never raised to the caller, who gets the result itself.
    """


@attrs.frozen(kw_only=True)
class OperationMetrics:
    """
    Counters and latency of one MCP method (or of one tool).

    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``; the latency histogram holds one value per
    request that ended.  Answers served from the SDK's response cache are
    not requests to the server and are not counted.

    .. versionadded:: 0.1.0
    """

    name: str
    """The MCP method (``"tools/call"``) or the tool's name."""
    total_requests: int
    """Requests that ended."""
    successful_requests: int
    """Requests that returned (tool results with ``is_error`` included)."""
    failed_requests: int
    """Requests that raised, every kind of failure."""
    cancelled_requests: int
    """Requests whose caller was cancelled."""
    failures: Mapping[Outcome, int]
    """Failed requests by kind (every failure outcome present)."""
    latency: LatencySnapshot
    """Latency of the requests that ended, in seconds."""


@attrs.frozen(kw_only=True)
class ToolMetrics:
    """
    What one tool did, as far as its own breaker and histogram saw.

    .. versionadded:: 0.1.0
    """

    name: str
    """The tool's name."""
    tool_errors: int
    """Results with ``is_error=True``."""
    circuit_breaker: CircuitBreakerMetrics | None
    """The tool's breaker, or ``None`` when per-tool breakers are off."""
    latency: LatencySnapshot
    """Latency of the tool's calls that ended, retries included."""


@attrs.frozen(kw_only=True)
class ResilientClientMetrics:
    """
    The seed's client metrics, with exact accounting and real percentiles.

    Every request is counted once, in exactly one outcome:
    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``, and ``failed_requests`` is the sum of
    ``failures``.  Latencies are seconds from HdrHistograms (3
    significant digits).

    .. versionadded:: 0.1.0
    """

    total_requests: int
    """Requests that ended, over every operation."""
    successful_requests: int
    """Requests that returned."""
    failed_requests: int
    """Requests that raised."""
    cancelled_requests: int
    """Requests whose caller was cancelled (neither success nor failure)."""
    retried_requests: int
    """Requests that needed at least one retry."""
    circuit_breaker_trips: int
    """Times the server's circuit opened."""
    bulkhead_rejections: int
    """Requests rejected by a full bulkhead."""
    tool_errors: int
    """``tools/call`` results with ``is_error=True`` (successful requests)."""
    failures: Mapping[Outcome, int]
    """Failed requests by kind."""
    average_latency: float
    """Mean latency, seconds."""
    p50_latency: float
    """Median latency, seconds."""
    p95_latency: float
    """95th percentile latency, seconds."""
    p99_latency: float
    """99th percentile latency, seconds."""
    p999_latency: float
    """99.9th percentile latency, seconds."""
    max_latency: float
    """Largest latency, seconds."""
    operations: Mapping[str, OperationMetrics]
    """Per MCP method (``"tools/call"``, ``"resources/read"``, ...)."""
    tools: Mapping[str, ToolMetrics]
    """Per tool, for the tools tracked now (least recently used evicted)."""
    circuit_breaker: CircuitBreakerMetrics
    """The server's breaker."""
    bulkheads: Mapping[str, BulkheadMetrics]
    """Per operation kind."""
    session: SessionMetrics
    """Connections, losses and reconnects."""


def _never_sent(exc: Exception) -> bool:
    return isinstance(exc, NotSentError)


def _counts_against_server(
    user: Callable[[BaseException], bool] | None,
) -> Callable[[BaseException], bool]:
    def is_failure(exc: BaseException) -> bool:
        if isinstance(exc, PermanentError | CircuitBreakerError):
            return False  # a bad request, or a tool's own breaker
        if isinstance(exc, NotSentError) and exc.reason == "backoff":
            return False  # the supervisor failing fast on its own
        return True if user is None else user(exc)

    return is_failure


def _counts_against_tool(exc: BaseException) -> bool:
    return isinstance(exc, ToolError | RequestTimeoutError | CallTimeout)


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves = leaf_exceptions(group)
    return leaves[0] if len(leaves) == 1 else group


@final
class ResilientMCPClient:
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
        config: The configuration; ``None`` for the seed's defaults.
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
        breaker_config = attrs.evolve(
            config.circuit_breaker,
            is_failure=_counts_against_server(
                config.circuit_breaker.is_failure
            ),
        )
        self._breaker = CircuitBreaker(
            breaker_config, name=name, listeners=[self._on_breaker_change]
        )
        self._retry = RetryManager(config.retry, name=name)
        self._bulkheads = {
            kind: Bulkhead(bulkhead)
            for kind, bulkhead in config.bulkheads.items()
            if bulkhead is not None
        }
        self._recorder = LatencyRecorder()
        # Per-tool histograms at 2 significant digits (1 %): sparse while
        # latencies cluster, 27 KB at most (185 KB at 3 digits), so 1,000
        # tracked tools cost 27 MB in the worst case.
        self._tool_recorder = LatencyRecorder(
            max_keys=config.max_tracked_tools,
            significant_figures=TOOL_LATENCY_DIGITS,
        )
        timeout = config.attempt_timeout
        self._progress_cap = config.progress_timeout_cap
        self._pipelines: dict[str, ResiliencePipeline] = {}
        for method, kind in _KIND.items():
            self._pipelines[method] = self._pipeline(method, kind, timeout)
        # Tool calls that are not safe to repeat: retried only when the
        # request provably never left the client.
        tool_timeout = None if self._progress_cap is not None else timeout
        self._pipelines["tools/call"] = self._pipeline(
            "tools/call", "tools", tool_timeout
        )
        self._unsafe_calls = self._pipeline(
            "tools/call:unsafe", "tools", tool_timeout, retry_if=_never_sent
        )
        self._tool_timeout = timeout
        tool_breaker = config.tool_circuit_breaker
        self._tool_breakers: BoundedRegistry[str, CircuitBreaker] | None = None
        if tool_breaker is not None:
            tool_breaker = attrs.evolve(
                tool_breaker,
                is_failure=tool_breaker.is_failure or _counts_against_tool,
                request_timeout=None,
            )
            self._tool_breakers = BoundedRegistry(
                lambda tool: CircuitBreaker(
                    tool_breaker, name=f"{name}/{tool}"
                ),
                max_size=config.max_tracked_tools,
            )
        self._tool_errors = 0
        self._tool_error_counts: BoundedRegistry[str, list[int]] = (
            BoundedRegistry(lambda _: [0], max_size=config.max_tracked_tools)
        )
        self._annotations: dict[str, tuple[bool, bool]] = {}
        self._tools_known = False
        self._tools_stale = False
        self._last_refresh = -math.inf
        self._pushback: tuple[float, float] | None = None
        session_config = config.session
        self._user_on_connect = session_config.on_connect
        options = dict(session_config.client_options)
        self._user_message_handler = options.get("message_handler")
        options["message_handler"] = self._on_message
        self._supervisor = SessionSupervisor(
            server,
            attrs.evolve(
                session_config,
                on_connect=self._on_connect,
                client_options=options,
            ),
            name=name,
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        self._bounded = DeadlineAware(self._call_until)

    def _pipeline(
        self,
        method: str,
        kind: str | None,
        timeout: float | None,
        retry_if: Callable[[Exception], bool] | None = None,
    ) -> ResiliencePipeline:
        # The unsafe tools/call pipeline records under "tools/call" too.
        return ResiliencePipeline(
            bulkhead=self._bulkheads.get(kind) if kind else None,
            retry=self._retry,
            circuit_breaker=self._breaker,
            timeout=timeout,
            name=method,
            recorder=self._recorder,
            record_key=method.partition(":")[0],
            retry_if=retry_if,
        )

    def __repr__(self) -> str:
        return (
            f"<ResilientMCPClient {self.name!r} "
            f"{self._supervisor.metrics().state.name}, breaker "
            f"{self._breaker.state.name}>"
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
                raise _single_error(exc) from None
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
            raise _single_error(group) from None

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
            "tools/list", "tools", "list_tools", cursor, all_pages, kwargs
        )
        if cursor is None and result.next_cursor is None:
            self._learn_tools(result, complete=True)
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
            "resources/list",
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
            "resources/templates/list",
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
            "prompts/list",
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
            hit = await self._from_cache(read)
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

    async def send_ping(self) -> EmptyResult:
        """
        ``ping``, where the negotiated protocol has it.

        At protocol 2026-07-28 there is no ping: the server answers
        ``-32601``, raised as :class:`PermanentError`.
        """

        async def ping(client: Client) -> EmptyResult:
            return await client.session.send_ping()

        return await self._pipelines["ping"].call(self._bounded, ping)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: Callable[..., Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> CallToolResult:
        """
        ``tools/call``: run a tool, with its retries only where safe.

        A result with ``is_error=True`` is returned as it is (never
        retried) and counted against the tool's own breaker.

        Args:
            name: The tool.
            arguments: Its arguments (JSON-serialisable).
            read_timeout_seconds: The SDK's own read timeout, if any.
            progress_callback: Called on the server's progress
                notifications, as by the SDK.
            **kwargs: Passed on to ``mcp.Client.call_tool``.

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
        _check_arguments(name, arguments)
        if self._needs_annotations(name) and (
            self._tools_stale or self._unknown_tool(name)
        ):
            await self._refresh_tools()
        pipeline = (
            self._pipelines["tools/call"]
            if self._retry_safe(name)
            else self._unsafe_calls
        )
        if read_timeout_seconds is None and progress_callback is None:
            options = kwargs  # a fresh dict, and usually empty
        else:
            options = {
                "read_timeout_seconds": read_timeout_seconds,
                "progress_callback": progress_callback,
                **kwargs,
            }
        call = _ToolCall(self, name, arguments, options)
        op = DeadlineAware(call.run)
        if self.config.log_payloads:
            return await self._call_logged(pipeline, call, op)
        start = current_time()
        try:
            return await pipeline.call(op)
        finally:
            self._tool_recorder.record(name, current_time() - start)

    async def _call_logged(
        self, pipeline: ResiliencePipeline, call: _ToolCall, op: DeadlineAware
    ) -> CallToolResult:
        """:meth:`call_tool` with ``log_payloads``: the opt-in debug log."""
        name = call.name
        payload_logger.debug(
            "tools/call %r arguments: %r", name, call.arguments
        )
        start = current_time()
        try:
            result: CallToolResult = await pipeline.call(op)
        except Exception as exc:
            payload_logger.debug("tools/call %r failed: %r", name, exc)
            raise
        finally:
            self._tool_recorder.record(name, current_time() - start)
        payload_logger.debug("tools/call %r result: %r", name, result)
        return result

    # -- metrics -------------------------------------------------------------

    def metrics(self) -> ResilientClientMetrics:
        """
        Take a snapshot of the client's counters and latencies.

        Returns:
            A frozen :class:`ResilientClientMetrics`.
        """
        operations: dict[str, OperationMetrics] = {}
        totals = dict.fromkeys(Outcome, 0)
        retried = 0
        by_method: dict[str, dict[Outcome, int]] = {}
        for pipeline in self.pipelines():
            counts = by_method.setdefault(
                pipeline.key, dict.fromkeys(Outcome, 0)
            )
            for outcome, count in pipeline.metrics().outcomes.items():
                counts[outcome] += count
                totals[outcome] += count
        for method, counts in by_method.items():
            operations[method] = _operation(
                method, counts, self._recorder.snapshot_or_empty(method)
            )
        retried = self._retry.metrics().retried_calls
        overall = self._recorder.snapshot()
        failures: dict[Outcome, int] = {o: totals[o] for o in FAILURE_OUTCOMES}
        return ResilientClientMetrics(
            total_requests=sum(totals.values()),
            successful_requests=totals[Outcome.SUCCESS],
            failed_requests=sum(failures.values()),
            cancelled_requests=totals[Outcome.CANCELLED],
            retried_requests=retried,
            circuit_breaker_trips=self._breaker.metrics().trips,
            bulkhead_rejections=totals[Outcome.BULKHEAD_FULL],
            tool_errors=self._tool_errors,
            failures=MappingProxyType(failures),
            average_latency=overall.mean,
            p50_latency=overall.p50,
            p95_latency=overall.p95,
            p99_latency=overall.p99,
            p999_latency=overall.p999,
            max_latency=overall.max,
            operations=MappingProxyType(operations),
            tools=MappingProxyType(self._tool_metrics()),
            circuit_breaker=self._breaker.metrics(),
            bulkheads=MappingProxyType(
                {k: b.metrics() for k, b in self._bulkheads.items()}
            ),
            session=self._supervisor.metrics(),
        )

    def _tool_metrics(self) -> dict[str, ToolMetrics]:
        tools: dict[str, ToolMetrics] = {}
        for tool in self._tool_recorder.keys():  # noqa: SIM118 (a method)
            breaker = (
                self._tool_breakers.peek(tool)
                if self._tool_breakers is not None
                else None
            )
            errors = self._tool_error_counts.peek(tool)
            tools[tool] = ToolMetrics(
                name=tool,
                tool_errors=errors[0] if errors else 0,
                circuit_breaker=breaker.metrics() if breaker else None,
                latency=self._tool_recorder.snapshot_or_empty(tool),
            )
        return tools

    def pipelines(self) -> list[ResiliencePipeline]:
        """
        The pipelines behind the operations, one per MCP method.

        ``tools/call`` has two: ``"tools/call"`` for calls safe to retry
        and ``"tools/call:unsafe"`` for the others (both record latency
        under ``"tools/call"``).
        """
        return [*self._pipelines.values(), self._unsafe_calls]

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
        if self._tool_breakers is None:
            return None
        return self._tool_breakers.get(name)

    # -- internals -----------------------------------------------------------

    async def _list(  # noqa: PLR0917 (private, one call per operation)
        self,
        method: str,
        field: str,
        sdk_method: str,
        cursor: str | None,
        all_pages: bool,
        kwargs: dict[str, Any],
    ) -> Any:
        pipeline = self._pipelines[method]
        use_cache = kwargs.get("cache_mode", "use") == "use"

        async def page(client: Client, after: str | None) -> Any:
            return await getattr(client, sdk_method)(cursor=after, **kwargs)

        async def first(client: Client) -> Any:
            return await page(client, cursor)

        result: Any = None
        if cursor is None and use_cache:
            result = await self._from_cache(first)
        if result is None:
            result = await pipeline.call(self._bounded, first)
        if not all_pages or result.next_cursor is None:
            return result
        items = list(getattr(result, field))
        seen = {result.next_cursor}
        after = result.next_cursor
        while after is not None:

            async def following(client: Client, after: str = after) -> Any:
                return await page(client, after)

            result = await pipeline.call(self._bounded, following)
            items.extend(getattr(result, field))
            after = result.next_cursor
            if after in seen:
                raise PermanentError(
                    "cursor-loop",
                    f"{method}: the server repeated cursor {after!r}",
                )
            seen.add(after)
        return result.model_copy(update={field: items, "next_cursor": None})

    async def _from_cache(
        self, operation: Callable[[Client], Awaitable[T]]
    ) -> T | None:
        """
        The answer from the SDK's response cache, or ``None`` on a miss.

        Cache hits never touch the server, so they stay out of the
        latency, breaker and bulkhead statistics: the cache is asked first
        with the wire forbidden, and only a miss goes through the pipeline.
        """
        try:
            live = self._supervisor.acquire_nowait()
        except ResilienceError:
            return None
        if live.client.cache is None:
            return None
        token = _PROBING.set(True)
        try:
            return await operation(live.client)
        except _CacheMiss:
            return None
        except Exception:
            # Anything else: let the real call (through the pipeline) meet
            # it and account for it.
            return None
        finally:
            _PROBING.reset(token)

    async def _on_connect(self, client: Client) -> None:
        session = client.session
        send = session.send_request

        async def send_request(*args: Any, **kwargs: Any) -> Any:
            if _PROBING.get():
                raise _CacheMiss
            return await send(*args, **kwargs)

        # Instance attribute: every wire request of this session passes
        # here, so a cache probe can refuse to send.
        session.send_request = send_request  # type: ignore[method-assign]
        await self._learn_all_tools(client)
        if self._user_on_connect is not None:
            await self._user_on_connect(client)

    async def _learn_all_tools(self, client: Client) -> None:
        """
        List the tools once per session, straight through the SDK.

        Their annotations decide retry safety, and the SDK needs the
        listing anyway (it sends a hidden ``tools/list`` before the first
        ``tools/call`` of a tool whose output schema it has not seen, and
        that hidden request failing would fail a call that already ran).
        """
        if client.server_capabilities.tools is None:
            self._tools_known = True
            return
        cursor: str | None = None
        tools: list[Any] = []
        for _ in range(1000):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._annotations = {tool.name: _safety(tool) for tool in tools}
        self._tools_known = True
        self._tools_stale = False

    def _learn_tools(self, result: ListToolsResult, *, complete: bool) -> None:
        annotations = {tool.name: _safety(tool) for tool in result.tools}
        if complete:
            self._annotations = annotations
            self._tools_stale = False
        else:
            self._annotations.update(annotations)
        self._tools_known = True

    async def _refresh_tools(self) -> None:
        try:
            await self.list_tools(all_pages=True, cache_mode="refresh")
        except Exception:
            logger.warning(
                "%s: could not refresh the tool list after list_changed; "
                "calls to unknown tools are not retried",
                self.name,
                exc_info=True,
            )

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            self._tools_stale = True
        handler = self._user_message_handler
        if handler is not None:
            await handler(message)
        else:
            await checkpoint()

    def _unknown_tool(self, name: str) -> bool:
        """
        Whether *name* is missing from the listing, which may be stale.

        At protocol 2026-07-28 servers announce list changes only to
        ``listen()`` subscribers, so a tool added since the last listing
        shows up as an unknown name; the listing is refreshed for it, at
        most once per ``UNKNOWN_TOOL_REFRESH`` seconds.
        """
        if name in self._annotations:
            return False
        now = current_time()
        if now - self._last_refresh < UNKNOWN_TOOL_REFRESH:
            return False
        self._last_refresh = now
        return True

    def _needs_annotations(self, name: str) -> bool:
        return (
            self.config.trust_tool_annotations
            and name not in self.config.retryable_tools
        )

    def _retry_safe(self, name: str) -> bool:
        if name in self.config.retryable_tools:
            return True
        if not self.config.trust_tool_annotations:
            return False
        read_only, idempotent = self._annotations.get(name, (False, False))
        return read_only or idempotent

    def _on_breaker_change(
        self,
        breaker: CircuitBreaker,
        old: CircuitState,  # noqa: ARG002 (the listener signature)
        new: CircuitState,
    ) -> None:
        # Retry-After is the breaker's minimum open time: a server that
        # said "come back in 30 s" is not probed after 5.
        pushback = self._pushback
        if new is CircuitState.OPEN and pushback is not None:
            at, seconds = pushback
            now = current_time()
            if now - at <= 1.0:  # the failure that opened it said so
                breaker.trip(now, seconds)

    async def _call_until(
        self, deadline: float, operation: Callable[[Client], Awaitable[T]]
    ) -> T:
        """
        The supervisor's call until *deadline*, noting a Retry-After.

        Wrapped in a :class:`DeadlineAware` (``self._bounded``), so that
        the pipelines hand it their deadline: one cancel scope per attempt.
        """
        try:
            return await self._supervisor._call_until(deadline, operation)
        except Exception as exc:
            self._note_pushback(exc)
            raise

    def _note_pushback(self, exc: BaseException) -> None:
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and math.isfinite(retry_after):
            now = current_time()
            self._pushback = (now, float(retry_after))
            if self._breaker.state is CircuitState.OPEN:
                self._breaker.trip(now, float(retry_after))


def _check_arguments(name: str, arguments: object) -> None:
    """
    Refuse, before any policy sees the call, arguments the SDK cannot send.

    The SDK would raise a bare pydantic, serialisation or Unicode error
    from inside the call, where the server's breaker counted it as the
    server's failure; nothing was sent, and no retry can help.  Values are
    serialised as the SDK does (pydantic's JSON serialiser: dates, UUIDs,
    models are fine); the message names types, never values.

    Raises:
        PermanentError: With code ``-32602`` (invalid params).
    """
    if arguments is None:
        return
    if type(arguments) is dict:
        # The common case, without serialising anything: string keys, and
        # values that surely serialise (numbers, bools, None, ASCII text).
        # A loop, not all() over a generator: no frame per call.
        for key, value in arguments.items():
            kind = type(value)
            if type(key) is not str or (
                kind not in _PLAIN_TYPES
                and (kind is not str or not value.isascii())
            ):
                break
        else:
            return
    problem: str | None = None
    if not isinstance(arguments, Mapping):
        problem = f"must be a mapping, not {type(arguments).__name__}"
    elif not all(isinstance(key, str) for key in arguments):
        problem = "must have string keys only"
    else:
        try:
            pydantic_core.to_json(arguments)
        except ValueError as exc:  # PydanticSerializationError: types only
            problem = f"are not JSON-serialisable ({exc})"
    if problem is not None:
        raise PermanentError(
            INVALID_PARAMS, f"tool {name!r}: the arguments {problem}"
        )


_PLAIN_TYPES: Final = frozenset({int, float, bool, type(None)})


def _safety(tool: Any) -> tuple[bool, bool]:
    annotations = getattr(tool, "annotations", None)
    if annotations is None:
        return (False, False)
    return (
        bool(annotations.read_only_hint),
        bool(annotations.idempotent_hint),
    )


def _operation(
    name: str, counts: Mapping[Outcome, int], latency: LatencySnapshot
) -> OperationMetrics:
    failures: dict[Outcome, int] = {o: counts[o] for o in FAILURE_OUTCOMES}
    return OperationMetrics(
        name=name,
        total_requests=sum(counts.values()),
        successful_requests=counts[Outcome.SUCCESS],
        failed_requests=sum(failures.values()),
        cancelled_requests=counts[Outcome.CANCELLED],
        failures=MappingProxyType(failures),
        latency=latency,
    )


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class _ToolCall:
    """One attempt at a ``tools/call``, guarded by the tool's breaker."""

    client: ResilientMCPClient
    name: str
    arguments: dict[str, Any] | None
    options: dict[str, Any]

    async def run(self, deadline: float) -> CallToolResult:
        """
        The attempt, cancelled at the event-loop time *deadline*.

        The pipeline hands its deadline down (see :class:`DeadlineAware`)
        and the supervisor enforces it in the one scope it enters anyway
        for an in-process call; a timeout reaches the tool's breaker as a
        cancellation, as when the pipeline's own scope enforced it.  The
        tool's breaker, if any, is a policy like the server's: entered
        before the call, told its outcome after (an ``is_error`` result is
        a failure of the tool, not of the server).
        """
        owner = self.client
        registry = owner._tool_breakers
        breaker = registry.get(self.name) if registry is not None else None
        permit = 0
        start = 0.0
        if breaker is not None:
            start = current_time()
            try:
                permit = breaker.enter_nowait(start)
            except Exception:
                await checkpoint()  # every rejection is a checkpoint
                raise
        error: BaseException | None = None
        try:
            if owner._progress_cap is None or owner._tool_timeout is None:
                # Client.call_tool(client, name=..., ...) when called with
                # the client: no coroutine frame of ours around the SDK's.
                request = partial(
                    Client.call_tool,
                    name=self.name,
                    arguments=self.arguments,
                    **self.options,
                )
                result: CallToolResult = await owner._supervisor._call_until(
                    deadline, request
                )
            else:
                result = await self._send_with_progress(
                    owner._progress_cap, owner._tool_timeout, deadline
                )
        except Exception as exc:
            owner._note_pushback(exc)
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            if breaker is not None:
                now = current_time()
                if error is None and result.is_error:
                    error = ToolError(self.name)
                breaker.leave(permit, now, now - start, error)
        if result.is_error:
            self._tool_error()
        return result

    def _tool_error(self) -> None:
        """Count an ``is_error`` result."""
        owner = self.client
        owner._tool_errors += 1
        owner._tool_error_counts.get(self.name)[0] += 1

    async def _send_with_progress(
        self, cap: float, step: float, deadline: float
    ) -> CallToolResult:
        """
        The call under a progress-aware timeout, and *deadline*.

        Each progress notification pushes the timeout out by another
        *step* seconds, never past start + *cap*.  *deadline* is the
        pipeline's (its bulkhead's), enforced as by :meth:`run`.
        """
        owner = self.client
        start = current_time()
        hard = start + cap
        scope = deadline_scope(min(start + step, hard))
        user_callback = self.options.get("progress_callback")

        async def on_progress(*args: Any) -> None:
            scope.deadline = min(current_time() + step, hard)
            if user_callback is not None:
                await user_callback(*args)

        options = {**self.options, "progress_callback": on_progress}
        with scope:
            return await owner._supervisor._call_until(
                deadline,
                lambda client: client.call_tool(
                    self.name, self.arguments, **options
                ),
            )
        limit = min(current_time(), hard) - start
        raise CallTimeout(limit, f"tool {self.name!r} (progress-aware)")
