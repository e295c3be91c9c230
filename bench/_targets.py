"""
The performance targets, each checked against this run's numbers.

Every speed target but one is a ratio to a floor measured in the same
run, interleaved with it (the median of the per-round ratios): the floor
is the cheapest way to write the same thing by hand that respects trio's
conventions (see :mod:`bench._floors`), so a target never asks a policy
to copy another's logic to be fast.  The exception is latency recording,
judged as nanoseconds added over a bare ``await``.  The MCP targets
compare added times (the median per-round difference to the plain SDK
call), ours over the minimal client's.  Speed targets are judged on trio,
except the asyncio one, judged under plain ``asyncio.run``.

A quick run checks that the benchmarks run, never their speed: its
targets read "not judged".
"""

from __future__ import annotations

import math
import statistics

from collections.abc import Callable
from typing import Final

import attrs

from . import _floors as floors
from . import _floors_overload as overload_floors
from . import _mcp as mcp
from . import _ours as ours
from . import _ours_overload as overload_ours
from ._harness import ArmResult, ComparisonResult
from ._scale import TOOLS_LIMIT, Measurement
from ._suites import PIPELINE_ASYNCIO_RUN


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
    # The arm to profile it against, when not its own baseline.
    profile_against: str | None = None


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
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if abs(value) >= 1e3:
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
) -> Verdict:
    """The arm's median per-round ratio to its baseline (a floor)."""
    result = lookup.arm(comparison, label)
    text = f"<= {limit:.2f}x"
    if result is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    value = result.ratio
    low, high = result.ratio_range
    base = _base(lookup, comparison, result)
    measured = (
        f"{value:.2f}x (IQR {low:.2f}-{high:.2f}; "
        f"{_ns(result.median_ns)} vs {_ns(base)})"
    )
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
) -> Verdict:
    """The arm's median per-round time over its baseline (a bare await)."""
    result = lookup.arm(comparison, label)
    text = f"<= {_ns(limit_ns)}"
    if result is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    value = result.added_ns
    measured = (
        f"{_ns(value)} over a bare await ({_ns(result.median_ns)} in all)"
    )
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


def _stack_ratio(
    lookup: _Lookup, comparison: str
) -> tuple[float, ArmResult, ArmResult] | None:
    """Ours over the fastest peer stack, per round; None if not run."""
    found = lookup.comparisons.get(comparison)
    mine = lookup.arm(comparison, ours.PIPELINE_RECORDED)
    if found is None or mine is None:
        return None
    stacks = [r for r in found.arms if r.arm.kind == "stack" and r.ok]
    if not stacks:
        return None
    best = min(stacks, key=lambda r: r.median_ns)
    ratios = [
        a / b
        for a, b in zip(mine.round_medians, best.round_medians, strict=False)
        if b > 0
    ]
    return statistics.median(ratios), mine, best


def _best_stack(lookup: _Lookup, quick: bool) -> Verdict:
    name = "asyncio (plain asyncio.run): ahead of the best asyncio peer stack"
    comparison = PIPELINE_ASYNCIO_RUN
    found = _stack_ratio(lookup, comparison)
    if found is None:
        return Verdict(name=name, limit="< 1.00x", measured="", status=NOT_RUN)
    value, mine, best = found
    measured = (
        f"{value:.2f}x of {best.label} "
        f"({_ns(mine.median_ns)} vs {_ns(best.median_ns)})"
    )
    under_anyio = _stack_ratio(lookup, "pipeline-asyncio")
    if under_anyio is not None:
        other, _, other_best = under_anyio
        measured += f"; under anyio.run {other:.2f}x of {other_best.label}"
    ok = value < 1.0
    return Verdict(
        name=name,
        limit="< 1.00x",
        measured=measured,
        status=_status(ok, quick),
        by="" if ok else f"{(value - 1) * 100:.0f}% slower",
        profile=None if ok else (comparison, ours.PIPELINE_RECORDED),
        profile_against=None if ok else best.label,
    )


