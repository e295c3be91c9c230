"""
HTTP fault injection and serving for the flaky server.

:class:`HTTPFaultMiddleware` sits in front of ``streamable_http_app()`` and
answers chosen JSON-RPC requests with an HTTP error (503, 429, ...) and an
optional ``Retry-After`` header, the way an overloaded server or a proxy in
front of it would.  The body is plain text on purpose: a JSON-RPC error
body would be surfaced by the SDK client as that error, while a load
balancer's plain-text page is exactly the case where the SDK loses the
status (it reports ``-32603``).

:func:`serve_http` runs the app with uvicorn (asyncio only) and announces
the port it really bound, which is how ``--port 0`` becomes usable.
"""

from __future__ import annotations

import json
import os
import tempfile

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from ._flaky_state import CONTROL_TOOLS, HANDSHAKE_METHODS, FlakyState


if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


DEFAULT_HOST: Final = "127.0.0.1"
MCP_PATH: Final = "/mcp"
GRACEFUL_SHUTDOWN: Final = 1  # seconds uvicorn waits for open streams
_REASONS: Final = {
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def _is_rejectable(body: bytes, *, handshake: bool) -> bool:
    """
    Whether a POST body is a JSON-RPC request that faults may hit.

    Notifications, responses and the control tools always pass, so that a
    test can still steer a server that is refusing everything else; the
    handshake passes unless *handshake* is true.
    """
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or "id" not in message:
        return False
    method = message.get("method")
    if method in HANDSHAKE_METHODS:
        return handshake
    if method != "tools/call":
        return isinstance(method, str)
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    return name not in CONTROL_TOOLS


@final
@attrs.define(eq=False)
class HTTPFaultMiddleware:
    """
    ASGI middleware that answers some JSON-RPC POSTs with an HTTP error.

    Which requests fail, with which status and ``Retry-After``, is read
    from *state* on every request, so the ``configure`` tool (or a test
    holding the state) can change it while the server runs.

    Args:
        app: The ASGI app to protect (``MCPServer.streamable_http_app()``).
        state: The shared server state holding the HTTP fault knobs.

    .. versionadded:: 0.1.0
    """

    app: ASGIApp
    state: FlakyState

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # Buffer the body to see what it is, then replay it to the app.
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        state = self.state
        if (
            _is_rejectable(body, handshake=state.config.http_fault_handshake)
            and state.should_reject_http()
        ):
            state.http_rejections += 1
            await self._reject(send, state.http_status, state.retry_after)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {
                    "type": "http.request",
                    "body": body,
                    "more_body": False,
                }
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(
        send: Send, status: int, retry_after: str | None
    ) -> None:
        text = _REASONS.get(status, b"Injected Fault")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(text)).encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", retry_after.encode("latin-1")))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": text})


def create_flaky_http_app(server: MCPServer, state: FlakyState) -> ASGIApp:
    """
    The streamable HTTP app of *server* (at ``/mcp``) behind the faults.

    Args:
        server: A server from :func:`create_flaky_server`.
        state: The same :class:`FlakyState` the server was built with.

    Returns:
        An ASGI app whose lifespan runs the MCP session manager.

    .. versionadded:: 0.1.0
    """
    return HTTPFaultMiddleware(
        server.streamable_http_app(streamable_http_path=MCP_PATH), state
    )


def write_port_file(path: Path, info: dict[str, Any]) -> None:
    """
    Write *info* as JSON to *path* atomically (write, then rename).

    A reader polling for the file never sees it half-written.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".port-")
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    Path(tmp).replace(path)


def serve_http(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    announce: Callable[[str, int], None],
) -> None:
    """
    Serve *app* with uvicorn until the process is told to stop.

    Blocks; runs its own asyncio event loop (uvicorn supports no other).

    Args:
        app: The ASGI app.
        host: The interface to bind; loopback by default.
        port: The port to bind, or 0 for an ephemeral one.
        announce: Called as ``announce(host, port)`` once the server
            accepts connections, with the port really bound.

    .. versionadded:: 0.1.0
    """
    # uvicorn is imported here, not at the top: stdio servers never need
    # it, and every import adds to a subprocess server's start-up time.
    import uvicorn  # noqa: PLC0415

    class AnnouncingServer(uvicorn.Server):
        """A uvicorn server that reports its real address once listening."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()
                announce(bound[0], bound[1])

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    AnnouncingServer(config).run()
