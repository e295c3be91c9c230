"""
The session supervisor against in-process servers.

In-process servers run on the test's own event loop, so these tests can
use trio's ``autojump_clock`` and assert exact virtual times for connect
timeouts and reconnect backoff.
"""

from __future__ import annotations

import contextlib
import logging

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
    PromptReference,
)

from resilient_mcp import ConfigurationError, PermanentError
from resilient_mcp._mcp import (
    NotSentError,
    RequestTimeoutError,
    ServerError,
    SessionClosedError,
    SessionConfig,
    SessionEvent,
    SessionEventKind,
    SessionLostError,
    SessionState,
    SessionSupervisor,
    open_session_supervisor,
    watch_transport,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    create_flaky_server,
)


if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mcp.client import Client

    from resilient_mcp.testing.flaky_server import FlakyState


EXACT = SessionConfig(
    reconnect_delay=1.0,
    reconnect_max_delay=8.0,
    reconnect_jitter=False,
    connect_timeout=5.0,
)
"""Backoff without jitter: 1, 2, 4, 8, 8, ... virtual seconds."""


class Boom(Exception):
    """A connection failure made up by a test."""


def failing_factory(server: MCPServer, failures: int) -> Any:
    """A server factory whose first *failures* calls raise :class:`Boom`."""
    calls = 0

    def factory() -> MCPServer:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise Boom(f"attempt {calls} refused")
        return server

    return factory


async def echo(supervisor: SessionSupervisor, text: str = "hi") -> str:
    """Call the echo tool and return its text."""
    result = await supervisor.call(
        lambda client: client.call_tool("echo", {"text": text})
    )
    assert not result.is_error
    assert result.structured_content is not None
    value: str = result.structured_content["result"]
    return value


async def test_call_through_live_session(inproc_server, flaky_state):
    """
    The supervisor connects at entry and runs calls on the live client.
    """
    async with open_session_supervisor(inproc_server) as supervisor:
        text = await echo(supervisor)
        metrics = supervisor.metrics()

    assert "hi" == text
    assert 1 == flaky_state.executions["echo"]
    assert SessionState.CONNECTED == metrics.state
    assert "2026-07-28" == metrics.protocol_version
    assert (1, 1, 0, 0) == (
        metrics.generation,
        metrics.connects,
        metrics.connect_failures,
        metrics.sessions_lost,
    )
    assert SessionState.CLOSED == supervisor.metrics().state


async def test_tool_error_is_a_result(inproc_server):
    """
    A tool's ``is_error`` result is returned, not raised.
    """
    async with open_session_supervisor(inproc_server) as supervisor:
        result = await supervisor.call(
            lambda c: c.call_tool("tool_error", {"message": "nope"})
        )

    assert result.is_error
    assert "nope" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_error_map_in_process(inproc_server, flaky_state, mode):
    """
    JSON-RPC errors become Permanent/Server/RequestTimeout errors.
    """
    config = SessionConfig(client_options={"mode": mode})
    flaky_state.configure(fail_next=1)
    async with open_session_supervisor(inproc_server, config) as supervisor:
        with pytest.raises(PermanentError) as rejected:
            await supervisor.call(lambda c: c.call_tool("reject", {}))
        with pytest.raises(PermanentError) as unknown:
            await supervisor.call(lambda c: c.read_resource("flaky://nope"))
        with pytest.raises(ServerError) as flaky:
            await supervisor.call(lambda c: c.call_tool("flaky", {}))
        with pytest.raises(ServerError) as crashed:
            await supervisor.call(lambda c: c.get_prompt("nope"))
        with pytest.raises(RequestTimeoutError) as slow:
            await supervisor.call(
                lambda c: c.call_tool(
                    "slow", {"seconds": 10}, read_timeout_seconds=0.05
                )
            )
        still_usable = await echo(supervisor, "after")

    assert INVALID_PARAMS == rejected.value.code
    assert {"tool": "reject"} == rejected.value.__cause__.data  # type: ignore[union-attr]
    assert INVALID_PARAMS == unknown.value.code
    assert INTERNAL_ERROR == flaky.value.code
    assert None is flaky.value.status_code
    # A plain exception in a non-tool handler: -32603 at 2026-07-28, but
    # code 0 on the legacy JSON-RPC path (JSONRPCDispatcher's v1 compat).
    assert (INTERNAL_ERROR if mode == "auto" else 0) == crashed.value.code
    assert isinstance(slow.value.__cause__, MCPError)
    assert REQUEST_TIMEOUT == slow.value.__cause__.code
    assert "after" == still_usable