def _mcp_target(
    lookup: _Lookup, quick: bool, transport: str, limit: float
) -> Verdict:
    name = (
        f"MCP {transport}: added time of ResilientMCPClient.call_tool "
        "vs the minimal client by hand"
    )
    comparison = f"mcp-{transport}-trio"
    text = f"<= {limit:.2f}x"
    client = lookup.arm(comparison, mcp.CLIENT)
    minimal = lookup.arm(comparison, mcp.MINIMAL)
    if client is None or minimal is None:
        return Verdict(name=name, limit=text, measured="", status=NOT_RUN)
    base = _base(lookup, comparison, client)
    mine, floor = client.added_ns, minimal.added_ns
    added = (
        f"{_ns(mine)} vs {_ns(floor)} added to {_ns(base)}; "
        f"{client.ratio - 1:+.1%} vs {minimal.ratio - 1:+.1%}"
    )
    if floor <= 0:
        # Within the noise of the round trip: no ratio to judge.
        ok = mine <= 0
        return Verdict(
            name=name,
            limit=text,
            measured=f"the minimal client adds nothing measurable ({added})",
            status=_status(ok, quick),
            by="" if ok else f"{_ns(mine)} over nothing",
            profile=None if ok else (comparison, mcp.CLIENT),
            profile_against=None if ok else mcp.MINIMAL,
        )
    value = mine / floor
    ok = value <= limit
    over = f"{(value / limit - 1) * 100:.0f}% over"
    return Verdict(
        name=name,
        limit=text,
        measured=f"{value:.2f}x ({added})",
        status=_status(ok, quick),
        by="" if ok else f"{over} ({_ns(mine - floor * limit)} too much)",
        profile=None if ok else (comparison, mcp.CLIENT),
        profile_against=None if ok else mcp.MINIMAL,
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


OVERLOAD_LIMIT: Final = 1.3  # issue 13: at most 1.3x a hand-built equivalent


def _overload_targets(lookup: _Lookup, quick: bool) -> list[Verdict]:
    """Issue 13: each new policy's success path vs its hand-built floor."""
    found = (
        (
            "Retry budget",
            "retry-budget-trio",
            overload_ours.BUDGET,
            overload_floors.BUDGET,
        ),
        (
            "Rate limiter",
            "rate-limit-trio",
            overload_ours.RATE,
            overload_floors.GCRA,
        ),
        (
            "Adaptive throttling",
            "throttling-trio",
            overload_ours.THROTTLE,
            overload_floors.SRE,
        ),
        (
            "Adaptive bulkhead (gradient2)",
            "adaptive-trio",
            overload_ours.GRADIENT,
            overload_floors.GRADIENT,
        ),
        (
            "Adaptive bulkhead (aimd)",
            "adaptive-trio",
            overload_ours.AIMD,
            overload_floors.AIMD,
        ),
    )
    return [
        _ratio_target(
            lookup,
            quick,
            name=f"{policy}, success path vs {floor}",
            comparison=comparison,
            label=label,
            limit=OVERLOAD_LIMIT,
        )
        for policy, comparison, label, floor in found
    ]


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
            name="Full pipeline vs the floor pipeline",
            comparison="pipeline-trio",
            label=ours.PIPELINE_RECORDED,
            limit=1.2,
        ),
        _ratio_target(
            lookup,
            quick,
            name="No timeout vs the no-timeout floor",
            comparison="pipeline-trio",
            label=ours.PIPELINE_NO_TIMEOUT,
            limit=1.5,
        ),
        _ratio_target(
            lookup,
            quick,
            name=f"Breaker, closed path vs a {floors.BREAKER}",
            comparison="breaker-trio",
            label=ours.BREAKER,
            limit=1.3,
        ),
        _ratio_target(
            lookup,
            quick,
            name=f"Bulkhead with a free slot vs {floors.LIMITER}",
            comparison="bulkhead-trio",
            label=ours.BULKHEAD,
            limit=1.3,
        ),
        _ratio_target(
            lookup,
            quick,
            name=f"Retry, success path vs a {floors.RETRY}",
            comparison="retry-trio",
            label=ours.RETRY,
            limit=1.3,
        ),
        _ratio_target(
            lookup,
            quick,
            name=f"Breaker open, fast fail vs {floors.OPEN}",
            comparison="breaker-open-trio",
            label=ours.BREAKER_OPEN,
            limit=1.3,
        ),
        *_overload_targets(lookup, quick),
        _measured(
            lookup,
            quick,
            name="Breaker open: the last rejection costs the first's",
            measurement="open-trio",
            limit="100,000th / first <= 1.15x",
            check=_constant,
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
        _best_stack(lookup, quick),
        _mcp_target(lookup, quick, "in-memory", 1.3),
        _mcp_target(lookup, quick, "stdio", 1.3),
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
