"""
The rest of ``mcp.Client``: the server's identity, and 2025-era operations.

:class:`ServerFeatures` is a base of
:class:`~resilient_mcp.ResilientMCPClient`.  Its properties read what the
server said about itself when the last session connected (they change
when a reconnect reaches a different server).  Its operations go through
the pipeline like every other (bulkhead, retry, the server's breaker, the
timeout), and all of them are safe to repeat: subscribing or
unsubscribing twice, setting the same logging level twice, or telling the
server twice that the roots changed, does no harm.  So they are retried
on transient errors like the reads.

The SDK deprecates these four operations (and ``send_ping``) as of
protocol 2026-07-28 with an ``MCPDeprecationWarning``; so do they, with
the SDK's own words, once per call at the caller's line.  Underneath they
send the protocol's requests with the SDK's public ``ClientSession``
methods that do not warn a second time.
"""

from __future__ import annotations

import warnings

from typing import TYPE_CHECKING, Any, Final

from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import (
    EmptyResult,
    Implementation,
    LoggingLevel,
    RequestParamsMeta,
    RootsListChangedNotification,
    ServerCapabilities,
    SetLevelRequest,
    SetLevelRequestParams,
    SubscribeRequest,
    SubscribeRequestParams,
    UnsubscribeRequest,
    UnsubscribeRequestParams,
)


if TYPE_CHECKING:
    from mcp.client import Client

    from .._pipeline import ResiliencePipeline
    from .._timeouts import DeadlineAware
    from ._client_hooks import SessionHooks


# The SDK's own deprecation messages (mcp.Client's).
SUBSCRIBE_DEPRECATED: Final = (
    "resources/subscribe is removed as of 2026-07-28; "
    "use Client.listen() instead."
)
UNSUBSCRIBE_DEPRECATED: Final = (
    "resources/unsubscribe is removed as of 2026-07-28; "
    "use Client.listen() instead."
)
LOGGING_DEPRECATED: Final = (
    "The logging capability is deprecated as of 2026-07-28 (SEP-2577)."
)
ROOTS_DEPRECATED: Final = (
    "The roots capability is deprecated as of 2026-07-28 (SEP-2577)."
)
PING_DEPRECATED: Final = (
    "ping is removed as of 2026-07-28; "
    "the method only works under mode='legacy'."
)


def warn_deprecated(message: str) -> None:
    """Warn as ``mcp.Client`` does, at the line that called our method."""
    warnings.warn(message, MCPDeprecationWarning, stacklevel=3)


class ServerFeatures:
    """
    What :class:`~resilient_mcp.ResilientMCPClient` offers beyond its core.

    .. versionadded:: 0.1.0
    """

    # Set by ResilientMCPClient.__init__.
    _pipelines: dict[str, ResiliencePipeline]
    _bounded: DeadlineAware
    _hooks: SessionHooks

    # -- what the server said about itself --------------------------------

    @property
    def server_capabilities(self) -> ServerCapabilities:
        """
        The server's capabilities, as the last session was told.

        Raises:
            RuntimeError: No session has connected yet.
        """
        return self._hooks.identity().capabilities

    @property
    def server_info(self) -> Implementation | None:
        """
        The server's name and version; ``None`` if it did not say.

        Raises:
            RuntimeError: No session has connected yet.
        """
        return self._hooks.identity().info

    @property
    def instructions(self) -> str | None:
        """
        The server's instructions, if any.

        Raises:
            RuntimeError: No session has connected yet.
        """
        return self._hooks.identity().instructions

    @property
    def protocol_version(self) -> str:
        """
        The protocol version the last session negotiated.

        Raises:
            RuntimeError: No session has connected yet.
        """
        return self._hooks.identity().protocol_version

    # -- 2025-era operations ------------------------------------------------

    async def subscribe_resource(
        self, uri: str, *, meta: RequestParamsMeta | None = None
    ) -> EmptyResult:
        """
        ``resources/subscribe`` (2025-era servers), retried where transient.

        Through the ``resources`` bulkhead.  A session that is replaced
        does not carry the subscription over: subscribe again from
        ``SessionConfig.on_connect`` if you need it to survive reconnects.

        Raises:
            PermanentError: The server does not offer it (``-32601``, as
                every server at protocol 2026-07-28 answers).
            ResilienceError: As the other operations.

        .. deprecated:: 0.1.0
           As ``mcp.Client.subscribe_resource``: removed at 2026-07-28.
        """
        warn_deprecated(SUBSCRIBE_DEPRECATED)
        request = SubscribeRequest(
            params=SubscribeRequestParams(uri=uri, _meta=meta)
        )
        return await self._empty_request("resources/subscribe", request)

    async def unsubscribe_resource(
        self, uri: str, *, meta: RequestParamsMeta | None = None
    ) -> EmptyResult:
        """
        ``resources/unsubscribe`` (2025-era servers), retried where transient.

        Through the ``resources`` bulkhead.

        Raises:
            PermanentError: The server does not offer it (``-32601``).
            ResilienceError: As the other operations.

        .. deprecated:: 0.1.0
           As ``mcp.Client.unsubscribe_resource``: removed at 2026-07-28.
        """
        warn_deprecated(UNSUBSCRIBE_DEPRECATED)
        request = UnsubscribeRequest(
            params=UnsubscribeRequestParams(uri=uri, _meta=meta)
        )
        return await self._empty_request("resources/unsubscribe", request)

    async def set_logging_level(
        self, level: LoggingLevel, *, meta: RequestParamsMeta | None = None
    ) -> EmptyResult:
        """
        ``logging/setLevel``, retried where transient; no bulkhead.

        Raises:
            PermanentError: The server does not offer it (``-32601``).
            ResilienceError: As the other operations.

        .. deprecated:: 0.1.0
           As ``mcp.Client.set_logging_level``: deprecated at 2026-07-28.
        """
        warn_deprecated(LOGGING_DEPRECATED)
        request = SetLevelRequest(
            params=SetLevelRequestParams(level=level, _meta=meta)
        )
        return await self._empty_request("logging/setLevel", request)

    async def send_roots_list_changed(self) -> None:
        """
        ``notifications/roots/list_changed``, a notification; no bulkhead.

        Nothing comes back: it succeeds once the notification is sent.  A
        failure to send it is retried where transient (the server hearing
        it twice only asks for the roots twice).

        Raises:
            ResilienceError: As the other operations.

        .. deprecated:: 0.1.0
           As ``mcp.Client.send_roots_list_changed``: deprecated at
           2026-07-28.
        """
        warn_deprecated(ROOTS_DEPRECATED)

        async def notify(client: Client) -> None:
            await client.session.send_notification(
                RootsListChangedNotification()
            )

        await self._pipelines["notifications/roots/list_changed"].call(
            self._bounded, notify
        )

    async def send_ping(self) -> EmptyResult:
        """
        ``ping``, where the negotiated protocol has it.

        At protocol 2026-07-28 there is no ping: the server answers
        ``-32601``, raised as :class:`PermanentError`.

        .. deprecated:: 0.1.0
           As ``mcp.Client.send_ping``: removed at 2026-07-28.
        """
        warn_deprecated(PING_DEPRECATED)

        async def ping(client: Client) -> EmptyResult:
            return await client.session.send_ping()

        return await self._pipelines["ping"].call(self._bounded, ping)

    async def _empty_request(self, method: str, request: Any) -> EmptyResult:
        """Send *request*, which the server answers with an empty result."""

        async def send(client: Client) -> EmptyResult:
            return await client.session.send_request(request, EmptyResult)

        result: EmptyResult = await self._pipelines[method].call(
            self._bounded, send
        )
        return result
