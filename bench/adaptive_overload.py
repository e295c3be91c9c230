"""
The adaptive limit under a steady overload, in virtual time.

A simulated server with the flaky server's capacity model (5 requests at
full speed, 100 ms each; a request arriving with *n* in flight takes
``100 ms * max(1, n / 5)``, plus a seeded random 0 to 20 ms), called open
loop through a ``ResiliencePipeline`` with an adaptive bulkhead and
adaptive throttling, as ``bench/overload``'s adaptive configuration
calls the real one.  Latency counts from each call's intended start.
Two loads:

* ``3x``: 150 calls a second for 60 s to the 50-a-second server;
  goodput, p50 and p99 of the successes and the limit's range over the
  last 45 s.
* ``brownout``: 30 calls a second for 60 s, the server 10x slower from
  10 s to 40 s; the goodput while it is slow, and when the limit settles
  (stays within 25 % of where it ends) after each change.
* 3x for 10 minutes, minute by minute, with Vegas probing rarely (every
  1,000 x limit samples, a few minutes here): Netflix's probe, which
  takes the next sample, against a drain probe.

Virtual time makes it exact and quick: it measures the algorithms, not
this machine (``nox -s overload`` runs the real server).

    python -m bench.adaptive_overload
"""

from __future__ import annotations

import math
import random

from collections.abc import Sequence
from typing import Any, Final

import anyio

from resilient_mcp import (
    AdaptiveLimitConfig,
    BulkheadConfig,
    BulkheadError,
    LatencyHistogram,
    ResiliencePipeline,
    ThrottledError,
    ThrottlingConfig,
)
from resilient_mcp.testing import run_virtual

from .overload._summary import settling


CAPACITY: Final = 5
BASE: Final = 0.1
JITTER: Final = 0.02  # seconds of random extra latency, at most
SAMPLE_EVERY: Final = 0.1  # seconds between readings of the limit


def simulate(
    adaptive: AdaptiveLimitConfig | None,
    queue_size: int,
    *,
    rate: float,
    duration: float,
    slow: tuple[float, float] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """
    One open-loop run; every call's end, latency and success, and limits.

    *adaptive* ``None`` is a static bulkhead of 100; *slow* is when the
    server is 10x slower (from, until), in seconds from the start.
    """
    rng = random.Random(seed)
    ends: list[tuple[float, float, bool]] = []
    limits: list[tuple[float, int]] = []
    bulkhead = BulkheadConfig(
        queue_size=queue_size, request_timeout=15.0, adaptive=adaptive
    )
    if adaptive is None:
        bulkhead = BulkheadConfig(
            max_concurrent_requests=100,
            queue_size=queue_size,
            request_timeout=15.0,
        )
    pipeline = ResiliencePipeline(
        name="sim", bulkhead=bulkhead, throttling=ThrottlingConfig(seed=13)
    )
    in_flight = 0

    async def server(start: float) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            base = BASE
            now = anyio.current_time() - start
            if slow is not None and slow[0] <= now < slow[1]:
                base *= 10
            delay = base * max(1.0, in_flight / CAPACITY)
            await anyio.sleep(delay + rng.uniform(0.0, JITTER))
        finally:
            in_flight -= 1

    async def one(start: float, intended: float) -> None:
        ok = True
        try:
            await pipeline.call(server, start)
        except (BulkheadError, ThrottledError):
            ok = False
        now = anyio.current_time()
        ends.append((now - start, now - intended, ok))

    async def watch(start: float) -> None:
        while (now := anyio.current_time() - start) < duration:
            assert pipeline.bulkhead is not None
            limits.append((now, pipeline.bulkhead.metrics().limit))
            await anyio.sleep(SAMPLE_EVERY)

    async def main() -> None:
        start = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch, start)
            for i in range(int(duration * rate)):
                intended = start + i / rate
                await anyio.sleep(intended - anyio.current_time())
                tasks.start_soon(one, start, intended)

    run_virtual(main)
    return {"ends": ends, "limits": limits}


