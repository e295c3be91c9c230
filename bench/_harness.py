"""
The harness: variants, interleaved rounds, and pairwise ratios.

A *variant* is a zero-argument async callable that does one call of the
thing under test (``await breaker.call(op)``, say).  A *factory* makes it
inside the running event loop, and may enter async context managers on the
:class:`~contextlib.AsyncExitStack` it is given (an MCP ``Client``).

A :class:`Comparison` groups a floor with the variants measured against it.
Because the machines are shared and noisy, its arms run in the same
process, after a warm-up, in small rounds: each round runs every arm for a
few thousand calls, in an order shuffled per round, so that a burst of
load from another process hits every arm about equally.  Ratios are
computed pair by pair within each round (this round's median over this
round's floor median) and the median of those per-round ratios is
reported, which cancels most of the drift between rounds.

Every call is timed with :func:`time.perf_counter_ns` around the ``await``.
The cost of the timing itself (two clock reads with nothing between them)
is measured before each comparison and subtracted from every sample, so a
bare ``await noop()`` reads tens of nanoseconds, not a hundred.  The
samples go, in nanoseconds, into one HdrHistogram per arm and round; those
become the ``.hlog`` files.
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import inspect
import math
import pstats
import random
import re
import statistics
import time
import zlib

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final

import anyio
import attrs
import trio

from resilient_mcp import LatencyHistogram
from resilient_mcp._metrics import merge_histograms

from ._machine import LoadMeter, LoadSample


Variant = Callable[[], Awaitable[object]]
Factory = Callable[[AsyncExitStack], Variant | Awaitable[Variant]]

HIGHEST_NS: Final = 100_000_000_000  # nanoseconds: 100 s, far above a call
SIGNIFICANT_FIGURES: Final = 3  # decimal digits, as the library records
TIMER_SAMPLES: Final = 20_000  # clock-pair samples to calibrate the timer
BACKENDS: Final = ("trio", "asyncio")


class UnsupportedError(Exception):
    """A factory cannot build its variant on this backend; says why."""


@attrs.frozen(kw_only=True)
class Arm:
    """One variant of a comparison."""

    label: str
    factory: Factory
    kind: str = "ours"  # "floor", "ours", "peer" or "stack"
    baseline: str | None = None  # label of the arm to divide by
    note: str = ""


@attrs.frozen(kw_only=True)
class Comparison:
    """Arms measured together, interleaved, against a floor."""

    id: str  # also the .hlog file name
    title: str
    backend: str  # "trio" or "asyncio"
    floor: str  # label of the default baseline arm
    arms: tuple[Arm, ...]
    calls: int  # calls per arm per round
    rounds: int
    warmup_rounds: int = 1
    note: str = ""
    # How an asyncio comparison starts its loop: "anyio" (``anyio.run``,
    # which sets sniffio's context variable, so anyio finds its backend
    # at once) or "asyncio" (plain ``asyncio.run``, as most asyncio
    # applications start).  Ignored on trio.
    runner: str = "anyio"

    def baseline_of(self, arm: Arm) -> str:
        return arm.baseline or self.floor

    @property
    def where(self) -> str:
        """The backend as the report names it: ``asyncio under anyio.run``."""
        if self.backend == "trio":
            return "trio"
        return f"asyncio under {self.runner}.run"


@attrs.define(eq=False)
class ArmResult:
    """What one arm measured, net of the timer overhead."""

    arm: Arm
    baseline: str
    error: str | None = None
    round_medians: list[float] = attrs.field(factory=list)
    round_p99s: list[float] = attrs.field(factory=list)
    # Each round's histogram, encoded: a decoded one holds 240 KiB of
    # counters, and a run has thousands of rounds.
    round_payloads: list[str] = attrs.field(factory=list)
    round_spans: list[tuple[float, float]] = attrs.field(factory=list)
    # Filled in by pairing with the baseline:
    ratios: list[float] = attrs.field(factory=list)
    p99_ratios: list[float] = attrs.field(factory=list)
    added: list[float] = attrs.field(factory=list)

    @property
    def label(self) -> str:
        return self.arm.label

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.round_payloads)

    def round_histograms(self) -> Iterator[LatencyHistogram]:
        for payload in self.round_payloads:
            yield LatencyHistogram.decode(payload)

    def histogram(self) -> LatencyHistogram:
        return merge_histograms(self.round_histograms())

    @property
    def median_ns(self) -> float:
        return statistics.median(self.round_medians)

    @property
    def p99_ns(self) -> float:
        return float(self.histogram().value_at_percentile(99.0))

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else math.nan

    @property
    def ratio_range(self) -> tuple[float, float]:
        if len(self.ratios) < 4:
            return (min(self.ratios, default=math.nan),) * 2
        q1, _, q3 = statistics.quantiles(self.ratios, n=4)
        return q1, q3

    @property
    def p99_ratio(self) -> float:
        return statistics.median(self.p99_ratios) if self.p99_ratios else 0.0

    @property
    def added_ns(self) -> float:
        return statistics.median(self.added) if self.added else math.nan


@attrs.define(eq=False)
class ComparisonResult:
    """Every arm of a comparison, plus the conditions it ran in."""

    comparison: Comparison
    arms: list[ArmResult]
    timer_ns: float
    wall_s: float
    load: LoadSample
    started_at: float  # wall-clock seconds since the epoch

    def arm(self, label: str) -> ArmResult:
        for result in self.arms:
            if result.label == label:
                return result
        raise KeyError(f"{self.comparison.id} has no arm {label!r}")


def new_histogram() -> LatencyHistogram:
    # LatencyHistogram's fields are named for microseconds, the library's
    # unit; the histogram itself is unit-free, and here it holds ns.
    return LatencyHistogram(
        lowest_us=1,
        highest_us=HIGHEST_NS,
        significant_figures=SIGNIFICANT_FIGURES,
    )


def calibrate_timer(samples: int = TIMER_SAMPLES) -> float:
    """The median cost of the timing itself: two back-to-back clock reads."""
    clock = time.perf_counter_ns
    gaps = [0] * samples
    for i in range(samples):
        start = clock()
        gaps[i] = clock() - start
    return statistics.median(gaps)


async def time_calls(variant: Variant, calls: int) -> list[int]:
    """Await *variant* *calls* times; return each call's raw nanoseconds."""
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        await variant()
        samples[i] = clock() - start
    return samples


