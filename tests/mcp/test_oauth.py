"""
OAuth-protected MCP servers: a failed login is not an outage (issue 15).

The server is the SDK's ``MCPServer`` behind a bearer check, next to a
small authorization server of ours (``_oauth_server``), reached in process
through ``httpx2.ASGITransport`` so that virtual time drives every
deadline, on trio and on asyncio.  The client logs in with the SDK's own
``OAuthClientProvider`` (or a static bearer token), passed as
``SessionConfig.auth``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest

from mcp.client.auth import OAuthTokenError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from _oauth_server import (
    MCP_URL,
    AuthServer,
    MemoryStorage,
    Person,
    StaticBearer,
    in_process_client,
    oauth_provider,
    on_loopback,
)
from resilient_mcp import (
    AuthenticationError,
    CircuitBreakerConfig,
    CircuitState,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp._mcp import NotSentError, ServerError, SessionConfig
from resilient_mcp._mcp._auth import OffClock, ResilientAuth, auth_error
from resilient_mcp._mcp._http import (
    AUTH_REQUEST,
    capture_http_errors,
    record_http_error,
)


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


HANG_GUARD = 30  # seconds; never a timing assertion


def make_client(
    server: AuthServer, auth: httpx2.Auth, **session: Any
) -> ResilientMCPClient:
    """A client of *server* authenticated by *auth*; fast retries."""
    config = ResilientClientConfig(
        retry=RetryConfig(max_attempts=3, initial_delay=0.1, jitter=False),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=3),
        session=SessionConfig(
            auth=auth,
            http_client_factory=lambda: in_process_client(server),
            reconnect_delay=0.1,
            reconnect_max_delay=1.0,
            **session,
        ),
    )
    return ResilientMCPClient(MCP_URL, config=config)


def serve(
    scenario: Callable[[AuthServer], Awaitable[None]], server: AuthServer
) -> Callable[[], Awaitable[None]]:
    """*scenario* with *server* running."""

    async def main() -> None:
        async with server.running():
            await scenario(server)

    return main


async def echo(client: ResilientMCPClient, text: str = "hi") -> str:
    """Call the echo tool; its text."""
    result = await client.call_tool("echo", {"text": text})
    assert not result.is_error, result
    return str(result.content[0].text)  # type: ignore[union-attr]


def test_login_once_then_calls(run: Callable[..., Any]) -> None:
    """One login at connect serves every later call and reconnect."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            assert "a" == await echo(client, "a")
            await client.supervisor.reconnect()
            assert "b" == await echo(client, "b")

            assert 1 == len(person.logins)
            assert 2 == client.metrics().session.connects

    run(serve(scenario, AuthServer()))


def test_expiry_refreshes_without_login(run: Callable[..., Any]) -> None:
    """An expired token is refreshed; the person logs in once only."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            for _ in range(3):
                await echo(client)

            assert 1 == len(person.logins)
            assert 1 == server.counts["token:refresh_token"]
            assert 0 == client.metrics().retried_requests

    run(serve(scenario, AuthServer(expires_in=0)))


def test_refused_refresh_logs_in_again(run: Callable[..., Any]) -> None:
    """A refused refresh leads to a new login, and the call succeeds."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.expires_in = 0  # the next login's token expires at once
            server.revoke_all()
            await echo(client)
            server.refresh_status = 400
            logins = len(person.logins)

            assert "x" == await echo(client, "x")
            assert logins + 1 == len(person.logins)
            assert 1 == server.counts["token:refresh_token"]
            assert 0 == client.metrics().circuit_breaker.total_failures

    run(serve(scenario, AuthServer()))


