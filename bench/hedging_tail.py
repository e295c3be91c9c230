"""
Hedging against a slow tail, measured in virtual time (docs/hedging.md).

A simulated server answers in 40 to 60 ms, but 1 % of its requests,
picked at random (seeded), take ten times as long.  Calls arrive open
loop, one every 10 ms, and each call's latency is measured from its
arrival.  The same arrivals and the same per-request luck run without
hedging and with ``HedgingConfig()`` (the defaults: one hedge after the
recent p95, at most 5 % of calls).  Virtual time makes the run exact and
quick: it measures the policy's decisions, not this machine.

    python -m bench.hedging_tail [calls] [seed]
"""

from __future__ import annotations

import random
import sys

from typing import Any

import anyio

from resilient_mcp import HedgingConfig, LatencyHistogram, ResiliencePipeline
from resilient_mcp.testing import run_virtual


INTERVAL = 0.01  # seconds between arrivals (100 calls per second)
SLOW_SHARE = 0.01  # requests that are slow
SLOWDOWN = 10.0  # how much slower


def simulate(
    calls: int, hedging: HedgingConfig | None, seed: int = 1
) -> dict[str, Any]:
    """Run *calls* calls; their latency percentiles and extra requests."""
    rng = random.Random(seed)
    requests = 0
    latencies = LatencyHistogram()

    async def server() -> None:
        nonlocal requests
        requests += 1
        latency = rng.uniform(0.04, 0.06)
        if rng.random() < SLOW_SHARE:
            latency *= SLOWDOWN
        await anyio.sleep(latency)

    pipeline = ResiliencePipeline(hedging=hedging, name="tail")

    async def one() -> None:
        start = anyio.current_time()
        await pipeline.call(server)
        latencies.record(anyio.current_time() - start)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(calls):
                tasks.start_soon(one)
                await anyio.sleep(INTERVAL)

    run_virtual(main)
    result: dict[str, Any] = {
        f"p{p}": latencies.percentile(p) for p in (50, 99, 99.9)
    }
    result["max"] = latencies.max()
    result["extra"] = requests / calls - 1
    result["metrics"] = pipeline.metrics().hedging
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the table of docs/hedging.md."""
    args = sys.argv[1:] if argv is None else argv
    calls = int(args[0]) if args else 100_000
    seed = int(args[1]) if len(args) > 1 else 1
    plain = simulate(calls, None, seed)
    hedged = simulate(calls, HedgingConfig(), seed)
    print(f"{calls} calls, seed {seed}")
    print("| | p50 | p99 | p99.9 | max | extra requests |")
    print("|---|---|---|---|---|---|")
    for label, row in (("no hedging", plain), ("HedgingConfig()", hedged)):
        print(
            f"| {label} | {row['p50'] * 1000:.1f} ms "
            f"| {row['p99'] * 1000:.1f} ms | {row['p99.9'] * 1000:.1f} ms "
            f"| {row['max'] * 1000:.1f} ms | {row['extra']:.2%} |"
        )
    print(f"p99.9 improvement: {plain['p99.9'] / hedged['p99.9']:.1f}x")
    print(hedged["metrics"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
