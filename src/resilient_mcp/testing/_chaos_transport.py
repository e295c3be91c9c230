"""
Fault injection between an MCP client and its transport.

:class:`ChaosTransport` sits where the SDK's ``Client`` expects a
transport and wraps a real one (the in-memory JSON-RPC transport of an
in-process server, a stdio subprocess, streamable HTTP).  Requests from
the client go through a :class:`~._chaos.FaultInjector`; what it decides
is applied to the request (answered with an error, swallowed, the
connection dropped) or remembered for the server's answer (delayed,
garbled, misaddressed, mistyped, inflated, reordered).

Everything else (notifications, the handshake, answers to the server's own
requests) passes through untouched, and in the caller's task: the SDK's
streamable HTTP transport sends each request in a copy of the sender's
context, which is how resilient_mcp recovers HTTP statuses, so the write
side adds no task hop.  The read side keeps the sender context that the
inner transport reports (``last_context``) with every message.
"""

from __future__ import annotations

import contextvars
import sys

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Self, TextIO, TypeAlias, final

import anyio
import attrs

from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)

from .._mcp._http import create_http_client
from .._mcp._sdk_private import InMemoryTransport
from .._mcp._transport import ReadStreamBase, is_spec
from ._chaos import (
    Corrupt,
    Corruption,
    Decision,
    Drop,
    Error,
    FaultInjector,
    Hang,
    Reorder,
)


if TYPE_CHECKING:
    from types import TracebackType

    import httpx2

    from anyio.streams.memory import (
        MemoryObjectReceiveStream,
        MemoryObjectSendStream,
    )

    from .._mcp._streams import ReadStream, TransportStreams, WriteStream


HANDSHAKE_METHODS: Final = frozenset({"initialize", "server/discover"})
"""Requests spared by default, so that connecting stays predictable."""

PADDING_KEY: Final = "resilient_mcp/chaos-padding"
"""The ``_meta`` key :attr:`~._chaos.Corruption.OVERSIZED` pads under."""

UNEXPECTED_KEY: Final = "resilient_mcp/chaos-unexpected"
"""The only key of the structured content
:attr:`~._chaos.Corruption.OUTPUT_SCHEMA_MISMATCH` leaves."""

_WRONG: Final = "chaos: wrong type"

_Item: TypeAlias = tuple[
    contextvars.Context | None, SessionMessage | Exception
]