def test_revoked_mid_session_logs_in_again(run: Callable[..., Any]) -> None:
    """A token revoked mid-session: one new login, same session, no error."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            await echo(client)
            server.revoke_all()

            assert "again" == await echo(client, "again")
            metrics = client.metrics()
            assert 2 == len(person.logins)
            assert 1 == metrics.session.connects
            assert 0 == metrics.retried_requests
            assert 0 == metrics.circuit_breaker.total_failures

    run(serve(scenario, AuthServer()))


def test_revoked_static_token_is_not_an_outage(
    run: Callable[..., Any],
) -> None:
    """
    A revoked static token fails each call once: no retry, no breaker.
    """

    async def scenario(server: AuthServer) -> None:
        server.tokens["static"] = "mcp"
        async with make_client(server, StaticBearer("static")) as client:
            await echo(client)
            server.revoke_all()
            posts = server.counts["mcp"]
            for _ in range(5):
                with pytest.raises(AuthenticationError) as caught:
                    await echo(client)

                assert 401 == caught.value.status_code
                assert "http-401" == caught.value.code
            metrics = client.metrics()
            assert posts + 5 == server.counts["mcp"]
            assert 0 == metrics.retried_requests
            assert 0 == metrics.circuit_breaker.total_failures
            assert CircuitState.CLOSED == metrics.circuit_breaker.state

    run(serve(scenario, AuthServer()))


def test_401_on_initialize_after_reconnect(run: Callable[..., Any]) -> None:
    """
    A 401 while reconnecting fails the call with PermanentError at once.

    Each later call tries one connection, no more: no reconnect loop, no
    retry, no breaker failure, no CircuitBreakerError.
    """

    async def scenario(server: AuthServer) -> None:
        server.tokens["static"] = "mcp"
        async with make_client(
            server, StaticBearer("static"), eager_reconnect=True
        ) as client:
            await echo(client)
            server.revoke_all()
            client.supervisor.request_reconnect()  # an eager attempt
            await anyio.sleep(60)  # and no reconnect loop after it
            assert 2 == client.metrics().session.connect_attempts
            for _ in range(5):
                with pytest.raises(AuthenticationError) as caught:
                    await echo(client)

                assert 401 == caught.value.status_code
            metrics = client.metrics()
            assert 2 + 5 == metrics.session.connect_attempts
            assert 0 == metrics.retried_requests
            assert 0 == metrics.circuit_breaker.total_failures
            server.tokens["static"] = "mcp"  # the user fixes it

            assert "back" == await echo(client, "back")

    run(serve(scenario, AuthServer()))


def test_token_endpoint_rejecting_is_permanent(
    run: Callable[..., Any],
) -> None:
    """A token endpoint answering 400 invalid_client: one login per call."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.revoke_all()
            server.token_status = 400
            logins = len(person.logins)
            for _ in range(5):
                with pytest.raises(AuthenticationError) as caught:
                    await echo(client)

                assert "invalid_client" == caught.value.oauth_error
                assert isinstance(caught.value.__cause__, OAuthTokenError)
            metrics = client.metrics()
            assert logins + 5 == len(person.logins)
            assert 0 == metrics.retried_requests
            assert 0 == metrics.circuit_breaker.total_failures
            assert 1 == metrics.session.connects  # the session survived

    run(serve(scenario, AuthServer()))


def test_token_endpoint_down_is_temporary(run: Callable[..., Any]) -> None:
    """
    A token endpoint answering 503 is a temporary failure, retried.

    The breaker counts it, and recovers once the endpoint is back.
    """
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.revoke_all()
            server.token_status = 503
            with pytest.raises(NotSentError) as caught:
                await echo(client)

            assert "auth-unavailable" == caught.value.reason
            metrics = client.metrics()
            assert 1 == metrics.retried_requests
            assert 1 + 3 == len(person.logins)  # one per attempt
            assert 3 == metrics.circuit_breaker.total_failures
            server.token_status = 200
            await anyio.sleep(60)  # the breaker's recovery_timeout

            assert "ok" == await echo(client, "ok")

    run(serve(scenario, AuthServer()))


