"""
The one place that relies on what the MCP SDK does not make public.

Everything else in resilient_mcp uses the SDK's public modules only
(``mcp``, ``mcp.client``, ``mcp.client.stdio``, ``mcp.client.streamable_http``,
``mcp.server``, ``mcp.shared.exceptions``, ``mcp.shared.message``,
``mcp_types``).  What is here has no public equivalent in ``mcp`` 2.3;
``tests/mcp/test_sdk_private.py`` pins the behaviour relied on, so that an
SDK upgrade that changes it fails there first.

* :class:`InMemoryTransport` (``mcp.client._memory``): an in-process server
  served over JSON-RPC memory streams.  ``mcp.shared.memory`` has the
  streams, but serving an ``MCPServer`` on them takes its private
  ``_lowlevel_server``; the SDK's own ``Client(mode="legacy")`` uses this
  class.  Only the chaos transport needs it (it spoils messages, and the
  in-process fast path has none).
* :func:`refuse_requests_while`: the SDK has no public hook on a session's
  outgoing requests.  Streams exist only for stream transports (the
  in-process path dispatches directly), and a refusal there would come
  after the SDK opened its "MCP send" OpenTelemetry span, leaving an error
  span per refused request.  So the one entry point every request passes,
  the public ``ClientSession.send_request``, is wrapped on the session's
  instance.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from mcp.client._memory import InMemoryTransport


if TYPE_CHECKING:
    from mcp.client import Client


__all__ = ["InMemoryTransport", "refuse_requests_while"]


def refuse_requests_while(
    client: Client, flag: ContextVar[bool], error: Callable[[], Exception]
) -> None:
    """
    Make *client*'s session raise ``error()`` for requests sent under *flag*.

    A request sent while *flag* is true in the sending task's context never
    reaches the dispatcher (no span, no request id, no wire); others pass
    unchanged, with no frame of ours beyond the wrapper itself.  Answers
    the SDK serves from its response cache send no request at all, so they
    still come back.

    Args:
        client: A connected ``mcp.Client``.
        flag: Read on every request.
        error: Makes the exception to raise.
    """
    session = client.session
    send = session.send_request

    async def send_request(*args: Any, **kwargs: Any) -> Any:
        if flag.get():
            raise error()
        return await send(*args, **kwargs)

    # An instance attribute: every request of this session passes here
    # (ClientSession's own methods call self.send_request).
    session.send_request = send_request  # type: ignore[method-assign]
