"""
The targets of issue 5, each checked against this run's numbers.

Speed targets are judged on trio, as ratios measured in this run (the
median of the per-round ratios), or as nanoseconds added over a bare
``await`` where the target is absolute.  A quick run checks that the
benchmarks run, never their speed: its targets read "not judged".
"""

from __future__ import annotations

import math
import statistics

from collections.abc import Callable
from typing import Final

import attrs

from . import _mcp as mcp
from . import _ours as ours
from ._harness import ArmResult, ComparisonResult
from ._scale import TOOLS_LIMIT, Measurement


MET: Final = "met"
MISSED: Final = "**missed**"
UNJUDGED: Final = "not judged"
NOT_RUN: Final = "not run"


@attrs.frozen(kw_only=True)
class Verdict:
    """One target: what it asks, what we measured, met or missed."""

    name: str
    limit: str
    measured: str
    status: str
    by: str = ""  # how far off, when missed
    profile: tuple[str, str] | None = None  # (comparison id, arm label)


@attrs.define
class _Lookup:
    comparisons: dict[str, ComparisonResult]
    measurements: dict[str, Measurement]

    def arm(self, comparison: str, label: str) -> ArmResult | None:
        found = self.comparisons.get(comparison)
        if found is None:
            return None
        try:
            result = found.arm(label)
        except KeyError:
            return None
        return result if result.ok else None


def _ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.2f} us"
    return f"{value:.0f} ns"


def _status(ok: bool, quick: bool) -> str:
    if quick:
        return UNJUDGED
    return MET if ok else MISSED


def _ratio_target(
    lookup: _Lookup,
    quick: bool,
    *,
    name: str,
    comparison: str,
    label: str,
    limit: float,
    stretch: float | None = None,
    p99: bool = False,
) -> Verdict:
    result = lookup.arm(comparison, label)
    text = f"<= {limit:.2f}x"
    if stretch is not None:
        text += f" (stretch {stretch:.2f}x)"
    if result is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    value = result.p99_ratio if p99 else result.ratio
    measured = f"{value:.2f}x"
    if not p99:
        base = _base(lookup, comparison, result)
        measured += f" ({_ns(result.median_ns)} vs {_ns(base)})"
    if stretch is not None and value <= stretch:
        measured += ", stretch met"
    ok = value <= limit
    return Verdict(
        name=name,
        limit=text,
        measured=measured,
        status=_status(ok, quick),
        by="" if ok else f"{(value / limit - 1) * 100:.0f}% over",
        profile=None if ok else (comparison, label),
    )


def _base(lookup: _Lookup, comparison: str, result: ArmResult) -> float:
    base = lookup.arm(comparison, result.baseline)
    return base.median_ns if base is not None else math.nan


def _added_target(
    lookup: _Lookup,
    quick: bool,
    *,
    name: str,
    comparison: str,
    label: str,
    limit_ns: float,
    absolute: bool = False,
) -> Verdict:
    result = lookup.arm(comparison, label)
    text = f"<= {_ns(limit_ns)}"
    if result is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    value = result.median_ns if absolute else result.added_ns
    measured = _ns(value)
    if not absolute:
        measured += f" over a bare await ({_ns(result.median_ns)} in all)"
    ok = value <= limit_ns
    return Verdict(
        name=name,
        limit=text,
        measured=measured,
        status=_status(ok, quick),
        by=""
        if ok
        else f"{_ns(value - limit_ns)} over ({value / limit_ns:.1f}x)",
        profile=None if ok else (comparison, label),
    )


