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

import sys

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TextIO, final

import anyio
import attrs

from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.server.mcpserver import MCPServer

from .._mcp._http import create_http_client
from .._mcp._sdk_private import InMemoryTransport
from .._mcp._transport import is_spec
from ._chaos import Decision, FaultInjector
from ._chaos_link import (
    PADDING_KEY,
    UNEXPECTED_KEY,
    ChaosReadStream,
    ChaosWriteStream,
    Item,
    Link,
)


if TYPE_CHECKING:
    from types import TracebackType

    import httpx2

    from .._mcp._streams import TransportStreams


# The constants resilient_mcp.testing.chaos serves from here.
__all__ = [
    "HANDSHAKE_METHODS",
    "PADDING_KEY",
    "UNEXPECTED_KEY",
    "ChaosTransport",
]

HANDSHAKE_METHODS: Final = frozenset({"initialize", "server/discover"})
"""Requests spared by default, so that connecting stays predictable."""


def _methods(value: Collection[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


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
    _link: Link | None = attrs.field(init=False, default=None)
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
            to_client, from_link = anyio.create_memory_object_stream[Item](0)
            with to_client, from_link:
                async with anyio.create_task_group() as tg:
                    link = Link(
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
                            ChaosReadStream(from_link),
                            ChaosWriteStream(link),
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
