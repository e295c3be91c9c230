"""
``resilient-mcp demo``: the seed's example, against a real flaky server.

The demo starts an MCP server of ours in a subprocess (stdio by default,
streamable HTTP with ``--transport http``) whose tools succeed, fail at a
rate, slow down and hang, and runs the seed's phases through
:class:`~resilient_mcp.ResilientMCPClient`:

1. normal operations;
2. error recovery: retries, the circuit opening, failing fast, probing and
   closing again;
3. bulkhead isolation: 20 concurrent tool calls against a small tools
   bulkhead while resource reads go on unharmed;
4. session recovery: the server process dies and a new one takes over;
5. final metrics, checked: every request accounted for exactly once.

While it runs it prints progress, serves ``/metrics`` (127.0.0.1:8080 by
default), logs to ``app.log`` with the seed's greppable lines, and writes
an ``.hlog`` latency log that ``resilient-mcp hist show`` reads.  It exits
non-zero if the library misbehaved.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import subprocess
import sys

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TextIO

import attrs
import trio

from ._config import BulkheadConfig, CircuitBreakerConfig, RetryConfig
from ._errors import BulkheadError, CircuitBreakerError, ResilienceError


if TYPE_CHECKING:
    from ._mcp import ResilientClientMetrics, ResilientMCPClient


DEFAULT_LOG: Final = "app.log"
DEFAULT_HLOG: Final = "demo.hlog"
DEFAULT_METRICS_PORT: Final = 8080  # the seed's address
PHASE_LIMIT: Final = 20.0  # seconds: no phase may take longer
STARTUP_LIMIT: Final = 30.0  # seconds to start the server
RECOVERY_TIMEOUT: Final = 2.0  # seconds the demo's circuit stays open
SERVER_MODULE: Final = "resilient_mcp.testing.flaky_server"

logger: Final = logging.getLogger("resilient_mcp.demo")


class DemoFailure(Exception):  # noqa: N818
    """The library did something the demo checks it never does."""


@attrs.define
class Progress:
    """Prints phase headings and one-line results, flushed at once."""

    out: TextIO
    quiet: bool = False

    def phase(self, number: int, title: str) -> None:
        """Announce a phase (and log it)."""
        logger.info("Phase %d: %s", number, title)
        if not self.quiet:
            print(f"\n== Phase {number}: {title}", file=self.out, flush=True)

    def line(self, text: str) -> None:
        """One line of progress (also logged)."""
        logger.info("%s", text)
        if not self.quiet:
            print(f"   {text}", file=self.out, flush=True)


def add_demo_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``demo`` to the top-level parser."""
    demo = subparsers.add_parser(
        "demo",
        help="run the seed's example against an embedded flaky MCP server",
        description=(
            "Start a flaky MCP server in a subprocess and run the seed's "
            "phases through ResilientMCPClient: normal operations, error "
            "recovery, bulkhead isolation, session recovery, and final "
            "metrics.  Exits 0 when every request was accounted for."
        ),
    )
    demo.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="how to reach the server (default: stdio)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed for the server's failures and the workload (default: 1)",
    )
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="port for /metrics on 127.0.0.1; 0 picks a free one "
        "(default: 8080)",
    )
    demo.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not serve /metrics",
    )
    demo.add_argument(
        "--log-file",
        default=DEFAULT_LOG,
        help=f"where to write the log, replacing it (default: {DEFAULT_LOG})",
    )
    demo.add_argument(
        "--hlog",
        default=DEFAULT_HLOG,
        help=(
            "where to write the latency log, replacing it "
            f"(default: {DEFAULT_HLOG})"
        ),
    )
    demo.add_argument(
        "--quiet", action="store_true", help="print only the final metrics"
    )
    demo.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """The ``demo`` command: run the demo, map the outcome to a status."""
    try:
        return trio.run(run_demo, args)
    except KeyboardInterrupt:
        print("\ninterrupted; everything was shut down", file=sys.stderr)
        return 130


