"""
The session supervisor against flaky servers over streamable HTTP.

Each server is a uvicorn subprocess on an ephemeral loopback port (see
``conftest.HTTPServerProcess``); killing and restarting it keeps the port.
Every wait is bounded by a generous hang guard, never used for timing.
"""

from __future__ import annotations

import datetime as dt
import json

from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx2
import pytest
import trio

from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST

from resilient_mcp import TemporaryError
from resilient_mcp._mcp import (
    NotSentError,
    ServerError,
    SessionLostError,
    SessionSupervisor,
    open_session_supervisor,
)


if TYPE_CHECKING:
    from pathlib import Path

    from conftest import HTTPServerProcess


HANG_GUARD = 30  # seconds; never a timing assertion

# At 2025-11-25 the SDK's streamable HTTP client leaves httpx2 SSE async
# generators (EventSource.__aiter__, Response.aiter_bytes, ...) unexhausted
# and unclosed; trio reports each one as a ResourceWarning when it is
# garbage collected.  An SDK wart, not ours: tolerate it where the tests
# need a legacy HTTP session.
legacy_sse_leaks = pytest.mark.filterwarnings(
    "ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning"
)


async def call_tool(
    supervisor: SessionSupervisor, name: str, **arguments: Any
) -> Any:
    """Call a tool and return its structured result."""
    result = await supervisor.call(lambda c: c.call_tool(name, arguments))
    assert not result.is_error, result
    assert result.structured_content is not None
    return result.structured_content.get("result", result.structured_content)


async def reconnect_until_up(supervisor: SessionSupervisor) -> int:
    """Wait (backoff included) until a new session is up; its generation."""
    while True:
        try:
            return (await supervisor.connect()).generation
        except NotSentError:
            await trio.sleep(0.02)


@pytest.mark.slow
async def test_kill_and_restart(
    http_server: HTTPServerProcess, session_config
):
    """
    A killed HTTP server fails calls; once restarted, a new session serves.

    The call in flight gets SessionLostError, calls while the server is
    down NotSentError; back on the same port, a new session serves calls.
    A restart *between* calls is invisible at 2026-07-28.
    """
    url = await http_server.start()
    errors: list[BaseException] = []
    failed = trio.Event()

    async def slow_call(supervisor: SessionSupervisor) -> None:
        try:
            await call_tool(supervisor, "slow", seconds=30)
        except TemporaryError as exc:
            errors.append(exc)
        finally:
            failed.set()

    with trio.fail_after(HANG_GUARD):
        async with (
            open_session_supervisor(url, session_config) as supervisor,
            trio.open_nursery() as nursery,
        ):
            assert "hi" == await call_tool(supervisor, "echo", text="hi")
            nursery.start_soon(slow_call, supervisor)
            while (
                "slow"
                not in (await call_tool(supervisor, "stats"))["executions"]
            ):
                await trio.sleep(0.01)

            await http_server.kill()
            await failed.wait()
            with pytest.raises(NotSentError) as down:
                await call_tool(supervisor, "echo", text="down")
            await http_server.restart()
            generation = await reconnect_until_up(supervisor)
            again = await call_tool(supervisor, "echo", text="again")

            await http_server.restart()
            after_restart = await call_tool(supervisor, "echo", text="same")
            metrics = supervisor.metrics()

    [lost] = errors
    assert isinstance(lost, SessionLostError)
    assert isinstance(lost.__cause__, MCPError)
    assert CONNECTION_CLOSED == lost.__cause__.code
    assert down.value.never_sent
    assert "again" == again
    assert "same" == after_restart
    assert generation == metrics.generation
    assert 1 == metrics.sessions_lost
    assert isinstance(metrics.last_error, httpx2.TransportError)


