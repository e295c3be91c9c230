"""
The demo's scenario: the client's configuration and the seed's phases.
"""

from __future__ import annotations

import functools
import logging
import random

from typing import TYPE_CHECKING, Any, Final

import trio

from .._config import BulkheadConfig, CircuitBreakerConfig, RetryConfig
from .._errors import BulkheadError, CircuitBreakerError, ResilienceError
from ._report import Progress, _check
from ._server import STARTUP_LIMIT


if TYPE_CHECKING:
    import argparse

    from .._mcp import ResilientClientMetrics, ResilientMCPClient
    from ._server import _DemoServer


logger: Final = logging.getLogger("resilient_mcp.demo")

PHASE_LIMIT: Final = 20.0  # seconds: no phase may take longer
RECOVERY_TIMEOUT: Final = 2.0  # seconds the demo's circuit stays open


def _client_config() -> Any:
    from .._mcp import ResilientClientConfig, SessionConfig  # noqa: PLC0415

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
    from .._hlog import run_hlog_writer  # noqa: PLC0415
    from .._mcp import ResilientMCPClient  # noqa: PLC0415

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
    from ..instrumentation import (  # noqa: PLC0415
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
