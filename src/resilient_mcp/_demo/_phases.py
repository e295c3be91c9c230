"""
The demo's scenario: the client's configuration and its five phases.
"""

from __future__ import annotations

import functools
import logging
import random

from typing import TYPE_CHECKING, Any, Final

import trio

from .._config import BulkheadConfig, CircuitBreakerConfig, RetryConfig
from .._errors import BulkheadError, ResilienceError
from ._recovery import RECOVERY_TIMEOUT, phase_errors, phase_session
from ._report import Progress, _check
from ._server import STARTUP_LIMIT


if TYPE_CHECKING:
    import argparse

    from .._mcp import ResilientClientMetrics, ResilientMCPClient
    from ._server import _DemoServer


logger: Final = logging.getLogger("resilient_mcp.demo")

PHASE_LIMIT: Final = 20.0  # seconds: no phase may take longer


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
            # A session lost sooner than this counts as a failed connect.
            reconnect_max_delay=2.0,
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
            await phase_errors(client, progress)
        with trio.fail_after(PHASE_LIMIT):
            await _phase_bulkhead(client, progress, rng)
        with trio.fail_after(PHASE_LIMIT):
            await phase_session(client, server, progress)
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
            try:
                await client.list_resources()
                reads.append(trio.current_time() - start)
            except ResilienceError:
                pass
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(tool_call)
        nursery.start_soon(reader)
    tools = client.metrics().bulkheads["tools"]
    progress.line(
        f"20 concurrent tool calls, {tools.max_concurrent_requests} may run "
        f"and {tools.queue_size} wait: {outcomes['ok']} ran, "
        f"{outcomes['rejected']} rejected at once, {outcomes['failed']} "
        "failed"
    )
    slowest = f", slowest {max(reads) * 1000:.1f} ms" if reads else ""
    progress.line(
        f"meanwhile {len(reads)} of 10 resource listings succeeded"
        f"{slowest}, in a bulkhead of their own"
    )