async def test_method_not_found_is_permanent():
    """
    A server without a completion handler answers ``-32601``: permanent.
    """
    async with open_session_supervisor(MCPServer("plain")) as supervisor:
        with pytest.raises(PermanentError) as info:
            await supervisor.call(
                lambda c: c.complete(
                    PromptReference(name="x"), {"name": "a", "value": ""}
                )
            )

    assert METHOD_NOT_FOUND == info.value.code
    assert isinstance(info.value.__cause__, MCPError)


async def test_lazy_connect(inproc_server):
    """
    Without ``connect``, nothing connects until a caller needs a session.
    """
    async with open_session_supervisor(
        inproc_server, connect=False
    ) as supervisor:
        await trio.testing.wait_all_tasks_blocked()
        before = supervisor.metrics()
        await echo(supervisor)
        after = supervisor.metrics()

    assert (SessionState.IDLE, 0) == (before.state, before.connect_attempts)
    assert (SessionState.CONNECTED, 1) == (after.state, after.connects)


async def test_factories_are_called_per_attempt(inproc_server):
    """
    Sync and async server factories are called once per connection attempt.
    """
    calls = []

    def sync_factory() -> MCPServer:
        calls.append("sync")
        return inproc_server

    async def async_factory() -> MCPServer:
        await trio.lowlevel.checkpoint()
        calls.append("async")
        return inproc_server

    for factory in (sync_factory, async_factory):
        async with open_session_supervisor(factory) as supervisor:
            await supervisor.reconnect()
            generation = (await supervisor.acquire()).generation

        assert 2 == generation

    assert ["sync", "sync", "async", "async"] == calls


async def test_connect_failure_then_backoff(inproc_server, autojump_clock):
    """
    A failed attempt raises NotSentError, then calls fail fast until due.

    Once the backoff has passed, the next attempt succeeds.
    """
    factory = failing_factory(inproc_server, failures=1)
    async with open_session_supervisor(
        factory, EXACT, connect=False
    ) as supervisor:
        with pytest.raises(NotSentError) as failed:
            await echo(supervisor)
        await trio.sleep(0.25)
        with pytest.raises(NotSentError) as backoff:
            await echo(supervisor)
        reconnect_in = supervisor.metrics().reconnect_in
        await trio.sleep(0.75)
        text = await echo(supervisor)

    assert "connect-failed" == failed.value.reason
    assert isinstance(failed.value.__cause__, Boom)
    assert 1.0 == failed.value.retry_after
    assert "backoff" == backoff.value.reason
    assert 0.75 == backoff.value.retry_after
    assert isinstance(backoff.value.__cause__, Boom)
    assert 0.75 == reconnect_in
    assert "hi" == text
    assert 1.0 == trio.current_time()


async def test_connect_waits_out_the_backoff(inproc_server, autojump_clock):
    """
    ``connect()`` waits for the backoff instead of failing fast.
    """
    factory = failing_factory(inproc_server, failures=2)
    async with open_session_supervisor(
        factory, EXACT, connect=False
    ) as supervisor:
        with pytest.raises(NotSentError):
            await supervisor.connect()
        with pytest.raises(NotSentError):
            await supervisor.connect()
        session = await supervisor.connect()
        metrics = supervisor.metrics()

    assert 3 == session.generation
    assert (3, 1, 2) == (
        metrics.connect_attempts,
        metrics.connects,
        metrics.connect_failures,
    )
    assert 3.0 == trio.current_time()  # waited 1 s, then 2 s


async def test_connect_timeout(inproc_server, autojump_clock):
    """
    An attempt that takes longer than connect_timeout fails with a timeout.
    """

    async def never(client: Client) -> None:
        await trio.sleep_forever()

    config = SessionConfig(connect_timeout=3.0, on_connect=never)
    with pytest.raises(NotSentError) as info:
        async with open_session_supervisor(inproc_server, config):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, TimeoutError)
    assert "connect-failed" == info.value.reason
    assert 3.0 == trio.current_time()


async def test_on_connect_runs_before_publish(inproc_server, flaky_state):
    """
    ``on_connect`` gets each new client before any caller does.
    """
    seen: list[int] = []

    async def warm(client: Client) -> None:
        await client.list_tools()
        seen.append(flaky_state.requests["tools/list"])

    config = SessionConfig(on_connect=warm)
    async with open_session_supervisor(inproc_server, config) as supervisor:
        await supervisor.reconnect()

    assert [1, 2] == seen


