"""
``resilient-mcp demo --fleet N``: N client processes, one breaker.

The demo starts the flaky server over HTTP (one server for the whole
fleet), makes its ``flaky`` tool fail every call, and starts N client
processes (:mod:`._fleet_worker`) that share their server breaker through
Redis: a ``redis-server`` the demo starts on 127.0.0.1 on a free port
when the binary is on the PATH (and stops at the end), or the one given
by ``--redis URL``.  Every process calls until its breaker rejects a
call.  Every sentence printed is made from what was counted: the server's
own count of the calls that reached it, each process's count and the
wall-clock time of its first rejection.  Each process writes its own
``.hlog``; the demo merges them with ``resilient-mcp hist merge`` and
shows the merged summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from ._fleet_worker import WORKER_LIMIT
from ._server import STARTUP_LIMIT, _DemoServer, _package_root


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence


NO_DISK: Final = ("--save", "", "--appendonly", "no", "--dir")
WORKER: Final = "resilient_mcp._demo._fleet_worker"
FAILURE_THRESHOLD: Final = 5  # the breaker's, in every process
START_DELAY: Final = 0.3  # seconds between "go" and the fleet's start
NO_REDIS: Final = (
    "resilient-mcp demo --fleet: no redis-server on the PATH; install one "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install "
    "redis) or pass --redis redis://HOST:PORT/0"
)
NO_COREDIS: Final = (
    "resilient-mcp demo --fleet: coredis is not installed; install the "
    "redis extra: pip install 'resilient-mcp[redis]'"
)


class FleetSetupError(Exception):
    """What the fleet demo needs is missing (exit code 2)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def _redis(url: str | None) -> AsyncIterator[str]:
    """The URL of the given Redis, or of a redis-server started here."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise FleetSetupError(NO_REDIS)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="resilient-mcp-redis-") as tmp:
        process = await trio.lowlevel.open_process(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                *NO_DISK,
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(STARTUP_LIMIT):
                while True:
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.01)
                    else:
                        await stream.aclose()
                        break
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            with trio.CancelScope(shield=True):
                process.kill()
                await process.wait()


class _Lines:
    """Lines from a process's standard output."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None  # noqa: S101
        self.stream = process.stdout
        self.buffer = b""

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                msg = "a fleet process exited before it reported"
                raise OSError(msg)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


async def _control(client: Any, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    return result.structured_content


async def _run_fleet(
    server_url: str, redis_url: str, hlogs: Sequence[Path]
) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_package_root(), env.get("PYTHONPATH")) if p
    )
    processes: list[trio.Process] = []
    try:
        for hlog in hlogs:
            command = [sys.executable, "-m", WORKER, server_url, redis_url]
            command += [str(hlog), str(FAILURE_THRESHOLD)]
            process = await trio.lowlevel.open_process(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            processes.append(process)
        lines = [_Lines(p) for p in processes]
        with trio.fail_after(STARTUP_LIMIT):
            for reader in lines:
                if await reader.line() != "ready":
                    msg = "a fleet process did not start"
                    raise OSError(msg)
        start = f"{time.time() + START_DELAY!r}\n".encode()
        for process in processes:
            assert process.stdin is not None  # noqa: S101
            await process.stdin.send_all(start)
        with trio.fail_after(WORKER_LIMIT + STARTUP_LIMIT):
            reports = [json.loads(await reader.line()) for reader in lines]
            for process in processes:
                await process.wait()
        return reports
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                if process.returncode is None:
                    process.kill()
                await process.wait()


def describe_fleet(
    reports: Sequence[dict[str, Any]], reached: int, threshold: int
) -> list[str]:
    """The sentences that tell what the fleet's run counted."""
    n = len(reports)
    lines = [
        f"the server failed every call; {reached} calls reached it before "  # noqa: ISC004
        f"every one of the {n} processes' breakers rejected "
        f"(failure_threshold {threshold}: at most {threshold} + {n} = "
        f"{threshold + n} with the shared store; without a store each "
        f"process fails {threshold} of its own, {threshold} x {n} = "
        f"{threshold * n})"
    ]
    for index, report in enumerate(reports):
        lines.append(
            f"process {index}: {report['reached']} calls reached the "
            "server, then its breaker rejected"
        )
    opened_by_fleet = sum(r["reached"] < threshold for r in reports)
    lines.append(
        f"{opened_by_fleet} of {n} processes found the circuit open before "
        f"{threshold} failures of their own: the fleet's failures opened it"
    )
    times = [r["rejected"] for r in reports]
    spread = (max(times) - min(times)) * 1000
    lines.append(
        f"from the first process's first rejection to the last's: "
        f"{spread:.0f} ms"
    )
    errors = sum(r["store_errors"] for r in reports)
    lines.append(f"requests to Redis that failed or were too slow: {errors}")
    return lines


def _merge(hlogs: Sequence[Path], merged: Path) -> list[str]:
    from ..__main__ import main  # noqa: PLC0415

    names = " ".join(str(h) for h in hlogs)
    command = f"resilient-mcp hist merge {names} -o {merged} --force"
    print(f"merge the per-process latency logs:\n  $ {command}")
    status = main(
        ["hist", "merge", *map(str, hlogs), "-o", str(merged), "--force"]
    )
    if status:
        return [f"hist merge failed with status {status}"]
    print(f"  $ resilient-mcp hist summary {merged}", flush=True)
    status = main(["hist", "summary", str(merged)])
    return [] if status == 0 else [f"hist summary failed: status {status}"]


async def run_fleet_demo(args: argparse.Namespace) -> int:
    """
    Run ``demo --fleet N`` in the current trio run.

    Returns:
        0 when every process's breaker rejected, 1 when one did not (or a
        step failed), 2 when coredis or Redis is missing.
    """
    from .._mcp import ResilientMCPClient  # noqa: PLC0415

    n = args.fleet
    out = Path(args.hlog).parent
    hlogs = [out / f"fleet-{i}.hlog" for i in range(n)]
    if importlib.util.find_spec("coredis") is None:
        print(NO_COREDIS, file=sys.stderr)
        return 2
    try:
        async with _redis(args.redis) as redis_url:
            print(
                f"fleet of {n} client processes against one flaky server, "
                f"sharing their breaker through {redis_url}",
                flush=True,
            )
            server_args = argparse.Namespace(transport="http", seed=args.seed)
            async with _DemoServer(server_args) as server:
                control = ResilientMCPClient(server.spec, name="control")
                async with control:
                    await _control(control, "configure", failure_rate=1.0)
                    before = await _control(control, "stats")
                    reports = await _run_fleet(server.spec, redis_url, hlogs)
                    after = await _control(control, "stats")
    except FleetSetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, trio.TooSlowError) as exc:
        print(f"resilient-mcp demo --fleet: FAILED: {exc!r}", file=sys.stderr)
        return 1
    reached = after["executions"].get("flaky", 0) - before["executions"].get(
        "flaky", 0
    )
    if any(r["rejected"] is None for r in reports):
        print(
            "resilient-mcp demo --fleet: FAILED: a process's breaker never "
            f"rejected within {WORKER_LIMIT:g}s",
            file=sys.stderr,
        )
        return 1
    for line in describe_fleet(reports, reached, FAILURE_THRESHOLD):
        print(line)
    problems = _merge(hlogs, out / "fleet.hlog")
    for problem in problems:
        print(
            f"resilient-mcp demo --fleet: FAILED: {problem}", file=sys.stderr
        )
    return 1 if problems else 0