def test_token_endpoint_refusing_connections_is_temporary(
    run: Callable[..., Any], free_port: int
) -> None:
    """
    A token endpoint that refuses connections is a temporary failure.

    At connect and mid-call: ``NotSentError(reason="auth-unavailable")``,
    not an ``AuthenticationError``.
    """
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.revoke_all()
            server.token_url = f"http://127.0.0.1:{free_port}/token"
            with pytest.raises(NotSentError) as caught:
                await echo(client)

            assert "auth-unavailable" == caught.value.reason
        with pytest.raises(NotSentError) as caught:
            async with make_client(server, oauth_provider(person)):
                pass

        assert "auth-unavailable" == caught.value.reason
        assert isinstance(caught.value.__cause__, httpx2.ConnectError)

    run(serve(scenario, AuthServer()))


def test_connect_with_token_endpoint_rejecting(
    run: Callable[..., Any],
) -> None:
    """Entering the client fails with the OAuth error, after one login."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        with pytest.raises(AuthenticationError) as caught:
            async with make_client(server, oauth_provider(person)):
                pass

        assert "invalid_client" == caught.value.oauth_error
        assert isinstance(caught.value.__cause__, OAuthTokenError)
        assert 1 == len(person.logins)

    run(serve(scenario, AuthServer(token_status=400)))


def test_step_up_is_bounded(run: Callable[..., Any]) -> None:
    """
    A 403 that no scope cures: a bounded number of logins per call.

    Connecting logs in for discover (401) and steps up for initialize
    (403); a call on a live session steps up once; a call that has to
    reconnect first, twice.  Never more than 3, never retried or counted.
    """
    person = Person()

    async def logins_of(call: Callable[[], Awaitable[object]]) -> int:
        before = len(person.logins)
        with pytest.raises(AuthenticationError) as caught:
            await call()

        assert 403 == caught.value.status_code
        return len(person.logins) - before

    async def scenario(server: AuthServer) -> None:
        server.required_scope = "admin"  # never granted

        async def enter() -> None:
            async with make_client(server, oauth_provider(person)):
                pass

        assert 2 == await logins_of(enter)
        server.required_scope = None
        async with make_client(server, oauth_provider(person)) as client:
            server.required_scope = "admin"
            live = [await logins_of(lambda: echo(client)) for _ in range(3)]
            client.supervisor.request_reconnect()
            again = [await logins_of(lambda: echo(client)) for _ in range(3)]

            assert [1, 1, 1] == live
            assert [2, 2, 2] == again
            metrics = client.metrics()
            assert 0 == metrics.retried_requests
            assert 0 == metrics.circuit_breaker.total_failures

    run(serve(scenario, AuthServer()))


async def test_authorizations_per_call_are_capped() -> None:
    """
    Within one call, the provider authorizes at most 3 times.

    Five requests in one call, each refused for want of a scope that is
    never granted: three logins, then the refusals stand as they are.
    """
    server = AuthServer(required_scope="admin")
    person = Person()
    auth = ResilientAuth(oauth_provider(person), login_timeout=60.0)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(server), auth=auth
    ) as http:
        with capture_http_errors() as box:
            statuses = [
                (await http.post(MCP_URL, json={})).status_code
                for _ in range(5)
            ]

    assert [403] * 5 == statuses
    assert 3 == box.authorizations == len(person.logins)
    assert box.auth_failure is not None
    assert 403 == box.auth_failure.status_code


def test_slow_login_is_not_a_timeout(run: Callable[..., Any]) -> None:
    """
    A 100 s login, past every timeout we set, is no timeout.

    Neither at connect, nor mid-call, nor in a reconnect a call waits for
    (the SDK stops its own ``read_timeout_seconds`` clock meanwhile).
    """
    person = Person(login_seconds=100.0)

    async def scenario(server: AuthServer) -> None:
        start = anyio.current_time()
        async with make_client(
            server,
            oauth_provider(person),
            connect_timeout=10.0,
            client_options={"read_timeout_seconds": 5.0},  # the SDK's
        ) as client:
            assert 100.0 == anyio.current_time() - start
            server.revoke_all()
            before = anyio.current_time()

            assert "late" == await echo(client, "late")  # bulkhead: 15 s
            assert 100.0 == anyio.current_time() - before
            server.revoke_all()
            client.supervisor.request_reconnect()
            before = anyio.current_time()

            # The call waits for the reconnect, and its login.
            assert "later" == await echo(client, "later")
            assert 100.0 == anyio.current_time() - before
            assert 3 == len(person.logins)
            assert 0 == client.metrics().retried_requests

    run(serve(scenario, AuthServer()))


def test_login_timeout_bounds_a_login(run: Callable[..., Any]) -> None:
    """A login over login_timeout fails the call, at that limit, once."""
    person = Person(login_seconds=1000.0)

    async def scenario(server: AuthServer) -> None:
        start = anyio.current_time()
        with pytest.raises(AuthenticationError) as caught:
            async with make_client(
                server, oauth_provider(person), login_timeout=300.0
            ):
                pass

        assert 300.0 == anyio.current_time() - start
        assert "300s" in str(caught.value)

    run(serve(scenario, AuthServer()))


def test_recovered_401_does_not_colour_a_later_error(
    run: Callable[..., Any],
) -> None:
    """
    After a 401 the provider recovered from, a -32603 is a ServerError.

    The token is revoked, so the request meets a 401, the provider logs in
    and sends it again, and the server's handler crashes (JSON-RPC -32603
    at HTTP 200): retried and counted, not ``PermanentError("http-401")``.
    A real 500 keeps its status.
    """
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.revoke_all()
            with pytest.raises(ServerError) as caught:
                await client.get_prompt("broken")

            assert caught.value.status_code is None
            assert INTERNAL_ERROR == caught.value.code
            metrics = client.metrics()
            assert 1 == metrics.retried_requests
            assert 3 == metrics.circuit_breaker.total_failures
            assert 2 == len(person.logins)

    run(serve(scenario, AuthServer()))


def test_a_500_after_a_recovered_401_keeps_its_status(
    run: Callable[..., Any],
) -> None:
    """A 500 answered after a recovered 401 is a ServerError with 500."""
    person = Person()

    async def scenario(server: AuthServer) -> None:
        async with make_client(server, oauth_provider(person)) as client:
            server.revoke_all()
            server.internal_error = [500, 500, 500]
            with pytest.raises(ServerError) as caught:
                await echo(client)

            assert 500 == caught.value.status_code
            assert 2 == len(person.logins)

    run(serve(scenario, AuthServer()))


async def test_a_success_clears_the_status() -> None:
    """The status hook keeps the last POST's answer: a success clears it."""
    request = httpx2.Request("POST", MCP_URL)
    with capture_http_errors() as box:
        await record_http_error(httpx2.Response(401, request=request))
        assert 401 == box.status_code
        token = httpx2.Request("POST", "http://as/token")
        token.extensions[AUTH_REQUEST] = True
        await record_http_error(httpx2.Response(400, request=token))
        assert 401 == box.status_code
        await record_http_error(httpx2.Response(200, request=request))

    assert box.status_code is None
    error = MCPError(INTERNAL_ERROR, "Internal server error")
    assert auth_error(error, box) is None