def _best_stack(lookup: _Lookup, quick: bool) -> Verdict:
    name = "asyncio: ahead of the best asyncio peer stack"
    found = lookup.comparisons.get("pipeline-asyncio")
    mine = lookup.arm("pipeline-asyncio", ours.PIPELINE_RECORDED)
    if found is None or mine is None:
        return Verdict(name=name, limit="< 1.00x", measured="", status=NOT_RUN)
    stacks = [r for r in found.arms if r.arm.kind == "stack" and r.ok]
    if not stacks:
        return Verdict(name=name, limit="< 1.00x", measured="", status=NOT_RUN)
    best = min(stacks, key=lambda r: r.median_ns)
    ratios = [
        a / b
        for a, b in zip(mine.round_medians, best.round_medians, strict=False)
        if b > 0
    ]
    value = statistics.median(ratios)
    ok = value < 1.0
    return Verdict(
        name=name,
        limit="< 1.00x",
        measured=(
            f"{value:.2f}x of {best.label} "
            f"({_ns(mine.median_ns)} vs {_ns(best.median_ns)})"
        ),
        status=_status(ok, quick),
        by="" if ok else f"{(value - 1) * 100:.0f}% slower",
        profile=None if ok else ("pipeline-asyncio", ours.PIPELINE_RECORDED),
    )


def _overhead(
    lookup: _Lookup, quick: bool, transport: str, limit: float
) -> Verdict:
    name = f"MCP {transport}: resilience adds at most {limit:.0%}"
    comparison = f"mcp-{transport}-trio"
    result = lookup.arm(comparison, mcp.CLIENT) or lookup.arm(
        comparison, mcp.PIPELINE
    )
    text = f"<= {limit:.0%} of the round trip"
    if result is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    value = result.ratio - 1
    low, high = result.ratio_range
    ok = value <= limit
    base = _base(lookup, comparison, result)
    return Verdict(
        name=name,
        limit=text,
        measured=(
            f"{value:+.1%} (IQR {low - 1:+.1%} to {high - 1:+.1%}; "
            f"{_ns(result.added_ns)} on {_ns(base)})"
        ),
        status=_status(ok, quick),
        by="" if ok else f"{(value - limit) * 100:.1f} points over",
        profile=None if ok else (comparison, result.label),
    )


def _measured(
    lookup: _Lookup,
    quick: bool,
    *,
    name: str,
    measurement: str,
    limit: str,
    check: Callable[[dict[str, float]], tuple[bool, str, str]],
) -> Verdict:
    found = lookup.measurements.get(measurement)
    if found is None:
        return Verdict(name=name, limit=limit, measured="", status=NOT_RUN)
    ok, measured, by = check(found.values)
    status = _status(ok, quick)
    return Verdict(
        name=name,
        limit=limit,
        measured=measured,
        status=status,
        by="" if ok else by,
    )


def _queue_memory(values: dict[str, float]) -> tuple[bool, str, str]:
    ratio = values["memory_ratio"]
    return (
        ratio <= 1.2,
        (
            f"{ratio:.2f}x ({values['bytes_ours']:,.0f} vs "
            f"{values['bytes_bare']:,.0f} bytes)"
        ),
        f"{(ratio / 1.2 - 1) * 100:.0f}% over",
    )


def _queue_drain(values: dict[str, float]) -> tuple[bool, str, str]:
    ratio = values["drain_ratio"]
    return (
        ratio <= 1.3,
        (
            f"{ratio:.2f}x ({values['drain_ours_s'] * 1e6:.1f} vs "
            f"{values['drain_bare_s'] * 1e6:.1f} us per call)"
        ),
        f"{(ratio / 1.3 - 1) * 100:.0f}% over",
    )


def _tools(tools: int) -> Callable[[dict[str, float]], tuple[bool, str, str]]:
    def check(values: dict[str, float]) -> tuple[bool, str, str]:
        total = values["bytes_0"] * 10_000 / tools
        projected = "" if tools == 10_000 else " (projected to 10,000)"
        return (
            total < TOOLS_LIMIT,
            f"{total / 2**20:,.0f} MiB{projected}",
            f"{total / TOOLS_LIMIT:.0f}x the limit",
        )

    return check


def _no_growth(values: dict[str, float]) -> tuple[bool, str, str]:
    rss, objects = values["rss_growth"], values["objects_growth"]
    traced = values["traced_growth"]
    ok = rss <= 2**20 and objects <= 100 and traced <= 64 * 1024
    return (
        ok,
        (
            f"RSS {rss / 1024:+,.0f} KiB, gc objects {objects:+,.0f}, "
            f"traced {traced:+,.0f} bytes per 10,000 calls"
        ),
        "grows",
    )


