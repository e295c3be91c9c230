"""
The stream types of an MCP transport, as our own typing protocols.

``mcp.client.Transport`` (public) is an async context manager yielding a
read stream and a write stream, but the SDK keeps the stream protocols
themselves in private modules (``mcp.shared._stream_protocols``,
``mcp.client._transport``).  These are structural copies: anything that
satisfies them satisfies the SDK's, and the other way round (the mypy run
checks our transports against ``mcp.client.Transport``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, TypeAlias, TypeVar

from mcp.shared.message import SessionMessage


T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class ReadStream(Protocol[T_co]):
    """
    A transport's read side: ``receive()`` until ``anyio.EndOfStream``.

    A stream may also carry the sender's ``contextvars`` context of the
    last item as ``last_context`` (streamable HTTP does); read it with
    ``getattr(stream, "last_context", None)``.
    """

    async def receive(self) -> T_co: ...
    async def aclose(self) -> None: ...
    def __aiter__(self) -> ReadStream[T_co]: ...
    async def __anext__(self) -> T_co: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None: ...


class WriteStream(Protocol[T_contra]):
    """A transport's write side."""

    async def send(self, item: T_contra, /) -> None: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None: ...


TransportStreams: TypeAlias = tuple[
    ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]
]
"""What entering an MCP client transport gives: ``(read, write)``."""