@pytest.mark.slow
async def test_429_and_503_status_recovered(
    http_server: HTTPServerProcess, session_config, tmp_path: Path
):
    """
    HTTP 429/503 become ServerError with the status and Retry-After.

    The SDK drops both; the response hook recovers them.  The session
    survives the errors.
    """
    port_file = tmp_path / "port.json"
    url = await http_server.start("--port-file", str(port_file))
    reset_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    with trio.fail_after(HANG_GUARD):
        async with open_session_supervisor(url, session_config) as supervisor:
            await call_tool(
                supervisor,
                "configure",
                http_status=429,
                http_reject_count=1,
                retry_after="3",
            )
            with pytest.raises(ServerError) as too_many:
                await call_tool(supervisor, "echo", text="x")
            await call_tool(
                supervisor,
                "configure",
                http_status=503,
                http_reject_count=1,
                retry_after="",
            )
            with pytest.raises(ServerError) as unavailable:
                await call_tool(supervisor, "echo", text="x")
            await call_tool(
                supervisor,
                "configure",
                http_reject_count=1,
                retry_after=format_datetime(reset_at, usegmt=True),
            )
            with pytest.raises(ServerError) as dated:
                await call_tool(supervisor, "echo", text="x")
            text = await call_tool(supervisor, "echo", text="fine")
            stats = await call_tool(supervisor, "stats")
            metrics = supervisor.metrics()

    assert (429, 3.0) == (
        too_many.value.status_code,
        too_many.value.retry_after,
    )
    assert isinstance(too_many.value.__cause__, MCPError)
    assert INTERNAL_ERROR == too_many.value.__cause__.code
    assert (503, None) == (
        unavailable.value.status_code,
        unavailable.value.retry_after,
    )
    assert dated.value.retry_after is not None
    assert 25 < dated.value.retry_after <= 31  # Date has 1 s resolution
    assert "fine" == text
    assert 3 == stats["http_rejections"]
    assert (1, 0) == (metrics.connects, metrics.sessions_lost)
    assert http_server.port == json.loads(port_file.read_text())["port"]


@pytest.mark.slow
@legacy_sse_leaks
async def test_503_at_connect(http_server: HTTPServerProcess, session_config):
    """
    A 503 at connect fails the attempt, honouring Retry-After.

    The server's Retry-After is the minimum backoff.  A 503 on
    ``server/discover`` alone makes the SDK fall back to 2025-11-25.
    """
    url = await http_server.start(
        "--http-fault-handshake",
        "--http-reject-count",
        "2",
        "--retry-after",
        "0.3",
    )
    with trio.fail_after(HANG_GUARD):
        async with open_session_supervisor(
            url, session_config, connect=False
        ) as supervisor:
            with pytest.raises(NotSentError) as refused:
                await supervisor.connect()
            first = await supervisor.connect()
            modern = supervisor.metrics().protocol_version
            await call_tool(supervisor, "configure", http_reject_count=1)
            second = await supervisor.reconnect()
            legacy = supervisor.metrics().protocol_version
            text = await call_tool(supervisor, "echo", text="legacy")

    assert "connect-failed" == refused.value.reason
    assert refused.value.retry_after is not None
    assert refused.value.retry_after >= 0.3
    assert isinstance(refused.value.__cause__, MCPError)
    assert INTERNAL_ERROR == refused.value.__cause__.code
    assert (2, 3) == (first.generation, second.generation)
    assert "2026-07-28" == modern
    assert "2025-11-25" == legacy
    assert "legacy" == text


@pytest.mark.slow
@legacy_sse_leaks
async def test_legacy_session_not_found(
    http_server: HTTPServerProcess, session_config
):
    """
    At 2025-11-25 a restarted server's "session not found" is NotSentError.

    The next call runs on a new session.  A kill mid-call loses the call.
    """
    url = await http_server.start()
    config = attrs.evolve(session_config, client_options={"mode": "legacy"})
    errors: list[BaseException] = []
    failed = trio.Event()

    async def slow_call(supervisor: SessionSupervisor) -> None:
        try:
            await call_tool(supervisor, "slow", seconds=30)
        except TemporaryError as exc:
            errors.append(exc)
        finally:
            failed.set()

    with trio.fail_after(HANG_GUARD):
        async with (
            open_session_supervisor(url, config) as supervisor,
            trio.open_nursery() as nursery,
        ):
            await call_tool(supervisor, "echo", text="one")
            await http_server.restart()
            with pytest.raises(NotSentError) as expired:
                await call_tool(supervisor, "echo", text="two")
            await reconnect_until_up(supervisor)
            text = await call_tool(supervisor, "echo", text="three")

            nursery.start_soon(slow_call, supervisor)
            while (
                "slow"
                not in (await call_tool(supervisor, "stats"))["executions"]
            ):
                await trio.sleep(0.01)
            await http_server.kill()
            await failed.wait()
            metrics = supervisor.metrics()

    assert "session-expired" == expired.value.reason
    assert isinstance(expired.value.__cause__, MCPError)
    assert INVALID_REQUEST == expired.value.__cause__.code
    assert "Session not found" == expired.value.__cause__.message
    assert "three" == text
    [lost] = errors
    assert isinstance(lost, SessionLostError)
    assert CONNECTION_CLOSED == lost.__cause__.code  # type: ignore[union-attr]
    assert 2 == metrics.generation


async def test_server_down_at_connect(free_port: int, session_config):
    """
    Nothing listening: the attempt fails with the transport's ConnectError.
    """
    url = f"http://127.0.0.1:{free_port}/mcp"
    with trio.fail_after(HANG_GUARD), pytest.raises(NotSentError) as info:
        async with open_session_supervisor(url, session_config):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, httpx2.ConnectError)