def _constant(values: dict[str, float]) -> tuple[bool, str, str]:
    ratio = values["ratio"]
    return (
        ratio <= 1.15,
        (
            f"{ratio:.2f}x, interleaved (in call order: "
            f"{values['first']:,.0f} -> {values['last']:,.0f} ns)"
        ),
        f"{(ratio - 1) * 100:.0f}% slower at the end",
    )


def evaluate(
    comparisons: list[ComparisonResult],
    measurements: list[Measurement],
    *,
    quick: bool,
    tools: int,
) -> list[Verdict]:
    lookup = _Lookup(
        comparisons={c.comparison.id: c for c in comparisons},
        measurements={m.id: m for m in measurements},
    )
    return [
        _ratio_target(
            lookup,
            quick,
            name="Full pipeline vs the floor pipeline (median)",
            comparison="pipeline-trio",
            label=ours.PIPELINE_RECORDED,
            limit=1.25,
            stretch=1.1,
        ),
        _ratio_target(
            lookup,
            quick,
            name="Full pipeline vs the floor pipeline (p99)",
            comparison="pipeline-trio",
            label=ours.PIPELINE_RECORDED,
            limit=1.25,
            p99=True,
        ),
        _ratio_target(
            lookup,
            quick,
            name="No timeout vs the no-timeout floor",
            comparison="pipeline-trio",
            label=ours.PIPELINE_NO_TIMEOUT,
            limit=1.5,
        ),
        _added_target(
            lookup,
            quick,
            name="Breaker, closed path",
            comparison="breaker-trio",
            label=ours.BREAKER,
            limit_ns=1000,
        ),
        _added_target(
            lookup,
            quick,
            name="Retry, success path",
            comparison="retry-trio",
            label=ours.RETRY,
            limit_ns=1000,
        ),
        _ratio_target(
            lookup,
            quick,
            name="Bulkhead with a free slot vs acquire_nowait/release",
            comparison="bulkhead-trio",
            label=ours.BULKHEAD,
            limit=1.2,
        ),
        _ratio_target(
            lookup,
            quick,
            name="Timeout vs one CancelScope(deadline=...)",
            comparison="timeout-trio",
            label=ours.TIMEOUT_ONLY,
            limit=1.1,
        ),
        _added_target(
            lookup,
            quick,
            name="Latency recording (LatencyRecorder.record)",
            comparison="recording-trio",
            label=ours.RECORDER,
            limit_ns=500,
        ),
        _added_target(
            lookup,
            quick,
            name="Latency recording (LatencyHistogram.record)",
            comparison="recording-trio",
            label=ours.HISTOGRAM,
            limit_ns=500,
        ),
        _added_target(
            lookup,
            quick,
            name="Breaker open: fast fail",
            comparison="breaker-open-trio",
            label=ours.BREAKER_OPEN,
            limit_ns=3000,
            absolute=True,
        ),
        _measured(
            lookup,
            quick,
            name="Breaker open: the last rejection costs the first's",
            measurement="open-trio",
            limit="100,000th / first <= 1.15x",
            check=_constant,
        ),
        _best_stack(lookup, quick),
        _overhead(lookup, quick, "in-memory", 0.03),
        _overhead(lookup, quick, "stdio", 0.01),
        _measured(
            lookup,
            quick,
            name="10,000 queued callers: bytes per waiting caller",
            measurement="queue-trio",
            limit="<= 1.2x a bare CapacityLimiter",
            check=_queue_memory,
        ),
        _measured(
            lookup,
            quick,
            name="10,000 queued callers: drain time per call",
            measurement="queue-trio",
            limit="<= 1.3x a bare CapacityLimiter",
            check=_queue_drain,
        ),
        _measured(
            lookup,
            quick,
            name="10,000 tools with a breaker and a histogram each",
            measurement="tools",
            limit="< 64 MiB",
            check=_tools(tools),
        ),
        _measured(
            lookup,
            quick,
            name="1,000,000 calls: no memory growth after warm-up",
            measurement="million-trio",
            limit="no growth",
            check=_no_growth,
        ),
    ]
