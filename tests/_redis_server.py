"""
A real redis-server on 127.0.0.1 for the fleet tests, on a free port.

Debian's ``redis-server`` package provides the binary (``.ci/run``
installs it when missing); without it the tests that need it skip, and
say why.  No persistence: each server starts empty.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from collections.abc import Iterator
from pathlib import Path

import pytest


BINARY = shutil.which("redis-server")
MISSING = (
    "redis-server is not on the PATH: install Debian's redis-server "
    "package (apt-get install redis-server) to run the fleet tests"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process that a test can kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (5 s at most) until it answers."""
        assert BINARY is not None
        self.process = subprocess.Popen(
            [
                BINARY,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a shutdown)."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server, killed after the test."""
    if BINARY is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
