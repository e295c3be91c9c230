"""
The session supervisor against flaky servers in stdio subprocesses.

Real processes cannot run on a mock clock; every wait here is bounded by a
generous ``trio.fail_after`` that only guards against hangs.
"""

from __future__ import annotations

import os
import signal
import sys

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio

from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS

from resilient_mcp import PermanentError, TemporaryError
from resilient_mcp._mcp import (
    NotSentError,
    RequestTimeoutError,
    ServerError,
    SessionConfig,
    SessionLostError,
    SessionSupervisor,
    open_session_supervisor,
)


if TYPE_CHECKING:
    from collections.abc import Callable


HANG_GUARD = 30  # seconds; never a timing assertion


async def stats(supervisor: SessionSupervisor) -> dict[str, Any]:
    """The server's counters (and pid), through the ``stats`` tool."""
    result = await supervisor.call(lambda c: c.call_tool("stats", {}))
    assert result.structured_content is not None
    return result.structured_content


async def echo(supervisor: SessionSupervisor, text: str = "hi") -> str:
    """Call the echo tool and return its text."""
    result = await supervisor.call(
        lambda c: c.call_tool("echo", {"text": text})
    )
    assert result.structured_content is not None
    value: str = result.structured_content["result"]
    return value


async def wait_for_execution(supervisor: SessionSupervisor, tool: str) -> None:
    """Poll until the server has started running *tool*."""
    while tool not in (await stats(supervisor))["executions"]:
        await trio.sleep(0.01)


@pytest.mark.slow
async def test_stdio_calls_and_error_map(stdio_params, session_config):
    """
    Over stdio: results, is_error results, and the error map entries.
    """
    params = stdio_params("--failure-rate", "1", "--seed", "7", "--no-crash")
    with trio.fail_after(HANG_GUARD):
        async with open_session_supervisor(
            params, session_config
        ) as supervisor:
            text = await echo(supervisor)
            tool_error = await supervisor.call(
                lambda c: c.call_tool("tool_error", {})
            )
            with pytest.raises(PermanentError) as rejected:
                await supervisor.call(lambda c: c.call_tool("reject", {}))
            with pytest.raises(ServerError) as flaky:
                await supervisor.call(lambda c: c.call_tool("flaky", {}))
            with pytest.raises(ServerError) as crash:
                await supervisor.call(lambda c: c.call_tool("crash", {}))
            with pytest.raises(RequestTimeoutError):
                await supervisor.call(
                    lambda c: c.call_tool(
                        "slow", {"seconds": 30}, read_timeout_seconds=0.1
                    )
                )
            after = await echo(supervisor, "after")
            metrics = supervisor.metrics()

    assert "hi" == text
    assert tool_error.is_error
    assert INVALID_PARAMS == rejected.value.code
    assert INTERNAL_ERROR == flaky.value.code
    assert "disabled" in str(crash.value)
    assert "after" == after
    assert (1, 0) == (metrics.connects, metrics.sessions_lost)


@pytest.mark.slow
async def test_sigkill_with_call_in_flight(stdio_params, session_config):
    """
    SIGKILL of the server fails the call in flight, then a new server serves.

    The call gets SessionLostError (cause: MCPError -32000); the supervisor
    reconnects and later calls succeed on a new server process.
    """
    errors: list[BaseException] = []
    failed = trio.Event()

    async def slow_call(supervisor: SessionSupervisor) -> None:
        try:
            await supervisor.call(
                lambda c: c.call_tool("slow", {"seconds": 30})
            )
        except TemporaryError as exc:
            errors.append(exc)
        finally:
            failed.set()

    with trio.fail_after(HANG_GUARD):
        async with (
            open_session_supervisor(
                stdio_params(), session_config
            ) as supervisor,
            trio.open_nursery() as nursery,
        ):
            first_pid = (await stats(supervisor))["pid"]
            nursery.start_soon(slow_call, supervisor)
            await wait_for_execution(supervisor, "slow")

            os.kill(first_pid, signal.SIGKILL)
            await failed.wait()
            session = await supervisor.connect()
            text = await echo(supervisor, "again")
            second_pid = (await stats(supervisor))["pid"]
            metrics = supervisor.metrics()

    [lost] = errors
    assert isinstance(lost, SessionLostError)
    assert isinstance(lost.__cause__, MCPError)
    assert CONNECTION_CLOSED == lost.__cause__.code
    assert 2 == session.generation
    assert "again" == text
    assert first_pid != second_pid
    assert (2, 1) == (metrics.connects, metrics.sessions_lost)
    assert isinstance(metrics.last_error, EOFError)


@pytest.mark.slow
async def test_crash_tool_ends_the_session(stdio_params, session_config):
    """
    A server exiting mid-call loses the session; its successor starts anew.
    """
    with trio.fail_after(HANG_GUARD):
        async with open_session_supervisor(
            stdio_params(), session_config
        ) as supervisor:
            await supervisor.call(lambda c: c.call_tool("increment", {}))
            with pytest.raises(SessionLostError) as crashed:
                await supervisor.call(lambda c: c.call_tool("crash", {}))
            await supervisor.connect()
            counter = (await stats(supervisor))["counter"]

    assert CONNECTION_CLOSED == crashed.value.__cause__.code  # type: ignore[union-attr]
    assert 0 == counter


async def test_command_not_found(session_config):
    """
    A stdio command that does not exist fails the attempt: NotSentError.
    """
    params = StdioServerParameters(command="/nonexistent/mcp-server")
    with pytest.raises(NotSentError) as info:
        async with open_session_supervisor(params, session_config):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_server_exits_at_once(session_config):
    """
    A server that exits before the handshake fails the attempt with -32000.
    """
    params = StdioServerParameters(command=sys.executable, args=["-c", "0"])
    with trio.fail_after(HANG_GUARD), pytest.raises(NotSentError) as info:
        async with open_session_supervisor(params, session_config):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, MCPError)
    assert CONNECTION_CLOSED == info.value.__cause__.code


@pytest.mark.slow
async def test_silent_server_hits_the_connect_timeout(server_log):
    """
    A server that never answers is given up on after connect_timeout.
    """
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "import sys; sys.stdin.read()"],
    )
    config = SessionConfig(connect_timeout=0.5, stdio_errlog=server_log)
    with trio.fail_after(HANG_GUARD), pytest.raises(NotSentError) as info:
        async with open_session_supervisor(params, config):
            pytest.fail("connected")

    assert isinstance(info.value.__cause__, TimeoutError)


@pytest.mark.slow
def test_sigkill_on_asyncio(
    stdio_params: Callable[..., StdioServerParameters],
    session_config: SessionConfig,
):
    """
    On asyncio too, a killed stdio server is noticed and replaced.
    """

    async def call_until_it_fails(
        supervisor: SessionSupervisor,
    ) -> TemporaryError:
        # Either the kill is seen first (NotSentError: never sent) or the
        # call is already on its way (SessionLostError).
        while True:
            try:
                await echo(supervisor)
            except TemporaryError as exc:
                return exc
            await anyio.sleep(0.01)

    async def main() -> tuple[BaseException, int]:
        with anyio.fail_after(HANG_GUARD):
            async with open_session_supervisor(
                stdio_params(), session_config
            ) as supervisor:
                os.kill((await stats(supervisor))["pid"], signal.SIGKILL)
                error = await call_until_it_fails(supervisor)
                session = await supervisor.connect()
                await echo(supervisor)
        return error, session.generation

    error, generation = anyio.run(main, backend="asyncio")

    assert isinstance(error, NotSentError | SessionLostError)
    assert 2 == generation
