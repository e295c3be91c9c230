"""
The demo's flaky MCP server: a subprocess, reached over stdio or HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
import trio


if TYPE_CHECKING:
    import argparse


STARTUP_LIMIT: Final = 30.0  # seconds to start the server
SERVER_MODULE: Final = "resilient_mcp.testing.flaky_server"


def _package_root() -> str:
    # The folder that holds resilient_mcp/ (this is resilient_mcp/_demo/).
    return str(Path(__file__).resolve().parents[2])


@attrs.define(eq=False)
class _DemoServer:
    """
    The flaky server for the chosen transport.

    Over stdio the client starts (and after a crash restarts) the process
    itself; over HTTP the demo runs it, and restarts it on the same port
    when it dies, as a process manager would.
    """

    args: argparse.Namespace
    spec: Any = None
    port: int = 0
    process: trio.Process | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": _package_root(), "PYTHONUNBUFFERED": "1"}

    def _server_args(self) -> list[str]:
        return ["--seed", str(self.args.seed), "--latency", "0.005"]

    async def __aenter__(self) -> Self:
        if self.args.transport == "stdio":
            from mcp.client.stdio import (  # noqa: PLC0415
                StdioServerParameters,
            )

            self.spec = StdioServerParameters(
                command=sys.executable,
                args=["-m", SERVER_MODULE, "stdio", *self._server_args()],
                env=self.env,
            )
        else:
            await self._start_http()
            self.spec = f"http://127.0.0.1:{self.port}/mcp"
        return self

    async def _start_http(self) -> None:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                SERVER_MODULE,
                "http",
                "--port",
                str(self.port),
                *self._server_args(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        self.process = process
        assert process.stdout is not None  # noqa: S101
        line = b""
        with trio.fail_after(STARTUP_LIMIT):
            while b"\n" not in line:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    msg = "the HTTP demo server exited at start"
                    raise OSError(msg)
                line += chunk
        self.port = json.loads(line.partition(b"\n")[0])["port"]

    async def restart_after_crash(self) -> bool:
        """Restart the HTTP server once it has died; whether it did."""
        process = self.process
        if process is None:
            return False  # stdio: the client restarts the process itself
        with trio.move_on_after(STARTUP_LIMIT):
            await process.wait()
        await self._stop()
        await self._start_http()
        return True

    async def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(5):
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()
