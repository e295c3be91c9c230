"""
An OAuth-protected MCP server and its authorization server, in process.

The MCP server is the SDK's ``MCPServer`` (stateless streamable HTTP with
JSON responses) behind a bearer-token check; next to it, a small
authorization server of ours: protected resource metadata (RFC 9728),
authorization server metadata (RFC 8414) and a token endpoint for the
authorization code and refresh grants.  The "person" who logs in is
:class:`Person`, the ``redirect_handler`` / ``callback_handler`` pair of
the SDK's ``OAuthClientProvider``: it takes ``login_seconds`` of event-loop
time (virtual under MockClock) to come back with a code.

One ASGI app serves it all; tests reach it through ``httpx2.ASGITransport``
(no sockets, so trio's MockClock can drive time), or through uvicorn on an
ephemeral 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, urlparse

import anyio
import attrs
import httpx2
import uvicorn

from mcp.client.auth import OAuthClientProvider
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)


BASE: Final = "http://127.0.0.1:8000"
MCP_URL: Final = f"{BASE}/mcp"
REDIRECT_URI: Final = "http://127.0.0.1:9/callback"
STARTUP_TIMEOUT: Final = 20.0  # seconds; a hang guard, never a timing


def create_mcp_server() -> MCPServer:
    """The protected MCP server: a tool, ``echo``; a prompt, ``broken``."""
    mcp = MCPServer("oauth-demo")

    # Async tools: a sync one runs in a worker thread, whose real time
    # MockClock cannot see (it would jump ahead meanwhile).
    @mcp.tool()
    async def echo(text: str) -> str:
        """Return *text*."""
        return text

    @mcp.prompt()
    async def broken() -> str:
        """Crash: the server answers JSON-RPC -32603 with HTTP 200."""
        raise RuntimeError("boom")

    return mcp


@attrs.define(eq=False)
class AuthServer:
    """
    The MCP server's gatekeeper and its authorization server, scripted.

    Attributes:
        token_status: What the token endpoint answers code exchanges with
            (200 issues a token; 400 is ``invalid_client``; 503 is down).
        refresh_status: The same for refresh requests (400 is
            ``invalid_grant``).
        expires_in: The ``expires_in`` of tokens issued for a code (0:
            expired at once, by the client's wall clock, so that it
            refreshes before its next request); refreshed tokens last an
            hour.
        required_scope: A scope every MCP request needs (403
            ``insufficient_scope`` without it), or ``None``.
        grant_scope: The scopes issued tokens carry.
        internal_error: Statuses the MCP endpoint answers (after the
            bearer check) instead of serving, one per request.
        token_url: Where the metadata says the token endpoint is (put it
            on a closed port for an authorization server that is down).
        counts: Requests seen, by kind.
    """

    base: str = BASE
    """Where it is served: scheme, host and port."""
    mcp: MCPServer = attrs.field(factory=create_mcp_server)
    token_status: int = 200
    refresh_status: int = 200
    expires_in: int = 3600
    required_scope: str | None = None
    grant_scope: str = "mcp"
    internal_error: list[int] = attrs.field(factory=list)
    token_url: str = attrs.field(
        default=attrs.Factory(
            lambda self: f"{self.base}/token", takes_self=True
        )
    )
    tokens: dict[str, str] = attrs.field(factory=dict)
    """Valid access tokens and their scopes."""
    refresh_tokens: set[str] = attrs.field(factory=set)
    counts: Counter[str] = attrs.field(factory=Counter)
    _ids: Any = attrs.field(factory=lambda: itertools.count(1))
    _app: Any = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._app = self.mcp.streamable_http_app(
            json_response=True, stateless_http=True
        )

    def running(self) -> AbstractAsyncContextManager[None]:
        """Run the MCP server's session manager (the app's lifespan)."""
        return self.mcp.session_manager.run()

    def issue(self, expires_in: int = 3600) -> OAuthToken:
        """A new valid access token (and refresh token)."""
        n = next(self._ids)
        token = OAuthToken(
            access_token=f"at-{n}",
            expires_in=expires_in,
            scope=self.grant_scope,
            refresh_token=f"rt-{n}",
        )
        self.tokens[token.access_token] = token.scope or ""
        self.refresh_tokens.add(f"rt-{n}")
        return token

    def revoke_all(self) -> None:
        """Revoke every access and refresh token."""
        self.tokens.clear()
        self.refresh_tokens.clear()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/mcp":
            await self._mcp(scope, receive, send)
            return
        if path.startswith("/.well-known/oauth-protected-resource"):
            self.counts["prm"] += 1
            status, body = (
                200,
                {
                    "resource": f"{self.base}/mcp",
                    "authorization_servers": [self.base],
                },
            )
        elif path == "/.well-known/oauth-authorization-server":
            self.counts["asm"] += 1
            status, body = (
                200,
                {
                    "issuer": self.base,
                    "authorization_endpoint": f"{self.base}/authorize",
                    "token_endpoint": self.token_url,
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                },
            )
        elif path == "/token":
            status, body = self._token(await _body(receive))
        else:
            status, body = 404, {"error": "not_found"}
        await _respond(send, status, body)

    def _token(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        form = dict(parse_qsl(raw.decode()))
        grant = form.get("grant_type")
        self.counts[f"token:{grant}"] += 1
        if grant == "refresh_token":
            if self.refresh_status != 200:
                return self.refresh_status, {"error": "invalid_grant"}
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant"}
            return 200, self.issue().model_dump(exclude_none=True)
        if self.token_status != 200:
            error = "invalid_client" if self.token_status < 500 else "down"
            return self.token_status, {"error": error}
        token = self.issue(self.expires_in)
        return 200, token.model_dump(exclude_none=True)

    async def _mcp(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"").decode()
        token = bearer.removeprefix("Bearer ")
        prm = f"{self.base}/.well-known/oauth-protected-resource/mcp"
        challenge = f'Bearer resource_metadata="{prm}"'
        if scope["method"] == "POST":
            self.counts["mcp"] += 1
        if not bearer.startswith("Bearer ") or token not in self.tokens:
            self.counts["401"] += 1
            await _respond(
                send, 401, {"error": "invalid_token"}, challenge=challenge
            )
            return
        needed = self.required_scope
        if needed is not None and needed not in self.tokens[token].split():
            self.counts["403"] += 1
            await _respond(
                send,
                403,
                {"error": "insufficient_scope"},
                challenge=(
                    f'Bearer error="insufficient_scope", '
                    f'scope="{self.grant_scope} {needed}", '
                    f'resource_metadata="{prm}"'
                ),
            )
            return
        if self.internal_error:
            status = self.internal_error.pop(0)
            await _respond(send, status, {"error": "unavailable"})
            return
        self.counts["served"] += 1
        await self._app(scope, receive, send)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Any, status: int, body: dict[str, Any], *, challenge: str = ""
) -> None:
    headers = [(b"content-type", b"application/json")]
    if challenge:
        headers.append((b"www-authenticate", challenge.encode()))
    await send(
        {"type": "http.response.start", "status": status, "headers": headers}
    )
    await send(
        {"type": "http.response.body", "body": json.dumps(body).encode()}
    )


@attrs.define(eq=False)
class Person:
    """
    The user who logs in, in a browser: takes ``login_seconds``.

    Attributes:
        logins: Authorization URLs the person was sent to, in order.
    """

    login_seconds: float = 0.0
    logins: list[str] = attrs.field(factory=list)

    async def redirect(self, url: str) -> None:
        """The SDK's ``redirect_handler``: open the browser."""
        self.logins.append(url)

    async def callback(self) -> AuthorizationCodeResult:
        """The SDK's ``callback_handler``: wait for the redirect back."""
        await anyio.sleep(self.login_seconds)
        query = parse_qs(urlparse(self.logins[-1]).query)
        return AuthorizationCodeResult(
            code=f"code-{len(self.logins)}", state=query["state"][0]
        )