def _configure_logging(path: str) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("resilient_mcp")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return handler


async def run_demo(args: argparse.Namespace) -> int:
    """
    Run the demo in the current trio run.

    Returns:
        0 when every check passed, 1 when the library misbehaved or a
        phase overran its time limit.
    """
    handler = _configure_logging(args.log_file)
    progress = Progress(sys.stdout, quiet=args.quiet)
    try:
        async with _DemoServer(args) as server:
            try:
                metrics = await _run_phases(args, server, progress)
            except BaseExceptionGroup as group:
                raise _single(group) from None
    except DemoFailure as exc:
        logger.error("demo check failed: %s", exc)  # noqa: TRY400
        print(f"resilient-mcp demo: FAILED: {exc}", file=sys.stderr)
        return 1
    except trio.TooSlowError:
        logger.error("a demo phase overran its time limit")  # noqa: TRY400
        print(
            "resilient-mcp demo: FAILED: a phase overran its time limit "
            f"({PHASE_LIMIT:g}s)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"resilient-mcp demo: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.getLogger("resilient_mcp").removeHandler(handler)
        handler.close()
    _print_final(metrics, args, sys.stdout)
    return 0


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside nested groups, or the group itself."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else group


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


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


def _client_config() -> Any:
    from ._mcp import ResilientClientConfig, SessionConfig  # noqa: PLC0415

    return ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=5,
            recovery_timeout=RECOVERY_TIMEOUT,
            success_threshold=2,
            request_timeout=5.0,
            monitoring_window=30.0,
        ),
        retry=RetryConfig(
            max_attempts=3, initial_delay=0.1, max_delay=1.0, jitter=True
        ),
        bulkheads={
            "tools": BulkheadConfig(
                max_concurrent_requests=5,
                queue_size=10,
                request_timeout=15.0,
            ),
        },
        session=SessionConfig(
            connect_timeout=STARTUP_LIMIT,
            reconnect_delay=0.1,
            reconnect_max_delay=1.0,
        ),
    )


async def _run_phases(
    args: argparse.Namespace, server: _DemoServer, progress: Progress
) -> ResilientClientMetrics:
    from ._hlog import run_hlog_writer  # noqa: PLC0415
    from ._mcp import ResilientMCPClient  # noqa: PLC0415

    rng = random.Random(args.seed)
    client = ResilientMCPClient(
        server.spec, config=_client_config(), name="demo"
    )
    async with client, trio.open_nursery() as background:
        await background.start(
            functools.partial(
                run_hlog_writer,
                client.latency_recorder,
                args.hlog,
                1.0,
                overwrite=True,  # the demo's own output, as its log is
            )
        )
        await _start_observability(args, client, background, progress)
        with trio.fail_after(PHASE_LIMIT):
            await _phase_normal(client, progress)
        with trio.fail_after(PHASE_LIMIT):
            await _phase_errors(client, progress)
        with trio.fail_after(PHASE_LIMIT):
            await _phase_bulkhead(client, progress, rng)
        with trio.fail_after(PHASE_LIMIT):
            await _phase_session(client, server, progress)
        metrics = client.metrics()
        _check(metrics)
        background.cancel_scope.cancel()
    return metrics


async def _start_observability(
    args: argparse.Namespace,
    client: ResilientMCPClient,
    background: trio.Nursery,
    progress: Progress,
) -> None:
    from .instrumentation import (  # noqa: PLC0415
        Watchlist,
        run_health_monitor,
        serve_metrics,
    )

    watchlist = Watchlist()
    watchlist.watch_client(client)
    await background.start(
        functools.partial(run_health_monitor, watchlist, interval=5.0)
    )
    if args.no_metrics:
        return
    try:
        port = await background.start(
            functools.partial(serve_metrics, watchlist, port=args.metrics_port)
        )
    except OSError as exc:
        msg = (
            f"cannot serve /metrics on 127.0.0.1:{args.metrics_port} "
            f"({exc.strerror}); use --metrics-port 0 or --no-metrics"
        )
        raise OSError(msg) from exc
    progress.line(f"serving http://127.0.0.1:{port}/metrics")


