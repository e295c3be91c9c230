"""
Scale: memory and time per caller, per tool, and over a million calls.

These are not interleaved microbenchmarks but whole-population
measurements:

* **Queued callers.**  N callers wait on one bulkhead whose only slot is
  taken, against N callers waiting on a bare ``CapacityLimiter``.
  ``tracemalloc`` counts the bytes the waiting callers hold (their tasks
  included, which both sides pay); then the slot is freed and the time to
  drain the queue is divided by N.  The drains run in pairs, ours then
  bare then ours..., and the ratio is taken per pair.
* **Many tools.**  10,000 tool names, each with its own circuit breaker
  (in a :class:`~resilient_mcp._registry.BoundedRegistry`) and its own key
  in a :class:`~resilient_mcp.LatencyRecorder`, each with a few latencies
  recorded: total bytes, and what each part costs per tool.
* **A million calls.**  The full pipeline, with recording, a million
  times after a warm-up; the resident set size and the number of objects
  the garbage collector tracks, before and after, must not grow.
* **Open-circuit rejections.**  One open breaker rejecting 100,000 calls
  in a row: the last thousand must cost what the first thousand did.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc

from collections.abc import Callable
from typing import Any, Final

import anyio
import attrs
import trio
import trio.testing

from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    CircuitBreaker,
    LatencyHistogram,
    LatencyRecorder,
)
from resilient_mcp._registry import BoundedRegistry

from ._floors import Kit, noop
from ._harness import Variant, run_on, time_calls
from ._machine import LoadMeter, LoadSample, rss_bytes
from ._ours import open_breaker, recorded


MIB: Final = 1024 * 1024
TOOLS_LIMIT: Final = 64 * MIB  # bytes, the target for 10,000 tools


@attrs.frozen(kw_only=True)
class Measurement:
    """A table for the report, plus named numbers for the targets."""

    id: str
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    values: dict[str, float]
    load: LoadSample
    note: str = ""


def _mib(size: float) -> str:
    return f"{size / MIB:,.1f} MiB"


# -- queued callers ------------------------------------------------------


async def _wait_blocked(backend: str) -> None:
    if backend == "trio":
        await trio.testing.wait_all_tasks_blocked()
    else:
        await anyio.wait_all_tasks_blocked()


async def _queue(backend: str, kind: str, callers: int) -> tuple[int, float]:
    """Bytes held by *callers* waiting callers, and the drain time."""
    gate = anyio.Event()
    if kind == "ours":
        bulkhead = Bulkhead(
            BulkheadConfig(
                name="queue",
                max_concurrent_requests=1,
                queue_size=callers,
                request_timeout=None,
            )
        )

        async def hold() -> None:
            await bulkhead.call(gate.wait)

        async def caller() -> None:
            await bulkhead.call(noop)

    else:
        limiter = Kit.for_backend(backend).limiter(1)

        async def hold() -> None:
            async with limiter:
                await gate.wait()

        async def caller() -> None:
            async with limiter:
                await noop()

    async with anyio.create_task_group() as group:
        group.start_soon(hold)
        await _wait_blocked(backend)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(callers):
            group.start_soon(caller)
        await _wait_blocked(backend)
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        start = time.perf_counter()
        gate.set()
    return held, time.perf_counter() - start


def queued_callers(backend: str, callers: int, pairs: int) -> Measurement:
    meter = LoadMeter.start()
    held: dict[str, list[int]] = {"ours": [], "bare": []}
    drains: dict[str, list[float]] = {"ours": [], "bare": []}
    for _ in range(pairs):
        for kind in ("ours", "bare"):
            size, drain = run_on(backend, _queue, backend, kind, callers)
            held[kind].append(size)
            drains[kind].append(drain)
    memory_ratios = [
        a / b for a, b in zip(held["ours"], held["bare"], strict=True)
    ]
    drain_ratios = [
        a / b for a, b in zip(drains["ours"], drains["bare"], strict=True)
    ]
    per_ours = statistics.median(held["ours"]) / callers
    per_bare = statistics.median(held["bare"]) / callers
    drain_ours = statistics.median(drains["ours"]) / callers
    drain_bare = statistics.median(drains["bare"]) / callers
    limiter = "trio" if backend == "trio" else "anyio"
    return Measurement(
        id=f"queue-{backend}",
        title=f"{callers:,} callers queued on one bulkhead ({backend})",
        headers=("", "bytes per waiting caller", "drain time per call"),
        rows=(
            ("Bulkhead (ours)", f"{per_ours:,.0f}", _us(drain_ours)),
            (
                f"bare {limiter}.CapacityLimiter",
                f"{per_bare:,.0f}",
                _us(drain_bare),
            ),
            (
                "ratio (median of pairs)",
                f"{statistics.median(memory_ratios):.2f}x",
                f"{statistics.median(drain_ratios):.2f}x",
            ),
        ),
        values={
            "memory_ratio": statistics.median(memory_ratios),
            "drain_ratio": statistics.median(drain_ratios),
            "bytes_ours": per_ours,
            "bytes_bare": per_bare,
            "drain_ours_s": drain_ours,
            "drain_bare_s": drain_bare,
        },
        load=meter.stop(),
        note=(
            f"One slot, held; {callers:,} callers spawned and blocked; "
            f"bytes from tracemalloc (the callers' tasks included); "
            f"{pairs} pair(s) of runs, each on a fresh event loop."
        ),
    )


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f} us"


# -- many tools ----------------------------------------------------------


CALLS_PER_TOOL: Final = 20  # latencies recorded per tool
TOOL_LATENCY_SEED: Final = 20261128  # the latencies are the same every run
TOOL_DIGITS: Final = 2  # the MCP client's per-tool histograms
FULL_HISTOGRAMS: Final = 100  # dense histograms measured (each 184 KiB)


def _latencies(tools: int) -> list[float]:
    """
    CALLS_PER_TOOL latencies per tool, log-normal around 5 ms.

    A tool's calls spread over a decade or so of latency, so each tool's
    histogram holds about as many buckets as it has values: what a tool
    that has served a few calls holds, not an empty histogram.
    """
    rng = random.Random(TOOL_LATENCY_SEED)
    return [
        rng.lognormvariate(-5.3, 1.0) for _ in range(tools * CALLS_PER_TOOL)
    ]


def _fill(
    tools: int, build: Callable[[list[str], list[float]], Any]
) -> tuple[int, int]:
    """Bytes (tracemalloc, RSS) of what *build* holds for *tools* keys."""
    keys = [f"tools/call:tool-{i:05d}" for i in range(tools)]
    latencies = _latencies(tools)
    gc.collect()
    rss = rss_bytes()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held = build(keys, latencies)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss = rss_bytes() - rss
    del held
    gc.collect()
    return traced, rss


def _recorder_and_breakers(
    digits: int,
) -> Callable[[list[str], list[float]], Any]:
    def build(keys: list[str], latencies: list[float]) -> Any:
        recorder = LatencyRecorder(
            max_keys=len(keys), significant_figures=digits
        )
        breakers: BoundedRegistry[str, CircuitBreaker] = BoundedRegistry(
            lambda key: CircuitBreaker(name=key), max_size=len(keys)
        )
        record = recorder.record
        for i, key in enumerate(keys):
            breakers.get(key)
            for seconds in latencies[
                i * CALLS_PER_TOOL : (i + 1) * CALLS_PER_TOOL
            ]:
                record(key, seconds)
        assert len(recorder.keys()) == len(breakers) == len(keys)
        return recorder, breakers

    return build


def _breakers_only(keys: list[str], _latencies: list[float]) -> Any:
    breakers: BoundedRegistry[str, CircuitBreaker] = BoundedRegistry(
        lambda key: CircuitBreaker(name=key), max_size=len(keys)
    )
    for key in keys:
        breakers.get(key)
    return breakers


def _empty_histograms(keys: list[str], _latencies: list[float]) -> Any:
    return [LatencyHistogram() for _ in keys]


def _full_histograms(keys: list[str], _latencies: list[float]) -> Any:
    # 1 to 4 ms, every microsecond: about 2,500 buckets, past the sparse
    # limit, so these hold the dense array (what a busy tool with a wide
    # spread of latencies ends up with).
    histograms = [LatencyHistogram() for _ in keys[:FULL_HISTOGRAMS]]
    for histogram in histograms:
        for us in range(1000, 4000):
            histogram.record_us(us)
    return histograms


def many_tools(tools: int) -> Measurement:
    meter = LoadMeter.start()
    rows = []
    values: dict[str, float] = {}
    recorded = f"{CALLS_PER_TOOL} calls each"
    variants: tuple[tuple[str, Callable[..., Any], int], ...] = (
        (
            f"LatencyRecorder key + CircuitBreaker per tool, {recorded}",
            _recorder_and_breakers(3),
            tools,
        ),
        (
            f"the same at {TOOL_DIGITS} digits (the MCP client's)",
            _recorder_and_breakers(TOOL_DIGITS),
            tools,
        ),
        ("CircuitBreaker only", _breakers_only, tools),
        ("LatencyHistogram() only, empty", _empty_histograms, tools),
        (
            "LatencyHistogram() with 3,000 distinct values (dense)",
            _full_histograms,
            min(tools, FULL_HISTOGRAMS),
        ),
    )
    for i, (label, build, count) in enumerate(variants):
        traced, rss = _fill(tools, build)
        rows.append(
            (
                label,
                _mib(traced),
                f"{traced / count:,.0f}",
                _mib(rss) if i == 0 else "",
            )
        )
        values[f"bytes_{i}"] = traced
        if i == 0:
            values["rss"] = rss
    return Measurement(
        id="tools",
        title=f"{tools:,} tools, each with its own breaker and histogram",
        headers=("per tool", "total (tracemalloc)", "bytes per tool", "RSS"),
        rows=tuple(rows),
        values=values,
        load=meter.stop(),
        note=(
            f"A LatencyRecorder(max_keys={tools:,}) with a key per tool and "
            f"a BoundedRegistry of breakers; each tool records "
            f"{CALLS_PER_TOOL} latencies (log-normal around 5 ms, fixed "
            "seed).  tracemalloc counts every allocation, the histograms' "
            "counters included (and the one dense template each histogram "
            "layout shares, once); RSS is shown for the first row only "
            "(later rows reuse memory freed by earlier ones)."
        ),
    )


# -- a million calls -----------------------------------------------------


async def _traced(variant: Variant, calls: int) -> tuple[int, int]:
    """Bytes still held after *calls* calls, before and after yielding."""
    for _ in range(100):  # the recorder allocates its histogram on first use
        await variant()
    await anyio.lowlevel.checkpoint()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(calls):
        await variant()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    await anyio.lowlevel.checkpoint()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, after


async def _million(
    backend: str, calls: int, warmup: int, samples: int
) -> dict[str, Any]:
    checkpoint = Kit.for_backend(backend).checkpoint

    async def op() -> None:
        # A real call yields to the event loop, at least once.
        await checkpoint()

    variant = recorded(op)
    for _ in range(warmup):
        await variant()
    gc.collect()
    rss_before = rss_bytes()
    objects_before = len(gc.get_objects())
    trend = []
    step = max(calls // samples, 1)
    start = time.perf_counter()
    done = 0
    while done < calls:
        batch = min(step, calls - done)
        for _ in range(batch):
            await variant()
        done += batch
        trend.append(rss_bytes())
    elapsed = time.perf_counter() - start
    gc.collect()
    rss_after = rss_bytes()
    objects_after = len(gc.get_objects())
    traced, _ = await _traced(variant, 10_000)
    no_yield = recorded()
    held, released = await _traced(no_yield, 10_000)
    return {
        "elapsed": elapsed,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_max": max(trend, default=rss_after),
        "objects_before": objects_before,
        "objects_after": objects_after,
        "traced_growth": traced,
        "no_yield_held": held,
        "no_yield_released": released,
    }


def million_calls(backend: str, calls: int, warmup: int) -> Measurement:
    meter = LoadMeter.start()
    found = run_on(backend, _million, backend, calls, warmup, 20)
    growth = found["rss_after"] - found["rss_before"]
    objects = found["objects_after"] - found["objects_before"]
    return Measurement(
        id=f"million-{backend}",
        title=(
            f"{calls:,} calls through the full pipeline + recording "
            f"({backend})"
        ),
        headers=("", "before", "after", "growth"),
        rows=(
            (
                "RSS",
                _mib(found["rss_before"]),
                _mib(found["rss_after"]),
                f"{growth / 1024:+,.0f} KiB (peak {_mib(found['rss_max'])})",
            ),
            (
                "objects tracked by gc",
                f"{found['objects_before']:,}",
                f"{found['objects_after']:,}",
                f"{objects:+,}",
            ),
            (
                "tracemalloc over 10,000 more calls",
                "",
                "",
                f"{found['traced_growth']:+,} bytes",
            ),
            (
                "same, with an operation that never yields",
                "",
                f"{found['no_yield_released']:+,} bytes once it yields",
                f"{found['no_yield_held']:+,} bytes until it yields",
            ),
            (
                "time per call (incl. loop)",
                "",
                "",
                _us(found["elapsed"] / calls),
            ),
        ),
        values={
            "rss_growth": growth,
            "objects_growth": objects,
            "traced_growth": found["traced_growth"],
        },
        load=meter.stop(),
        note=(
            f"After {warmup:,} warm-up calls; gc.collect() before each "
            "reading.  The operation checkpoints once, as every real call "
            "yields to the event loop.  The last row runs a no-op that "
            "never yields: trio keeps each exited deadline scope in its "
            "deadline heap (about 240 bytes with its entry) until the task "
            "next yields to the scheduler, so memory grows until then, and "
            "is freed at once when it does."
        ),
    )


# -- open-circuit rejections ---------------------------------------------


async def _rejections(
    count: int, window: int, rounds: int
) -> tuple[list[int], list[float]]:
    worn = await open_breaker()
    trend = await time_calls(worn, count)
    fresh = await open_breaker()
    ratios = []
    for i in range(rounds):
        medians = {}
        for variant in (worn, fresh) if i % 2 else (fresh, worn):
            medians[variant] = statistics.median(
                await time_calls(variant, window // rounds)
            )
        ratios.append(medians[worn] / medians[fresh])
    return trend, ratios


def open_constancy(backend: str, count: int, window: int) -> Measurement:
    """
    Does the *count*-th rejection cost what the first ones did?

    One breaker rejects *count* calls in a row (timed, in order); then it
    and a freshly opened breaker take turns, a few calls each, so that the
    ratio of their medians is taken under the same machine conditions.
    """
    meter = LoadMeter.start()
    rounds = 20
    samples, ratios = run_on(backend, _rejections, count, window, rounds)
    first = statistics.median(samples[:window])
    last = statistics.median(samples[-window:])
    ratio = statistics.median(ratios)
    low, _, high = statistics.quantiles(ratios, n=4)
    return Measurement(
        id=f"open-{backend}",
        title=f"{count:,} rejections by one open breaker ({backend})",
        headers=("rejections", "median", "p99"),
        rows=(
            (f"first {window:,}", _ns(first), _ns(_p99(samples[:window]))),
            (
                f"last {window:,}",
                _ns(last),
                _ns(_p99(samples[-window:])),
            ),
            (
                f"after {count:,} / a fresh breaker, interleaved",
                f"{ratio:.2f}x (IQR {low:.2f}-{high:.2f})",
                "",
            ),
        ),
        values={"first": first, "last": last, "ratio": ratio},
        load=meter.stop(),
        note=(
            "Raw timings (timer overhead included).  The first two rows "
            "are in call order, so a change in the machine's speed between "
            "the start and the end shows up in them; the last row pairs "
            f"the worn breaker with a fresh one in {rounds} alternating "
            "rounds, and is what the target is judged on."
        ),
    )


def _p99(samples: list[int]) -> float:
    ordered = sorted(samples)
    return float(ordered[int(0.99 * (len(ordered) - 1))])


def _ns(value: float) -> str:
    return f"{value:,.0f} ns"