def _summarize(samples: list[int], overhead: float) -> tuple[float, float]:
    """The median and p99 of *samples*, net of *overhead*."""
    ordered = sorted(samples)
    count = len(ordered)
    median = statistics.median(ordered) - overhead
    p99 = ordered[min(count - 1, math.ceil(0.99 * count) - 1)] - overhead
    return max(median, 0.0), max(p99, 0.0)


def _histogram(samples: list[int], overhead: int) -> LatencyHistogram:
    hist = new_histogram()
    for value, count in collections.Counter(samples).items():
        hist.record_us(max(value - overhead, 0), count)
    return hist


def describe(exc: BaseException) -> str:
    """An exception as ``module.Type: message``, for the report."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, UnsupportedError):
        return str(exc)
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in {"builtins", "__main__"}:
        name = f"{kind.__module__}.{name}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{name}: {message}" if message else name


def run_on(
    backend: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    runner: str = "anyio",
) -> Any:
    """
    Run ``fn(*args)`` on a fresh event loop of *backend*.

    On asyncio, *runner* ``"asyncio"`` starts the loop with plain
    :func:`asyncio.run`, and ``"anyio"`` with :func:`anyio.run`.
    """
    if backend == "trio":
        return trio.run(fn, *args)
    if runner == "asyncio":
        return asyncio.run(fn(*args))
    return anyio.run(fn, *args, backend="asyncio")


async def _build(
    comparison: Comparison, stack: AsyncExitStack
) -> tuple[dict[str, Variant], list[ArmResult]]:
    variants: dict[str, Variant] = {}
    results = []
    for arm in comparison.arms:
        result = ArmResult(arm=arm, baseline=comparison.baseline_of(arm))
        results.append(result)
        try:
            made = arm.factory(stack)
            variant = await made if inspect.isawaitable(made) else made
            # One call first: a peer that cannot run here fails now.
            await variant()
        except Exception as exc:
            result.error = describe(exc)
            continue
        variants[arm.label] = variant
    return variants, results


async def _run_rounds(
    comparison: Comparison, overhead: float, seed: int
) -> list[ArmResult]:
    async with AsyncExitStack() as stack:
        variants, results = await _build(comparison, stack)
        by_label = {r.label: r for r in results}
        rng = random.Random(seed ^ zlib.crc32(comparison.id.encode()))
        labels = list(variants)
        gc.collect()
        for _ in range(comparison.warmup_rounds):
            for label in labels:
                await time_calls(variants[label], comparison.calls)
        clock = time.perf_counter
        origin = clock()
        cutoff = round(overhead)
        for _ in range(comparison.rounds):
            rng.shuffle(labels)
            for label in tuple(labels):
                result = by_label[label]
                start = clock() - origin
                try:
                    samples = await time_calls(
                        variants[label], comparison.calls
                    )
                except Exception as exc:
                    # Rounds must line up across arms to be paired, so a
                    # variant that breaks halfway is dropped altogether.
                    result.error = f"failed while measured: {describe(exc)}"
                    result.round_payloads.clear()
                    labels.remove(label)
                    continue
                # Let the scheduler run between rounds, outside the timed
                # region: trio drops the stale entries that exited cancel
                # scopes leave in its deadline heap only when it runs.
                await anyio.lowlevel.checkpoint()
                median, p99 = _summarize(samples, overhead)
                result.round_medians.append(median)
                result.round_p99s.append(p99)
                result.round_payloads.append(
                    _histogram(samples, cutoff).encode()
                )
                result.round_spans.append((start, clock() - origin - start))
    return results


def _pair(comparison: Comparison, results: list[ArmResult]) -> None:
    """Per-round ratios and differences of each arm to its baseline."""
    by_label = {r.label: r for r in results}
    for result in results:
        base = by_label.get(result.baseline)
        if base is None:
            raise KeyError(
                f"{comparison.id}: baseline {result.baseline!r} is no arm"
            )
        if not (result.ok and base.ok):
            continue
        pairs = zip(result.round_medians, base.round_medians, strict=False)
        for mine, floor in pairs:
            result.ratios.append(mine / floor if floor > 0 else math.nan)
            result.added.append(mine - floor)
        p99s = zip(result.round_p99s, base.round_p99s, strict=False)
        result.p99_ratios.extend(
            mine / floor if floor > 0 else math.nan for mine, floor in p99s
        )


def run_comparison(comparison: Comparison, seed: int) -> ComparisonResult:
    """Run every arm of *comparison*, interleaved, on its backend."""
    overhead = calibrate_timer()
    meter = LoadMeter.start()
    started = time.time()
    wall = time.perf_counter()
    results = run_on(
        comparison.backend,
        _run_rounds,
        comparison,
        overhead,
        seed,
        runner=comparison.runner,
    )
    wall = time.perf_counter() - wall
    _pair(comparison, results)
    return ComparisonResult(
        comparison=comparison,
        arms=results,
        timer_ns=overhead,
        wall_s=wall,
        load=meter.stop(),
        started_at=started,
    )


@attrs.frozen(kw_only=True)
class HotSpot:
    """One function's extra time in a variant, over its baseline's."""

    function: str
    calls_per_call: float  # how often it runs per variant call
    extra_us: float  # own time per call, minus the baseline's (profiled)
    share: float  # of the variant's whole extra time


@attrs.frozen(kw_only=True)
class Profile:
    """Where a variant spends the time its baseline does not."""

    label: str
    baseline: str
    total_us: float  # per call, under cProfile
    baseline_us: float
    spots: tuple[HotSpot, ...]
    packages: tuple[tuple[str, float], ...]  # (package, share of extra)


def _package(name: str) -> str:
    if name.startswith("<"):
        return "builtins (C)"
    head = name.split(":", 1)[0]
    if "/" not in head:
        return "bench"
    return head.split("/", 1)[0]


_SKIP: Final = ("time_calls", "_profiled", "_lsprof.Profiler")

_Table = dict[tuple[str, int, str], tuple[int, float]]


def _name(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    for marker in ("site-packages/", "src/", "bench/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = re.sub(r"^.*/lib/python3\.\d+/", "stdlib/", path)
    return f"{path}:{line}({name})"


async def _profiled(
    comparison: Comparison, labels: tuple[str, ...], calls: int
) -> list[_Table]:
    tables = []
    async with AsyncExitStack() as stack:
        for label in labels:
            arm = next(a for a in comparison.arms if a.label == label)
            made = arm.factory(stack)
            variant = await made if inspect.isawaitable(made) else made
            await time_calls(variant, calls // 10 + 1)
            profile = cProfile.Profile()
            profile.enable()
            await time_calls(variant, calls)
            profile.disable()
            stats: Any = pstats.Stats(profile)
            tables.append(
                {
                    func: (ncalls, tottime)
                    for func, (_, ncalls, tottime, _, _) in stats.stats.items()
                    if not any(skip in _name(func) for skip in _SKIP)
                }
            )
    return tables


def profile_arm(
    comparison: Comparison,
    label: str,
    calls: int,
    top: int = 8,
    against: str | None = None,
) -> Profile:
    """
    Profile an arm and its baseline with cProfile; list what differs.

    Both run *calls* times in one event loop.  Each function's own time
    per call in the baseline is subtracted from its own time per call in
    the arm, so what is left is the time the arm adds, and where.
    *against* profiles another arm as the baseline instead of the arm's
    own (an MCP client against the minimal client by hand, say).
    cProfile slows every Python call down by roughly the same amount, so
    the times are inflated; the shares are what to read.
    """
    arm = next(a for a in comparison.arms if a.label == label)
    baseline = against or comparison.baseline_of(arm)
    mine, base = run_on(
        comparison.backend,
        _profiled,
        comparison,
        (label, baseline),
        calls,
        runner=comparison.runner,
    )
    extra = {}
    for func, (ncalls, tottime) in mine.items():
        delta = (tottime - base.get(func, (0, 0.0))[1]) / calls
        if delta > 0:
            extra[func] = (ncalls / calls, delta)
    total_extra = sum(delta for _, delta in extra.values()) or 1.0
    rows = sorted(extra.items(), key=lambda item: item[1][1], reverse=True)
    packages: dict[str, float] = {}
    for func, (_, delta) in extra.items():
        package = _package(_name(func))
        packages[package] = packages.get(package, 0.0) + delta / total_extra
    return Profile(
        label=label,
        baseline=baseline,
        total_us=sum(t for _, t in mine.values()) / calls * 1e6,
        baseline_us=sum(t for _, t in base.values()) / calls * 1e6,
        spots=tuple(
            HotSpot(
                function=_name(func),
                calls_per_call=per_call,
                extra_us=delta * 1e6,
                share=delta / total_extra,
            )
            for func, (per_call, delta) in rows[:top]
        ),
        packages=tuple(
            sorted(packages.items(), key=lambda item: item[1], reverse=True)
        ),
    )


def arms(*items: Arm | Sequence[Arm] | None) -> tuple[Arm, ...]:
    """Flatten arms and lists of arms, skipping ``None``."""
    flat: list[Arm] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, Arm):
            flat.append(item)
        else:
            flat.extend(item)
    return tuple(flat)