def _methods(value: Collection[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _wrong_type(value: object) -> object:
    """A value of another JSON type than *value*."""
    if isinstance(value, str | type(None)):
        return [_WRONG]
    return _WRONG


def _error_data(error: BaseException) -> ErrorData:
    if isinstance(error, MCPError):
        return error.error
    text = str(error) or type(error).__name__
    return ErrorData(code=INTERNAL_ERROR, message=f"chaos: {text}")


@final
@attrs.define(eq=False, repr=False)
class _ChaosReadStream(ReadStreamBase):
    """The client's read side: what the link delivers, with its context."""

    receiver: MemoryObjectReceiveStream[_Item]
    last_context: contextvars.Context | None = None

    async def receive(self) -> SessionMessage | Exception:
        context, item = await self.receiver.receive()
        self.last_context = context
        return item

    async def aclose(self) -> None:
        await self.receiver.aclose()


@final
@attrs.define(eq=False, repr=False)
class _ChaosWriteStream:
    """The client's write side: every message goes through the link."""

    link: _Link

    async def send(self, item: SessionMessage, /) -> None:
        await self.link.send(item)

    async def aclose(self) -> None:
        await self.link.inner_write.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@final
@attrs.define(eq=False, repr=False)
class _Link:
    """One connection through a :class:`ChaosTransport`."""

    decide: Callable[[], Decision]
    affects: Callable[[str], bool]
    inner_read: ReadStream[SessionMessage | Exception]
    inner_write: WriteStream[SessionMessage]
    to_client: MemoryObjectSendStream[_Item]
    on_in_flight: Callable[[int], None]
    task_group: anyio.abc.TaskGroup | None = None
    pending: dict[RequestId, Decision] = attrs.field(factory=dict)
    outstanding: set[RequestId] = attrs.field(factory=set)
    dropped: bool = False
    delivered: anyio.Event = attrs.field(factory=anyio.Event)

    # -- the client's requests -------------------------------------------

    async def send(self, item: SessionMessage) -> None:
        if self.dropped:
            raise anyio.ClosedResourceError
        message = item.message
        if isinstance(message, JSONRPCNotification):
            self._forget_cancelled(message)
        if not isinstance(message, JSONRPCRequest):
            await self.inner_write.send(item)
            return
        self.outstanding.add(message.id)
        self.on_in_flight(len(self.outstanding))
        if not self.affects(message.method):
            await self.inner_write.send(item)
            return
        decision = self.decide()
        fault = decision.fault
        if isinstance(fault, Error):
            answer = JSONRPCError(
                jsonrpc="2.0", id=message.id, error=_error_data(fault.error())
            )
            await self._deliver(None, SessionMessage(answer))
            return
        if isinstance(fault, Hang):
            await anyio.lowlevel.checkpoint()
            return
        if decision.delay > 0 or isinstance(fault, Corrupt | Reorder):
            self.pending[message.id] = decision
        await self.inner_write.send(item)
        if isinstance(fault, Drop):
            self.drop()

    def _forget_cancelled(self, message: JSONRPCNotification) -> None:
        # A cancelled request may never be answered: forget its decision,
        # so that the table stays as small as the requests in flight.
        if message.method != "notifications/cancelled":
            return
        params = message.params or {}
        request_id = params.get("requestId")
        if isinstance(request_id, int | str):
            self.pending.pop(request_id, None)
            self.outstanding.discard(request_id)

    def drop(self) -> None:
        """End the connection: the client sees the end of the stream."""
        if self.dropped:
            return
        self.dropped = True
        self.pending.clear()
        self.outstanding.clear()
        self.to_client.close()
        if self.task_group is not None:
            self.task_group.cancel_scope.cancel()

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the pump and the held-back deliveries until dropped."""
        # A task group of the link's own, inside a task: dropping cancels
        # it, never the caller's code that runs inside the transport.
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            tg.start_soon(self.pump)
            task_status.started()

    # -- the server's messages ---------------------------------------------

    async def pump(self) -> None:
        """Forward the server's messages, spoiling some, until it ends."""
        inner = self.inner_read
        try:
            async for item in inner:
                context = getattr(inner, "last_context", None)
                message = (
                    item.message if isinstance(item, SessionMessage) else None
                )
                decision = None
                if (
                    isinstance(message, JSONRPCResponse | JSONRPCError)
                    and message.id is not None
                ):
                    decision = self.pending.pop(message.id, None)
                if decision is None:
                    await self._deliver(context, item)
                    continue
                spoilt = _spoil(item, decision)
                if decision.delay > 0 or isinstance(decision.fault, Reorder):
                    assert self.task_group is not None  # noqa: S101 (run)
                    self.task_group.start_soon(
                        self._deliver_later, context, spoilt, decision
                    )
                else:
                    await self._deliver(context, spoilt)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the connection is gone either way
        finally:
            # The server's side ended: so does the client's, as on a real
            # link, even if answers are still held back.
            self.to_client.close()

    async def _deliver(
        self,
        context: contextvars.Context | None,
        item: SessionMessage | Exception,
    ) -> None:
        try:
            await self.to_client.send((context, item))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # dropped, or the client is gone
        if isinstance(item, SessionMessage):
            message = item.message
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                self.outstanding.discard(message.id)
        delivered, self.delivered = self.delivered, anyio.Event()
        delivered.set()

    async def _deliver_later(
        self,
        context: contextvars.Context | None,
        item: SessionMessage | Exception,
        decision: Decision,
    ) -> None:
        if decision.delay > 0:
            await anyio.sleep(decision.delay)
        fault = decision.fault
        if isinstance(fault, Reorder):
            overtaken = self.delivered
            with anyio.move_on_after(fault.max_hold):
                await overtaken.wait()
        await self._deliver(context, item)


def _spoil(
    item: SessionMessage | Exception, decision: Decision
) -> SessionMessage | Exception:
    fault = decision.fault
    if not isinstance(fault, Corrupt) or not isinstance(item, SessionMessage):
        return item
    message = item.message
    kind = fault.kind
    if kind is Corruption.GARBLED_JSON:
        text = message.model_dump_json(by_alias=True, exclude_unset=True)
        try:
            jsonrpc_message_adapter.validate_json(
                text[: len(text) // 2], by_name=False
            )
        except ValueError as exc:
            # What the SDK's stdio transport hands the session for a line
            # it cannot parse.
            return exc
        raise AssertionError("half a JSON object parsed")  # pragma: no cover
    if kind is Corruption.UNKNOWN_ID:
        update = {"id": f"chaos-unknown-{decision.index}"}
        return SessionMessage(message.model_copy(update=update))
    if not isinstance(message, JSONRPCResponse):
        return item  # an error answer has no result to spoil
    result = dict(message.result)
    if kind is Corruption.SCHEMA_MISMATCH:
        result = {key: _wrong_type(value) for key, value in result.items()}
        result.setdefault("_meta", _WRONG)
    elif kind is Corruption.OUTPUT_SCHEMA_MISMATCH:
        if "structuredContent" not in result:
            return item
        result["structuredContent"] = {UNEXPECTED_KEY: _WRONG}
    else:
        meta = result.get("_meta")
        padded = dict(meta) if isinstance(meta, dict) else {}
        padded[PADDING_KEY] = "x" * fault.size
        result["_meta"] = padded
    return SessionMessage(message.model_copy(update={"result": result}))


@final
@attrs.define(eq=False, repr=False)
class ChaosTransport:
    """
    An MCP transport that injects faults into another one.

    Give it to ``mcp.Client`` or to
    :class:`~resilient_mcp.ResilientMCPClient` in place of the server::

        injector = FaultInjector([Error(rate=0.8)], seed=1)
        chaos = ChaosTransport(server, injector, methods={"tools/call"})
        async with ResilientMCPClient(chaos) as client:
            ...

    Every request the client sends for one of *methods* is a call to the
    injector:

    * :class:`~._chaos.Error`: not sent; answered with a JSON-RPC error;
    * :class:`~._chaos.Hang`: not sent and never answered;
    * :class:`~._chaos.Drop`: sent, then the connection ends (the client
      sees the end of the stream; every request in flight fails);
    * :class:`~._chaos.Latency`: the answer is delivered that much later;
    * :class:`~._chaos.Corrupt`: the answer is garbled (the client gets the
      parse error a byte transport would hand it), sent with an unknown
      id, mistyped, its structured content made to violate the tool's
      output schema, or padded;
    * :class:`~._chaos.Reorder`: the answer is held back until another
      one has overtaken it.

    It is reusable: each ``async with`` opens a fresh inner transport, so
    a reconnecting client gets a new connection (and a new subprocess, for
    stdio) every time.  One connection at a time.

    Args:
        server: What to wrap: an in-process ``MCPServer`` or ``Server``
            (served over the SDK's in-memory JSON-RPC transport, not the
            direct dispatcher, so that there are messages to spoil), a
            ``StdioServerParameters``, a streamable HTTP URL (with the
            status hook resilient_mcp needs for ``Retry-After``), a
            transport, or a zero-argument callable returning one of these
            for each connection.
        injector: Decides the faults.  The attribute may be set to another
            injector at any time; the next request asks the new one.
        methods: The requests faults may hit; ``None`` (the default) for
            every request but the handshake (``initialize`` and
            ``server/discover``).
        errlog: Where a stdio server's stderr goes (``sys.stderr`` when
            ``None``); it must have a ``fileno()``.
        http_client_factory: Builds the httpx2 client for a URL (one set
            up as the SDK's default when ``None``).

    .. versionadded:: 0.1.0
    """

    server: Any
    injector: FaultInjector
    methods: frozenset[str] | None = attrs.field(
        default=None, converter=_methods, kw_only=True
    )
    errlog: TextIO | None = attrs.field(default=None, kw_only=True)
    http_client_factory: Callable[[], httpx2.AsyncClient] | None = attrs.field(
        default=None, kw_only=True
    )

    _connection: AbstractAsyncContextManager[TransportStreams] | None = (
        attrs.field(init=False, default=None)
    )
    _link: _Link | None = attrs.field(init=False, default=None)
    _connections: int = attrs.field(init=False, default=0)
    _peak: int = attrs.field(init=False, default=0)

    def __repr__(self) -> str:
        return (
            f"<ChaosTransport {self._connections} connections, "
            f"{self.injector!r}>"
        )

    @property
    def connections(self) -> int:
        """Connections opened so far."""
        return self._connections

    @property
    def in_flight(self) -> int:
        """
        Requests of the open connection still waiting for their answer.

        A request counts from the moment the client sends it (whatever the
        injector does with it) until its answer reaches the client, or the
        client cancels it.
        """
        return len(self._link.outstanding) if self._link is not None else 0

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever in flight at once, over all connections."""
        return self._peak

    def _note_in_flight(self, count: int) -> None:
        self._peak = max(self._peak, count)

    def drop(self) -> None:
        """
        Drop the open connection now, as a :class:`~._chaos.Drop` would.

        A no-op when no connection is open.
        """
        if self._link is not None:
            self._link.drop()

    async def __aenter__(self) -> TransportStreams:
        if self._connection is not None:
            raise RuntimeError(f"{self!r} already has a connection open")
        connection = self._open()
        streams = await connection.__aenter__()
        self._connection = connection
        return streams

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        connection, self._connection = self._connection, None
        if connection is None:
            return None
        return await connection.__aexit__(exc_type, exc_val, exc_tb)

    def _decide(self) -> Decision:
        return self.injector.decide()

    def _affects(self, method: str) -> bool:
        if self.methods is None:
            return method not in HANDSHAKE_METHODS
        return method in self.methods

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[TransportStreams]:
        async with self._inner() as (inner_read, inner_write):
            to_client, from_link = anyio.create_memory_object_stream[_Item](0)
            with to_client, from_link:
                async with anyio.create_task_group() as tg:
                    link = _Link(
                        decide=self._decide,
                        affects=self._affects,
                        inner_read=inner_read,
                        inner_write=inner_write,
                        to_client=to_client,
                        on_in_flight=self._note_in_flight,
                    )
                    self._link = link
                    self._connections += 1
                    await tg.start(link.run)
                    try:
                        yield (
                            _ChaosReadStream(from_link),
                            _ChaosWriteStream(link),
                        )
                    finally:
                        self._link = None
                        tg.cancel_scope.cancel()

    @asynccontextmanager
    async def _inner(self) -> AsyncIterator[TransportStreams]:
        spec = self.server
        if not is_spec(spec):
            spec = spec()
        if isinstance(spec, MCPServer | Server):
            transport: Any = InMemoryTransport(spec)
        elif isinstance(spec, StdioServerParameters):
            errlog = self.errlog if self.errlog is not None else sys.stderr
            transport = stdio_client(spec, errlog=errlog)
        elif isinstance(spec, str):
            async with (
                create_http_client(self.http_client_factory) as http,
                streamable_http_client(spec, http_client=http) as streams,
            ):
                yield streams
            return
        else:
            transport = spec
        async with transport as streams:
            yield streams