async def test_close_fails_calls_in_flight(inproc_server):
    """
    Closing fails calls in flight (lost) and later calls (closed).
    """
    errors: list[BaseException] = []

    async def hang(supervisor: SessionSupervisor) -> None:
        try:
            await supervisor.call(lambda c: c.call_tool("hang", {}))
        except SessionLostError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with (
            open_session_supervisor(inproc_server) as supervisor,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(hang, supervisor)
            await trio.testing.wait_all_tasks_blocked()
            await supervisor.aclose()
        with pytest.raises(SessionClosedError):
            await echo(supervisor)

    [lost] = errors
    assert isinstance(lost.__cause__, SessionClosedError)


async def test_request_reconnect_replaces_the_session(inproc_server):
    """
    A requested reconnect ends calls on the old session and opens a new one.
    """
    errors: list[BaseException] = []

    async def hang(supervisor: SessionSupervisor) -> None:
        try:
            await supervisor.call(lambda c: c.call_tool("hang", {}))
        except SessionLostError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with open_session_supervisor(inproc_server) as supervisor:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hang, supervisor)
                await trio.testing.wait_all_tasks_blocked()
                session = await supervisor.reconnect()
            text = await echo(supervisor)
            metrics = supervisor.metrics()

    assert 1 == len(errors)
    assert 2 == session.generation
    assert "hi" == text
    assert (2, 0) == (metrics.connects, metrics.sessions_lost)


async def test_young_sessions_back_off(inproc_server, autojump_clock):
    """
    A session that dies young backs off; an old one is replaced at once.

    "Old" means it lived ``reconnect_max_delay`` seconds.
    """
    async with open_session_supervisor(inproc_server, EXACT) as supervisor:
        supervisor.report_lost(1)
        with pytest.raises(NotSentError) as backoff:
            await echo(supervisor)
        second = await supervisor.connect()
        young_at = trio.current_time()
        await trio.sleep(8.0)
        supervisor.report_lost(second.generation, RuntimeError("gone"))
        third = await supervisor.acquire()
        metrics = supervisor.metrics()

    assert 1.0 == backoff.value.retry_after
    assert 1.0 == young_at
    assert 3 == third.generation
    assert 9.0 == trio.current_time()
    assert 0 == metrics.consecutive_failures
    assert isinstance(metrics.last_error, RuntimeError)


async def test_stale_reports_are_ignored(inproc_server):
    """
    Reporting a session that is no longer live changes nothing.
    """
    async with open_session_supervisor(inproc_server) as supervisor:
        await supervisor.reconnect()
        supervisor.report_lost(1)
        session = supervisor.acquire_nowait()

    assert 2 == session.generation


async def test_eager_reconnect(inproc_server, autojump_clock):
    """
    In eager mode the supervisor retries on its own, at the backoff times.
    """
    events: list[SessionEvent] = []
    config = SessionConfig(
        reconnect_delay=1.0, reconnect_jitter=False, eager_reconnect=True
    )
    factory = failing_factory(inproc_server, failures=2)
    async with open_session_supervisor(
        factory, config, connect=False, listeners=[events.append]
    ) as supervisor:
        await trio.sleep(10)
        metrics = supervisor.metrics()

    assert [
        (SessionEventKind.CONNECT_FAILED, 1, 0.0),
        (SessionEventKind.CONNECT_FAILED, 2, 1.0),
        (SessionEventKind.CONNECTED, 3, 3.0),
        (SessionEventKind.CLOSED, 3, 10.0),
    ] == [(e.kind, e.generation, e.time) for e in events]
    assert isinstance(events[0].error, Boom)
    assert SessionState.CONNECTED == metrics.state


async def test_listener_errors_are_contained(inproc_server, caplog):
    """
    A raising listener is logged and does not disturb the supervisor.
    """

    def bad(event: SessionEvent) -> None:
        raise ValueError(event.kind)

    with caplog.at_level(logging.ERROR, logger="resilient_mcp"):
        async with open_session_supervisor(
            inproc_server, listeners=[bad]
        ) as supervisor:
            text = await echo(supervisor)

    assert "hi" == text
    assert "session listener" in caplog.text


async def test_body_errors_leave_unwrapped(inproc_server):
    """
    An error in the body leaves ``async with`` as itself, not as a group.
    """
    with pytest.raises(KeyError):
        async with open_session_supervisor(inproc_server):
            raise KeyError("body")


async def test_connect_failure_at_entry_is_unwrapped(inproc_server):
    """
    A failed first connection raises NotSentError from ``async with``.
    """
    factory = failing_factory(inproc_server, failures=1)
    with pytest.raises(NotSentError) as info:
        async with open_session_supervisor(factory):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, Boom)