async def test_off_clock_stops_and_restarts_deadlines(
    autojump_clock: Any,
) -> None:
    """A paused OffClock keeps each scope's remaining budget."""
    with anyio.CancelScope(deadline=anyio.current_time() + 10) as scope:
        clock = OffClock(scope)
        await anyio.sleep(4)
        clock.pause()
        await anyio.sleep(100)
        late = anyio.CancelScope(deadline=anyio.current_time() + 1)
        clock.add(late)
        clock.resume()

        assert 110.0 == scope.deadline
        assert anyio.current_time() + 1 == late.deadline
        await anyio.sleep(1000)

    assert scope.cancelled_caught
    assert 110.0 == anyio.current_time()


def test_auth_of_the_factory_client_is_bounded_too(
    run: Callable[..., Any],
) -> None:
    """An auth set on the factory's client: a 401 is refused the same way."""

    async def scenario(server: AuthServer) -> None:
        server.tokens["static"] = "mcp"

        def factory() -> httpx2.AsyncClient:
            http = in_process_client(server)
            http.auth = StaticBearer("static")
            return http

        config = ResilientClientConfig(
            session=SessionConfig(http_client_factory=factory)
        )
        async with ResilientMCPClient(MCP_URL, config=config) as client:
            await echo(client)
            server.revoke_all()
            with pytest.raises(AuthenticationError) as caught:
                await echo(client)

            assert 401 == caught.value.status_code
            assert 0 == client.metrics().retried_requests

    run(serve(scenario, AuthServer()))


