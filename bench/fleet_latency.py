"""
Added latency per call of a RedisStore, against a loopback round trip.

``python -m bench.fleet_latency`` starts a redis-server on a free port of
127.0.0.1, then times, on trio and in one run: a bare Redis ``PING``
through coredis (the loopback round trip), a call through a rate limiter
with no store, the same with a RedisStore, and the same while Redis is
stopped (SIGSTOP: a Redis that hangs, the worst outage); then a
successful call through a circuit breaker with no store and with a
RedisStore (its counts go in batches, off the call's path), and through
the shared breaker while Redis hangs.  ``nox -s bench`` runs it after
the main suite when ``redis-server`` is on the PATH, writing
``bench/results/fleet-latency.txt`` (``--out PATH``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import coredis

from resilient_mcp import (
    CircuitBreaker,
    RateLimiter,
    RateLimiterConfig,
    RedisStore,
)
from resilient_mcp._store import _lua


CALLS = 3000
CONFIG = RateLimiterConfig(rate=1e9, burst=1_000_000)  # never limits


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _noop() -> None:
    pass


async def _times(fn) -> list[float]:
    out = []
    for _ in range(CALLS):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def _summary(name: str, times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return (
        f"{name:<36} p50 {statistics.median(times) * 1e6:8.1f} us"
        f"   p99 {q[98] * 1e6:8.1f} us   max {max(times) * 1e6:8.1f} us"
    )


async def _while_hung(
    server: subprocess.Popen[bytes], call: Callable[[], Awaitable[object]]
) -> list[float]:
    """
    The times of *call* made 1 ms apart for 2 s while Redis is stopped.

    With reconnect_interval 1 s, about three of the calls ask the hung
    Redis and wait out the store's timeout; the others decide locally.
    """
    os.kill(server.pid, signal.SIGSTOP)
    times = []
    try:
        until = time.perf_counter() + 2
        while time.perf_counter() < until:
            start = time.perf_counter()
            await call()
            times.append(time.perf_counter() - start)
            await anyio.sleep(0.001)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    return times


async def main(url: str, server: subprocess.Popen[bytes]) -> list[str]:
    client = coredis.Redis.from_url(url)
    async with client:
        await client.ping()
        await _times(client.ping)  # warm-up
        ping = await _times(client.ping)
        gcra = client.register_script(_lua.GCRA)

        async def script() -> None:
            await gcra(keys=["bench:gcra"], args=["0.001", "1000", "0"])

        await _times(script)
        raw = await _times(script)
    local = RateLimiter(CONFIG, name="local")
    await _times(lambda: local.call(_noop))
    bare = await _times(lambda: local.call(_noop))
    # The added latency, with a timeout no loaded machine reaches.
    async with RedisStore(url, timeout=0.5) as store:
        shared = RateLimiter(CONFIG, name="shared", store=store)
        await _times(lambda: shared.call(_noop))
        with_store = await _times(lambda: shared.call(_noop))
        errors = shared.metrics().store_errors
    # The outage, with the default timeout.
    async with RedisStore(url, timeout=0.005) as store:
        hung = RateLimiter(CONFIG, name="hung", store=store)
        await _times(lambda: hung.call(_noop))
        errors_before = hung.metrics().store_errors
        outage = await _while_hung(server, lambda: hung.call(_noop))
        hung_errors = hung.metrics().store_errors - errors_before
    breakers = await _breakers(url, server)
    lines = [
        _summary("redis PING (loopback round trip)", ping),
        _summary("EVALSHA of the GCRA script (coredis)", raw),
        _summary("rate limiter, no store", bare),
        _summary("rate limiter, RedisStore", with_store),
        _summary("rate limiter, Redis hung (SIGSTOP)", outage),
    ]
    added = statistics.median(with_store) - statistics.median(bare)
    lines.append(
        f"added median per call: {added * 1e6:.1f} us, "
        f"{added / statistics.median(ping):.2f} PING round trips, "
        f"{added / statistics.median(raw):.2f} script round trips; "
        f"store_errors: {errors} shared, {hung_errors} with the hang"
    )
    slow = sorted(t for t in outage if t >= 0.005)
    lines.append(
        f"in the hang: {len(outage)} calls, {len(slow)} waited the 5 ms "
        f"timeout, taking {', '.join(f'{t * 1e3:.2f}' for t in slow)} ms"
    )
    lines.extend(_summary(name, times) for name, times in breakers)
    return lines


async def _breakers(
    url: str, server: subprocess.Popen[bytes]
) -> list[tuple[str, list[float]]]:
    """A successful call through a breaker: no store, shared, hung."""
    local = CircuitBreaker(name="local")
    await _times(lambda: local.call(_noop))
    bare = await _times(lambda: local.call(_noop))
    async with RedisStore(url, timeout=0.5) as store:
        shared = CircuitBreaker(name="shared", store=store)
        await _times(lambda: shared.call(_noop))
        with_store = await _times(lambda: shared.call(_noop))
    async with RedisStore(url, timeout=0.005) as store:
        hung = CircuitBreaker(name="hung", store=store)
        await _times(lambda: hung.call(_noop))
        outage = await _while_hung(server, lambda: hung.call(_noop))
    return [
        ("circuit breaker, no store", bare),
        ("circuit breaker, RedisStore", with_store),
        ("circuit breaker, Redis hung (SIGSTOP)", outage),
    ]


if __name__ == "__main__":
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not on the PATH"
    port = _port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(  # noqa: S603 (our own redis-server)
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            report = anyio.run(
                main, f"redis://127.0.0.1:{port}/0", server, backend="trio"
            )
        finally:
            server.kill()
            server.wait()
    print("\n".join(report))
    if "--out" in sys.argv:
        path = Path(sys.argv[sys.argv.index("--out") + 1])
        path.write_text("\n".join(report) + "\n")