async def test_lifecycle_errors(inproc_server):
    """
    A supervisor must run to be used, and runs only once.
    """
    supervisor = SessionSupervisor(inproc_server)
    with pytest.raises(SessionClosedError, match="not running"):
        await supervisor.acquire()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.aclose()
    with pytest.raises(RuntimeError, match="only once"):
        await supervisor.run()
    with pytest.raises(SessionClosedError, match="closed"):
        supervisor.acquire_nowait()


async def test_acquire_nowait_asks_for_a_session(inproc_server):
    """
    ``acquire_nowait`` fails at once without a session but requests one.
    """
    async with open_session_supervisor(
        inproc_server, connect=False
    ) as supervisor:
        with pytest.raises(NotSentError) as info:
            supervisor.acquire_nowait()
        with trio.fail_after(5):
            while supervisor.metrics().state is not SessionState.CONNECTED:
                await trio.sleep(0.001)
        session = supervisor.acquire_nowait()

    assert "no-session" == info.value.reason
    assert 1 == session.generation


async def test_acquire_is_a_checkpoint(inproc_server):
    """
    ``acquire`` checkpoints even when a session is ready.
    """
    async with open_session_supervisor(inproc_server) as supervisor:
        with trio.testing.assert_checkpoints():
            await supervisor.acquire()


def test_config_validation():
    """
    Bad SessionConfig values fail at construction with ConfigurationError.
    """
    with pytest.raises(ConfigurationError, match="reconnect_max_delay"):
        SessionConfig(reconnect_delay=5, reconnect_max_delay=1)
    with pytest.raises(ConfigurationError, match="reconnect_backoff_factor"):
        SessionConfig(reconnect_backoff_factor=0.5)
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        SessionConfig(connect_timeout=0)
    with pytest.raises(ConfigurationError, match="server"):
        SessionConfig(client_options={"server": "x"})


def test_repr_shows_live_state():
    """
    The repr names the supervisor and its state.
    """
    supervisor = SessionSupervisor(
        create_flaky_server(FlakyServerConfig(allow_crash=False)), name="s1"
    )

    assert "<SessionSupervisor 's1' closed, session: none" in repr(supervisor)


def test_works_on_asyncio(flaky_state: FlakyState):
    """
    The supervisor runs on asyncio too, closing included.
    """
    server = create_flaky_server(state=flaky_state)

    async def main() -> tuple[str, BaseException | None]:
        lost: BaseException | None = None

        async def hang(supervisor: SessionSupervisor) -> None:
            nonlocal lost
            try:
                await supervisor.call(lambda c: c.call_tool("hang", {}))
            except SessionLostError as exc:
                lost = exc

        with anyio.fail_after(10):
            async with (
                open_session_supervisor(server) as supervisor,
                anyio.create_task_group() as tg,
            ):
                text = await echo(supervisor, "asyncio")
                tg.start_soon(hang, supervisor)
                await anyio.wait_all_tasks_blocked()
                supervisor.close()
        return text, lost

    text, lost = anyio.run(main, backend="asyncio")

    assert "asyncio" == text
    assert isinstance(lost, SessionLostError)
    assert 1 == flaky_state.executions["hang"]


@pytest.mark.parametrize(
    ("mode", "supported"), [("legacy", True), ("auto", False)]
)
async def test_ping_where_supported(inproc_server, mode, supported):
    """
    Ping works at 2025-11-25 and is a permanent -32601 at 2026-07-28.

    ``ClientSession.send_ping`` is used: ``Client.send_ping`` is marked
    deprecated and warns (an error under ``filterwarnings = error``).
    """
    config = SessionConfig(client_options={"mode": mode})
    async with open_session_supervisor(inproc_server, config) as supervisor:
        if supported:
            await supervisor.call(lambda c: c.session.send_ping())
        else:
            with pytest.raises(PermanentError) as info:
                await supervisor.call(lambda c: c.session.send_ping())
            assert METHOD_NOT_FOUND == info.value.code


async def test_watch_transport_reports_the_end():
    """
    The watched read stream reports end of stream and keeps the context.
    """
    closed: list[str] = []

    @contextlib.asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        send, receive = anyio.create_memory_object_stream[Any](1)
        async with send, receive:
            yield receive, send

    async with watch_transport(transport(), lambda: closed.append("eof")) as (
        read,
        write,
    ):
        await write.send("message")
        await write.aclose()
        items = [item async for item in read]
        context = read.last_context  # type: ignore[attr-defined]

    assert ["message"] == items
    assert ["eof"] == closed
    assert None is context
