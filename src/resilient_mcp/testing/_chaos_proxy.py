"""
A TCP proxy that misbehaves on demand, in the spirit of Toxiproxy.

Put it between a client and a real server (an HTTP MCP server in a
subprocess, say) to fail the network itself: accept connections and never
answer, reset them at once, or cut the ones that are open.  It runs as a
task in the test's own task group, on trio or asyncio, and listens on the
loopback interface by default.
"""

from __future__ import annotations

import enum

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, final

import anyio
import anyio.abc
import attrs


DEFAULT_HOST: Final = "127.0.0.1"
CHUNK_BYTES: Final = 65536  # bytes read at a time


class ProxyMode(enum.Enum):
    """
    What a :class:`ChaosProxy` does with traffic.

    .. versionadded:: 0.1.0
    """

    FORWARD = "forward"
    """Pass bytes both ways: a healthy network."""
    BLACKHOLE = "blackhole"
    """Accept connections and read what is sent, but never answer (open
    connections stop answering too): a hung server or a dead middlebox."""
    RESET = "reset"
    """Accept each new connection and close it at once."""


@final
@attrs.define(eq=False, repr=False)
class ChaosProxy:
    """
    A running chaos proxy; get one from :func:`open_chaos_proxy`.

    Set :attr:`mode` at any time; :meth:`cut` closes the connections that
    are open.

    .. versionadded:: 0.1.0
    """

    target_host: str
    """Where connections are forwarded to."""
    target_port: int
    """The target's port."""
    port: int
    """The port the proxy listens on."""
    host: str = DEFAULT_HOST
    """The address the proxy listens on."""
    mode: ProxyMode = ProxyMode.FORWARD
    """What the proxy does now; change it whenever you like."""

    _scopes: set[anyio.CancelScope] = attrs.field(init=False, factory=set)
    _accepted: int = attrs.field(init=False, default=0)
    _cut: int = attrs.field(init=False, default=0)

    def __repr__(self) -> str:
        return (
            f"<ChaosProxy {self.host}:{self.port} -> {self.target_host}:"
            f"{self.target_port} {self.mode.value}, {len(self._scopes)} open>"
        )

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._scopes)

    def cut(self) -> int:
        """
        Close every open connection now, as a failing network would.

        Returns:
            How many connections were cut.
        """
        scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()
        self._cut += len(scopes)
        return len(scopes)

    async def serve(
        self, listener: anyio.abc.Listener[anyio.abc.ByteStream]
    ) -> None:
        """Accept and handle connections until cancelled."""
        await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.ByteStream) -> None:
        self._accepted += 1
        try:
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    await self._relay(client)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # one side went away
                except OSError:
                    pass  # the target refused, or the network failed
                finally:
                    self._scopes.discard(scope)
        finally:
            # Even when the proxy itself is cancelled: a socket left to the
            # garbage collector is a ResourceWarning.
            await anyio.aclose_forcefully(client)

    async def _relay(self, client: anyio.abc.ByteStream) -> None:
        if self.mode is ProxyMode.RESET:
            return
        if self.mode is ProxyMode.BLACKHOLE:
            await self._swallow(client)
            return
        upstream = await anyio.connect_tcp(self.target_host, self.target_port)
        async with upstream, anyio.create_task_group() as tg:
            tg.start_soon(self._pipe, client, upstream, tg.cancel_scope)
            await self._pipe(upstream, client, tg.cancel_scope)

    async def _swallow(self, stream: anyio.abc.ByteStream) -> None:
        try:
            while True:
                await stream.receive(CHUNK_BYTES)
        except anyio.EndOfStream:
            return

    async def _pipe(
        self,
        source: anyio.abc.ByteStream,
        sink: anyio.abc.ByteStream,
        both: anyio.CancelScope,
    ) -> None:
        try:
            while True:
                chunk = await source.receive(CHUNK_BYTES)
                if self.mode is ProxyMode.BLACKHOLE:
                    continue  # swallowed: the other side never hears of it
                await sink.send(chunk)
        except anyio.EndOfStream:
            pass
        # One direction ended: so does the exchange (no half-open games).
        both.cancel()


@asynccontextmanager
async def open_chaos_proxy(
    target_port: int,
    *,
    target_host: str = DEFAULT_HOST,
    host: str = DEFAULT_HOST,
    port: int = 0,
    mode: ProxyMode = ProxyMode.FORWARD,
) -> AsyncIterator[ChaosProxy]:
    """
    Run a :class:`ChaosProxy` to *target_port* for the body of the block.

    >>> # async with open_chaos_proxy(server_port) as proxy:
    >>> #     url = f"http://127.0.0.1:{proxy.port}/mcp"
    >>> #     proxy.mode = ProxyMode.BLACKHOLE

    Args:
        target_port: The real server's port.
        target_host: The real server's address.
        host: The address to listen on (the loopback interface by default).
        port: The port to listen on; 0 picks a free one.
        mode: The initial :class:`ProxyMode`.

    Yields:
        The running proxy; it and its connections are closed on exit.

    Raises:
        OSError: The address could not be bound.

    .. versionadded:: 0.1.0
    """
    listener = await anyio.create_tcp_listener(
        local_host=host, local_port=port
    )
    async with listener, anyio.create_task_group() as tg:
        bound: int = listener.extra(  # noqa: S610 - not Django's extra()
            anyio.abc.SocketAttribute.local_port
        )
        proxy = ChaosProxy(
            target_host=target_host,
            target_port=target_port,
            port=bound,
            host=host,
            mode=mode,
        )
        tg.start_soon(proxy.serve, listener)
        try:
            yield proxy
        finally:
            proxy.cut()
            tg.cancel_scope.cancel()