@attrs.define(eq=False)
class MemoryStorage:
    """The SDK's ``TokenStorage``, in memory, with a pre-registered client."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = attrs.field(
        factory=lambda: OAuthClientInformationFull(
            client_id="test-client",
            redirect_uris=[REDIRECT_URI],
            token_endpoint_auth_method="none",  # noqa: S106 (a method)
        )
    )

    async def get_tokens(self) -> OAuthToken | None:
        """Stored tokens."""
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        """Store tokens."""
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        """Stored client registration."""
        return self.client_info

    async def set_client_info(self, info: OAuthClientInformationFull) -> None:
        """Store the client registration."""
        self.client_info = info


def oauth_provider(
    person: Person,
    storage: MemoryStorage | None = None,
    url: str = MCP_URL,
) -> OAuthClientProvider:
    """The SDK's ``OAuthClientProvider`` for *url*."""
    return OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",  # noqa: S106 (a method)
        ),
        storage=storage or MemoryStorage(),
        redirect_handler=person.redirect,
        callback_handler=person.callback,
    )


@attrs.define(eq=False)
class StaticBearer(httpx2.Auth):
    """A fixed bearer token, as many deployments use."""

    token: str

    def auth_flow(self, request: httpx2.Request) -> Any:
        """Set the header."""
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def in_process_client(server: AuthServer) -> httpx2.AsyncClient:
    """
    An httpx2 client that reaches *server* without sockets.

    Only :data:`BASE` is *server*; any other origin is reached over the
    network (a closed port on 127.0.0.1 refuses the connection).
    """
    return httpx2.AsyncClient(
        mounts={BASE: httpx2.ASGITransport(server)},
    )


@asynccontextmanager
async def on_loopback() -> AsyncIterator[AuthServer]:
    """
    An :class:`AuthServer` served by uvicorn on an ephemeral 127.0.0.1 port.

    uvicorn runs asyncio, so it gets a thread (and an event loop) of its
    own; the test talks to it over real sockets.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    served: list[tuple[AuthServer, uvicorn.Server]] = []
    started = threading.Event()

    async def main() -> None:
        # Built on uvicorn's loop: the SDK's session manager takes its
        # anyio primitives from the event loop it is created in.
        server = AuthServer(base=f"http://127.0.0.1:{port}")
        web = uvicorn.Server(
            uvicorn.Config(server, lifespan="off", log_level="warning")
        )
        served.append((server, web))
        async with server.running():
            task = asyncio.create_task(web.serve(sockets=[sock]))
            while not web.started and not task.done():
                await asyncio.sleep(0.01)
            started.set()
            await task

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        await anyio.to_thread.run_sync(started.wait, STARTUP_TIMEOUT)
        server, web = served[0]
        assert web.started, "uvicorn did not start"
        yield server
    finally:
        for _, web in served:
            web.should_exit = True
        await anyio.to_thread.run_sync(thread.join, STARTUP_TIMEOUT)
        sock.close()