def test_auth_must_be_an_httpx2_auth() -> None:
    """SessionConfig.auth refuses what is not an httpx2.Auth."""
    from resilient_mcp import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match=r"SessionConfig\.auth"):
        SessionConfig(auth="Bearer x")  # type: ignore[arg-type]


def test_provider_is_shared_across_reconnects(
    run: Callable[..., Any],
) -> None:
    """Tokens stored by the provider survive reconnects: no new login."""
    person = Person()
    storage = MemoryStorage()

    async def scenario(server: AuthServer) -> None:
        provider = oauth_provider(person, storage)
        async with make_client(server, provider) as client:
            for _ in range(3):
                await client.supervisor.reconnect()
                await echo(client)

            assert 1 == len(person.logins)
            assert storage.tokens is not None
            assert 4 == client.metrics().session.connects

    run(serve(scenario, AuthServer()))


def test_permanent_error_is_the_base(run: Callable[..., Any]) -> None:
    """An AuthenticationError is a PermanentError, and pickles."""
    import pickle  # noqa: PLC0415

    error = AuthenticationError(
        "HTTP 401: nope", status_code=401, oauth_error="invalid_grant"
    )
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301

    assert isinstance(copy, PermanentError)
    assert (401, "invalid_grant", "http-401") == (
        copy.status_code,
        copy.oauth_error,
        copy.code,
    )


async def test_over_loopback_http() -> None:
    """
    Over real HTTP on 127.0.0.1: log in, a revoked token, a refused login.

    The same server behind uvicorn on an ephemeral port, in real time
    (nothing here is timed): one login at connect; a revoked token means
    one more login and the call succeeds; a token endpoint answering
    ``invalid_client`` then fails the call with AuthenticationError, not
    retried, not counted.
    """
    person = Person()
    async with on_loopback() as server:
        url = f"{server.base}/mcp"
        config = ResilientClientConfig(
            session=SessionConfig(auth=oauth_provider(person, url=url))
        )
        with anyio.fail_after(HANG_GUARD):
            async with ResilientMCPClient(url, config=config) as client:
                assert "a" == await echo(client, "a")
                server.revoke_all()
                assert "b" == await echo(client, "b")
                server.revoke_all()
                server.token_status = 400
                with pytest.raises(AuthenticationError) as caught:
                    await echo(client)
                metrics = client.metrics()

    assert (401, "invalid_client") == (
        caught.value.status_code,
        caught.value.oauth_error,
    )
    assert 3 == len(person.logins)
    assert 0 == metrics.retried_requests
    assert 0 == metrics.circuit_breaker.total_failures


def test_the_documented_example_builds_its_client() -> None:
    """
    docs/client.md's Authentication example runs, up to connecting.

    Everything but its last line (``anyio.run(main)``, which would dial
    mcp.example.com) runs: the SDK's provider and our configuration
    accept what the example passes them.
    """
    doc = Path(__file__).parents[2] / "docs" / "client.md"
    text = doc.read_text(encoding="utf-8")
    section = text.split("## Authentication", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    body, last = code.rstrip().rsplit("\n", 1)
    namespace: dict[str, Any] = {}

    exec(compile(body, str(doc), "exec"), namespace)  # noqa: S102

    assert "anyio.run(main)" == last
    config = namespace["config"]
    assert namespace["provider"] is config.session.auth
    assert 600.0 == config.session.login_timeout