def window(run: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """Goodput, p50 and p99 of the successes, the limit's range."""
    latencies = LatencyHistogram()
    good = 0
    for when, latency, ok in run["ends"]:
        if ok and start <= when < end:
            good += 1
            latencies.record(latency)
    limits = [limit for t, limit in run["limits"] if start <= t < end]
    return {
        "goodput": good / (end - start),
        "p50": latencies.percentile(50) if good else math.nan,
        "p99": latencies.percentile(99) if good else math.nan,
        "limits": (min(limits), max(limits)),
    }


def _limit(**kwargs: Any) -> AdaptiveLimitConfig:
    # Every call a sample, as in bench/overload (docs/overload.md).
    return AdaptiveLimitConfig(
        max_limit=100, window_size=None, seed=7, **kwargs
    )


RARE_PROBES: Final = (
    "vegas, probe every 1,000 x limit, none waiting",
    _limit(algorithm="vegas", vegas_probe_multiplier=1000),
    0,
)
"""Vegas with Netflix's probe (the next sample), made rare."""

RARE_DRAINS: Final = (
    "vegas, drain probe every 1,000 x limit, none waiting",
    _limit(
        algorithm="vegas", vegas_probe="drain", vegas_probe_multiplier=1000
    ),
    0,
)
"""The configuration of bench/overload's adaptive client."""

CONFIGS: Final[Sequence[tuple[str, AdaptiveLimitConfig | None, int]]] = (
    ("static: 100 running, 20 waiting", None, 20),
    ("gradient2 (defaults), 20 waiting", _limit(), 20),
    ("gradient2 (defaults), none waiting", _limit(), 0),
    ("vegas (defaults), 20 waiting", _limit(algorithm="vegas"), 20),
    ("vegas (defaults), none waiting", _limit(algorithm="vegas"), 0),
    RARE_PROBES,
    RARE_DRAINS,
    ("aimd (defaults), none waiting", _limit(algorithm="aimd"), 0),
)
"""The configurations compared: label, adaptive limit, queue size."""


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main() -> int:
    """Print the tables of docs/adaptive-concurrency.md."""
    quiet = simulate(_limit(), 0, rate=25.0, duration=30.0)
    print(
        "uncontended (25 calls/s, 30 s): p99 "
        + _ms(window(quiet, 5.0, 30.0)["p99"])
    )
    print("3x overload: 150 calls/s for 60 s, steady = the last 45 s")
    print("| configuration | goodput | p50 | p99 | limit |")
    print("|---|---|---|---|---|")
    for label, config, queue in CONFIGS:
        run = simulate(config, queue, rate=150.0, duration=60.0)
        w = window(run, 15.0, 60.0)
        low, high = w["limits"]
        print(
            f"| {label} | {w['goodput']:.1f}/s | {_ms(w['p50'])} "
            f"| {_ms(w['p99'])} | {low}-{high} |"
        )
    print()
    print("brownout: 30 calls/s for 60 s, 10x slower from 10 s to 40 s")
    print(
        "| configuration | goodput while slow | limit while slow "
        "| settles after the slowdown | settles after the recovery |"
    )
    print("|---|---|---|---|---|")
    for label, config, queue in CONFIGS[1:]:
        run = simulate(
            config,
            queue,
            rate=30.0,
            duration=60.0,
            slow=(10.0, 40.0),
        )
        w = window(run, 10.0, 40.0)
        low, high = w["limits"]
        print(
            f"| {label} | {w['goodput']:.1f}/s | {low}-{high} "
            f"| {_secs(settling(run['limits'], 10.0, 40.0)[1])} "
            f"| {_secs(settling(run['limits'], 40.0, 60.0)[1])} |"
        )
    print()
    runs = [
        (simulate(c, q, rate=150.0, duration=600.0), c.vegas_probe)
        for _, c, q in (RARE_PROBES, RARE_DRAINS)
    ]
    print("3x overload for 10 minutes, minute by minute: rare probes")
    print(
        "| minute | "
        + " | ".join(f"{label}: goodput, p99, limit" for _, label in runs)
        + " |"
    )
    print("|---|" + "---|" * len(runs))
    for minute in range(10):
        cells = []
        for run, _ in runs:
            w = window(run, minute * 60.0, minute * 60.0 + 60.0)
            low, high = w["limits"]
            cells.append(
                f"{w['goodput']:.1f}/s, {_ms(w['p99'])}, {low}-{high}"
            )
        print(f"| {minute + 1} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