async def _phase_normal(
    client: ResilientMCPClient, progress: Progress
) -> None:
    progress.phase(1, "normal operations")
    tools = await client.list_tools()
    progress.line(f"{len(tools.tools)} tools listed")
    for i in range(10):
        await client.call_tool("echo", {"text": f"hello {i}"})
    resources = await client.list_resources()
    static = await client.read_resource("flaky://static")
    prompt = await client.get_prompt("greet", {"name": "resilient-mcp"})
    progress.line(
        f"10 echo calls, {len(resources.resources)} resources, "
        f"{len(static.contents)} resource read, "
        f"{len(prompt.messages)} prompt message"
    )


async def _phase_errors(
    client: ResilientMCPClient, progress: Progress
) -> None:
    progress.phase(2, "error recovery: retries and the circuit breaker")
    await _control(client, failure_rate=0.2)
    ok = failed = 0
    for _ in range(10):
        try:
            await client.call_tool("flaky", {})
            ok += 1
        except ResilienceError:
            failed += 1
    retried = client.metrics().retried_requests
    progress.line(
        f"tool failing 20% of the time: {ok} of 10 calls succeeded, "
        f"{retried} after retries; {failed} failed"
    )
    await _control(client, failure_rate=1.0)
    fast = 0
    for _ in range(10):
        try:
            await client.call_tool("flaky", {})
        except CircuitBreakerError:
            fast += 1
        except ResilienceError:
            pass
    state = client.circuit_breaker.state
    progress.line(
        f"failing tool: circuit {state.name}, {fast} calls failed fast"
    )
    # The server recovers while the circuit is open; probes close it.
    await _control(client, failure_rate=0.0)
    await trio.sleep(RECOVERY_TIMEOUT)
    state = client.circuit_breaker.state
    progress.line(f"after {RECOVERY_TIMEOUT:g}s: circuit {state.name}")
    for _ in range(3):
        await client.call_tool("flaky", {})
    progress.line(
        f"probes succeeded: circuit {client.circuit_breaker.state.name}"
    )


async def _control(client: ResilientMCPClient, **settings: Any) -> None:
    # The demo's own control channel to the server: straight to the live
    # session, around the breaker that may (rightly) be stopping the
    # application's calls.
    live = await client.supervisor.connect()
    await live.client.call_tool("configure", settings)


async def _phase_bulkhead(
    client: ResilientMCPClient, progress: Progress, rng: random.Random
) -> None:
    progress.phase(3, "bulkhead isolation")
    outcomes: dict[str, int] = {"ok": 0, "rejected": 0, "failed": 0}
    reads: list[float] = []

    async def tool_call() -> None:
        seconds = round(rng.uniform(0.3, 0.6), 3)
        try:
            await client.call_tool("slow", {"seconds": seconds})
            outcomes["ok"] += 1
        except BulkheadError as exc:
            logger.warning("BulkheadError: %s", exc)
            outcomes["rejected"] += 1
        except ResilienceError:
            outcomes["failed"] += 1

    async def reader() -> None:
        for _ in range(10):
            start = trio.current_time()
            await client.list_resources()
            reads.append(trio.current_time() - start)
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(tool_call)
        nursery.start_soon(reader)
    worst = max(reads) * 1000
    progress.line(
        f"20 concurrent tool calls (5 run, 10 wait): {outcomes['ok']} ran, "
        f"{outcomes['rejected']} rejected at once, {outcomes['failed']} "
        "failed"
    )
    progress.line(
        f"meanwhile 10 resource listings, slowest {worst:.1f} ms: unharmed"
    )


