"""
Real MCP servers for the MCP adapter's tests: in-process, stdio, HTTP.

Every subprocess is started with the interpreter running the tests and
with ``PYTHONPATH`` pointing at the very ``resilient_mcp`` the tests
imported, so parent and child run the same code.  The SDK's stdio client
passes the child only ``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``, ``TERM``
and ``USER`` plus what ``env`` says, hence the explicit ``PYTHONPATH``.

Every wait on a subprocess is bounded, and every subprocess is killed when
its test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import pytest
import trio

from mcp.client.stdio import StdioServerParameters

import resilient_mcp

from resilient_mcp._mcp import SessionConfig
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from typing import TextIO

    from mcp.client import Client
    from mcp.server.mcpserver import MCPServer


STARTUP_TIMEOUT: Final = 20.0  # seconds for a server process to listen
KILL_TIMEOUT: Final = 5.0  # seconds for a killed process to be reaped
SERVER_MODULE: Final = "resilient_mcp.testing.flaky_server"
PACKAGE_ROOT: Final = str(Path(resilient_mcp.__file__).resolve().parent.parent)


def child_env() -> dict[str, str]:
    """The environment a server subprocess needs to import our package."""
    return {"PYTHONPATH": PACKAGE_ROOT, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[TextIO]:
    """A file (with a fileno) that collects the servers' stderr."""
    with (tmp_path / "server-stderr.log").open("w") as log:
        yield log


@pytest.fixture
def flaky_state() -> FlakyState:
    """The shared state of the in-process server; crash is disabled."""
    return FlakyState(FlakyServerConfig(allow_crash=False, seed=1234))


@pytest.fixture
def inproc_server(flaky_state: FlakyState) -> MCPServer:
    """An in-process flaky server, watched through ``flaky_state``."""
    return create_flaky_server(state=flaky_state)


@pytest.fixture
def stdio_params() -> Callable[..., StdioServerParameters]:
    """Build parameters that start the flaky server over stdio."""

    def make(*args: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", SERVER_MODULE, "stdio", *args],
            env=child_env(),
        )

    return make


async def list_tools_once(client: Client) -> None:
    """
    Fetch the tool listing before the first call.

    Otherwise the SDK lists tools behind the first successful call of each
    tool with an output schema, and a failure of that hidden listing (an
    injected 503, say) fails a call that already ran.
    """
    await client.list_tools()


@pytest.fixture
def session_config(server_log: TextIO) -> SessionConfig:
    """Quick reconnects and a generous connect timeout for real servers."""
    return SessionConfig(
        connect_timeout=STARTUP_TIMEOUT,
        reconnect_delay=0.02,
        reconnect_max_delay=0.5,
        stdio_errlog=server_log,
        on_connect=list_tools_once,
    )


@attrs.define(eq=False)
class HTTPServerProcess:
    """
    The flaky server over streamable HTTP, in a subprocess of its own.

    Started on an ephemeral port; :meth:`restart` brings it back on the
    same port, so the URL stays valid across kills.
    """

    log: TextIO
    args: tuple[str, ...] = ()
    port: int = 0
    process: trio.Process | None = None

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self, *args: str) -> str:
        """Start the server (extra CLI *args* replace earlier ones)."""
        if args:
            self.args = args
        command = [
            sys.executable,
            "-m",
            SERVER_MODULE,
            "http",
            "--port",
            str(self.port),
            *self.args,
        ]
        process = await trio.lowlevel.open_process(
            command,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, **child_env()},
        )
        self.process = process
        assert process.stdout is not None
        line = b""
        with trio.fail_after(STARTUP_TIMEOUT):
            while b"\n" not in line:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(
                        f"HTTP server exited with {await process.wait()}"
                    )
                line += chunk
        info = json.loads(line.partition(b"\n")[0])
        self.port = info["port"]
        return self.url

    async def kill(self) -> None:
        """SIGKILL the server and reap it; a no-op if it is not running."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        with trio.move_on_after(KILL_TIMEOUT) as scope:
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
        if scope.cancelled_caught:  # pragma: no cover - a wedged kernel
            pytest.fail(f"server process {process.pid} survived SIGKILL")

    async def restart(self) -> str:
        """Kill the server if it runs, and start it on the same port."""
        await self.kill()
        return await self.start()


@pytest.fixture
async def http_server(server_log: TextIO) -> AsyncIterator[HTTPServerProcess]:
    """A not yet started HTTP server process, killed at teardown."""
    server = HTTPServerProcess(server_log)
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.kill()


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening on it (probably)."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
