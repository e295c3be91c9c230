"""
What the client does when a session connects, or the server speaks.

On each connect: guard the session for the cache probe, remember what the
server said about itself (its capabilities, for :attr:`server_capabilities`
and friends), learn the tools' annotations, then run the user's own
``on_connect``.  On each message from the server: note
``tools/list_changed``, then pass it to the user's handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, final

import attrs

from mcp_types import (
    Implementation,
    ServerCapabilities,
    ToolListChangedNotification,
)

from .._timeouts import checkpoint
from ._cache_probe import guard_session
from ._tool_catalog import ToolCatalog


if TYPE_CHECKING:
    from mcp.client import Client


@attrs.frozen(kw_only=True)
class ServerIdentity:
    """What a server said about itself when a session connected."""

    capabilities: ServerCapabilities
    """Its capabilities (``initialize`` or ``discover``)."""
    info: Implementation | None
    """Its name and version; ``None`` if it did not say."""
    instructions: str | None
    """Its instructions, if any."""
    protocol_version: str
    """The protocol version the session negotiated."""

    @classmethod
    def of(cls, client: Client) -> ServerIdentity:
        """What *client*'s server said (the SDK's public properties)."""
        return cls(
            capabilities=client.server_capabilities,
            info=client.server_info,
            instructions=client.instructions,
            protocol_version=client.protocol_version,
        )


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class SessionHooks:
    """
    The client's ``on_connect`` and ``message_handler``, around the user's.

    Args:
        catalog: The tools' retry safety, learnt on connect and marked
            stale on ``tools/list_changed``.
        user_on_connect: The user's ``SessionConfig.on_connect``.
        user_message_handler: The user's ``message_handler`` (in
            ``SessionConfig.client_options``).
    """

    catalog: ToolCatalog
    user_on_connect: Callable[[Client], Awaitable[object]] | None
    user_message_handler: Callable[[Any], Awaitable[object]] | None
    server: ServerIdentity | None = attrs.field(init=False, default=None)
    """What the server said at the last connect; ``None`` before one."""

    async def on_connect(self, client: Client) -> None:
        """Run once per session, in the supervisor's task."""
        guard_session(client)  # so that a cache probe can refuse to send
        self.server = ServerIdentity.of(client)
        await self.catalog.learn_all(client)
        if self.user_on_connect is not None:
            await self.user_on_connect(client)

    async def on_message(self, message: Any) -> None:
        """Note ``tools/list_changed``; then the user's handler."""
        if isinstance(message, ToolListChangedNotification):
            self.catalog.stale = True
        handler = self.user_message_handler
        if handler is not None:
            await handler(message)
        else:
            await checkpoint()

    def identity(self) -> ServerIdentity:
        """
        What the server said at the last connect.

        Raises:
            RuntimeError: No session has connected yet (as the SDK's
                ``Client`` raises outside ``async with``).
        """
        server = self.server
        if server is None:
            raise RuntimeError(
                "no MCP session has connected yet: enter the client with "
                "`async with` first"
            )
        return server