async def _phase_session(
    client: ResilientMCPClient, server: _DemoServer, progress: Progress
) -> None:
    progress.phase(4, "session recovery: the server process dies")
    before = client.supervisor.metrics().generation
    try:
        await client.call_tool("crash", {})
    except ResilienceError as exc:
        progress.line(f"crash (not safe to retry): {type(exc).__name__}")
    if await server.restart_after_crash():
        progress.line("the HTTP server was restarted on the same port")
    result = await client.call_tool("echo", {"text": "back"})
    after = client.supervisor.metrics().generation
    text = (result.structured_content or {}).get("result")
    progress.line(f"next call {text!r} on session {after} (was {before})")


def _check(metrics: ResilientClientMetrics) -> None:
    """The promises the demo holds the library to."""
    total = (
        metrics.successful_requests
        + metrics.failed_requests
        + metrics.cancelled_requests
    )
    if total != metrics.total_requests:
        msg = f"{metrics.total_requests} requests, but outcomes add to {total}"
        raise DemoFailure(msg)
    if metrics.failed_requests != sum(metrics.failures.values()):
        msg = "failures by kind do not add up to failed_requests"
        raise DemoFailure(msg)
    timed = sum(op.latency.count for op in metrics.operations.values())
    if timed != metrics.total_requests:
        msg = f"{metrics.total_requests} requests, {timed} latencies"
        raise DemoFailure(msg)
    if metrics.circuit_breaker_trips < 1:
        msg = "the circuit never opened under a failing server"
        raise DemoFailure(msg)
    if metrics.bulkhead_rejections < 1:
        msg = "the bulkhead rejected nothing under 20 concurrent calls"
        raise DemoFailure(msg)
    for name, bulkhead in metrics.bulkheads.items():
        if bulkhead.active_requests or bulkhead.queued_requests:
            msg = f"bulkhead {name!r} leaked a slot or a queue place"
            raise DemoFailure(msg)


def _print_final(
    metrics: ResilientClientMetrics, args: argparse.Namespace, out: TextIO
) -> None:
    ms = 1000.0
    print("\n== Phase 5: final metrics", file=out)
    rows = [
        ("total_requests", metrics.total_requests),
        ("successful_requests", metrics.successful_requests),
        ("failed_requests", metrics.failed_requests),
        ("retried_requests", metrics.retried_requests),
        ("circuit_breaker_trips", metrics.circuit_breaker_trips),
        ("bulkhead_rejections", metrics.bulkhead_rejections),
        ("tool_errors", metrics.tool_errors),
        ("average_latency", f"{metrics.average_latency * ms:.3f} ms"),
        ("p50_latency", f"{metrics.p50_latency * ms:.3f} ms"),
        ("p95_latency", f"{metrics.p95_latency * ms:.3f} ms"),
        ("p99_latency", f"{metrics.p99_latency * ms:.3f} ms"),
        ("p99.9_latency", f"{metrics.p999_latency * ms:.3f} ms"),
        ("max_latency", f"{metrics.max_latency * ms:.3f} ms"),
    ]
    for name, value in rows:
        print(f"   {name:<24}{value}", file=out)
    failures = ", ".join(
        f"{outcome.value}={count}"
        for outcome, count in metrics.failures.items()
        if count
    )
    print(f"   {'failures by kind':<24}{failures or 'none'}", file=out)
    print("   per operation:", file=out)
    for name, op in sorted(metrics.operations.items()):
        if op.total_requests:
            print(
                f"     {name:<26}{op.total_requests:>5} requests  "
                f"p50 {op.latency.p50 * ms:8.3f} ms  "
                f"p99 {op.latency.p99 * ms:8.3f} ms",
                file=out,
            )
    print(
        f"   every request accounted for: {metrics.total_requests} = "
        f"{metrics.successful_requests} ok + {metrics.failed_requests} "
        f"failed + {metrics.cancelled_requests} cancelled",
        file=out,
    )
    print(
        f"\nlog: {args.log_file}   latency log: {args.hlog} "
        f"(try: resilient-mcp hist summary {args.hlog})",
        file=out,
    )
