"""
One client process of ``resilient-mcp demo --fleet N`` (run as a module).

``python -m resilient_mcp._demo._fleet_worker SERVER REDIS HLOG THRESHOLD``
connects a :class:`~resilient_mcp.ResilientMCPClient` to the flaky
server at SERVER, its breaker, retry budget and rate limiter shared
through the redis-server at REDIS, and prints ``ready``.  It then reads
the Unix time START from its standard input (the demo sends it once every
process is ready), waits until then, and calls the failing ``flaky`` tool
one call at a time until its breaker rejects a call, or until
``WORKER_LIMIT`` seconds have passed: it always stops by itself.  It
prints one JSON line (the calls that reached the server, the wall-clock
time of the first rejection, the store's errors) and writes its latencies
to HLOG.
"""

from __future__ import annotations

import functools
import json
import sys
import time

from typing import Any, Final

import trio

from .._config import CircuitBreakerConfig, RetryConfig
from .._errors import CircuitBreakerError, ResilienceError


WORKER_LIMIT: Final = 20.0  # seconds a process calls at most
STORE_TIMEOUT: Final = 0.25  # seconds: a loaded 2-core machine is slow
FLEET_NAME: Final = "demo-fleet"  # the client name: the fleet's keys


def fleet_client_config(threshold: int, store: Any) -> Any:
    """The client config of each process: no retries, a shared breaker."""
    from .._mcp import ResilientClientConfig  # noqa: PLC0415

    return ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=threshold,
            recovery_timeout=60.0,  # stays open for the rest of the run
            request_timeout=5.0,
            monitoring_window=30.0,
        ),
        # One attempt per call: each failed call is one call that reached
        # the server, so the counts are the server's own.
        retry=RetryConfig(max_attempts=1),
        tool_circuit_breaker=None,
        store=store,
    )


async def _run(server: str, redis: str, hlog: str, threshold: int) -> None:
    from .._hlog import run_hlog_writer  # noqa: PLC0415
    from .._mcp import ResilientMCPClient  # noqa: PLC0415
    from .._store._redis import RedisStore  # noqa: PLC0415

    reached = 0
    rejected: float | None = None
    async with RedisStore(redis, timeout=STORE_TIMEOUT) as store:
        client = ResilientMCPClient(
            server,
            config=fleet_client_config(threshold, store),
            name=FLEET_NAME,
        )
        async with client, trio.open_nursery() as background:
            await background.start(
                functools.partial(
                    run_hlog_writer,
                    client.latency_recorder,
                    hlog,
                    1.0,
                    overwrite=True,
                )
            )
            print("ready", flush=True)
            start = float(await trio.to_thread.run_sync(sys.stdin.readline))
            await trio.sleep(max(0.0, start - time.time()))
            with trio.move_on_after(WORKER_LIMIT):
                while True:
                    try:
                        await client.call_tool("flaky", {})
                    except CircuitBreakerError:
                        rejected = time.time()
                        break
                    except ResilienceError:
                        reached += 1
            errors = client.circuit_breaker.metrics().store_errors
            background.cancel_scope.cancel()
    print(
        json.dumps(
            {"reached": reached, "rejected": rejected, "store_errors": errors}
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one process of the fleet; 0 once it has reported."""
    server, redis, hlog, threshold = sys.argv[1:] if argv is None else argv
    trio.run(_run, server, redis, hlog, int(threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
