"""
Building transports from server specs, and noticing when one ends.

A dead stdio server ends the SDK's read stream quietly: the dispatcher
fails every pending request with ``-32000`` and stops, but nothing tells
the task that owns the ``Client``.  :func:`watch_transport` wraps the read
stream so that its end of stream is reported to the session supervisor at
once, before the dispatcher even wakes the waiting callers.
"""

from __future__ import annotations

import math
import sys

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias, final

import anyio
import attrs

from mcp.client import Transport
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server
from mcp.server.mcpserver import MCPServer

from ._auth import wrap_auth
from ._http import create_http_client


if TYPE_CHECKING:
    import contextvars

    from types import TracebackType
    from typing import Self

    import httpx2

    from mcp.shared.message import SessionMessage

    from ._streams import ReadStream, TransportStreams


ServerSpec: TypeAlias = (
    MCPServer | Server[Any] | StdioServerParameters | str | Transport
)
"""What ``mcp.Client`` accepts: an in-process server, stdio parameters, a
streamable HTTP URL, or a ready transport."""


class ReadStreamBase:
    """
    The iteration and context-manager half of the SDK's read streams.

    Subclasses provide ``receive()`` and ``aclose()``.
    """

    async def receive(self) -> SessionMessage | Exception:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

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
@attrs.define(eq=False)
class _WatchedReadStream(ReadStreamBase):
    """A read stream that calls *on_close* when its peer goes away."""

    inner: ReadStream[SessionMessage | Exception]
    on_close: Callable[[], None]

    @property
    def last_context(self) -> contextvars.Context | None:
        # The dispatcher runs inbound handlers in the sender's context when
        # the transport provides one (streamable HTTP); keep providing it.
        context: contextvars.Context | None = getattr(
            self.inner, "last_context", None
        )
        return context

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self.inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.on_close()
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def watch_transport(
    transport: Transport, on_close: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    """
    Enter *transport* and report the end of its read stream.

    Args:
        transport: Any MCP client transport.
        on_close: Called (synchronously, once per end) when the read
            stream reports end of stream or is closed under the reader.

    Yields:
        The transport's streams, the read stream wrapped.
    """
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, on_close), write_stream


def is_spec(value: object) -> bool:
    """
    Whether *value* is a server spec rather than a factory of specs.

    Transports are async context managers; servers, parameters and URLs
    are recognised by type.  Anything else callable is a factory.
    """
    return (
        isinstance(value, MCPServer | Server | StdioServerParameters | str)
        or hasattr(value, "__aenter__")
        or not callable(value)
    )


async def enter_transport(
    stack: AsyncExitStack,
    spec: ServerSpec,
    *,
    on_close: Callable[[], None],
    errlog: TextIO | None,
    http_client_factory: Callable[[], httpx2.AsyncClient] | None,
    auth: httpx2.Auth | None = None,
    login_timeout: float = math.inf,
) -> ServerSpec:
    """
    Turn *spec* into what the ``Client`` should connect to, watched.

    In-process servers are returned unchanged (they cannot die on their
    own).  Stdio parameters and URLs become SDK transports; a URL gets an
    httpx2 client with the status hook, entered on *stack*.  Every
    transport's read stream is watched.

    Args:
        stack: Where to enter the httpx2 client, in the calling task.
        spec: The server spec.
        on_close: See :func:`watch_transport`.
        errlog: Where a stdio server's stderr goes (``sys.stderr`` when
            ``None``); it must have a ``fileno()``.
        http_client_factory: Builds the httpx2 client for URLs.
        auth: Authenticates the requests to URLs (else the auth of the
            factory's client, if any); wrapped in
            :class:`~._auth.ResilientAuth` either way.
        login_timeout: See ``SessionConfig.login_timeout``.

    Returns:
        The argument for ``mcp.Client``.
    """
    if isinstance(spec, MCPServer | Server):
        return spec
    transport: Transport
    if isinstance(spec, StdioServerParameters):
        transport = stdio_client(
            spec, errlog=errlog if errlog is not None else sys.stderr
        )
    elif isinstance(spec, str):
        http = await stack.enter_async_context(
            create_http_client(http_client_factory)
        )
        if auth is not None or http.auth is not None:
            http.auth = wrap_auth(auth or http.auth, login_timeout)
        transport = streamable_http_client(spec, http_client=http)
    else:
        transport = spec
    return watch_transport(transport, on_close)
