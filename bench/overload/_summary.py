"""
From the runs' records to time series, and the numbers to the targets.

Goodput is the successful requests that *ended* in each one-second
bucket; p99 is the 99th percentile of the latencies (from the intended
start) of the successful requests that ended in the bucket, so a client
that fails calls fast cannot lower it with its failures.
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ._driver import Run
from ._scenarios import CAPACITY_RATE, Scenario


BUCKET: Final = 1.0  # seconds per point of the time series
RECOVERED: Final = 0.9  # share of the offered base rate that is recovered
SMOOTHING: Final = 3  # buckets per sliding window of recovery
SETTLED: Final = 0.25  # the limit is settled within this share of its level


def percentile(values: Sequence[float], q: float) -> float | None:
    """The *q* quantile (0..1) of *values*, nearest rank; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def series(run: Run) -> list[dict[str, Any]]:
    """Per one-second bucket: start, goodput (/s), p99 (s), failures (/s)."""
    buckets = max(1, math.ceil(run.duration / BUCKET))
    ok: list[list[float]] = [[] for _ in range(buckets)]
    failed = [0] * buckets
    for at, latency, success in run.ends:
        index = int(at // BUCKET)
        if index >= buckets:
            continue  # ended in the drain, after the duration
        if success:
            ok[index].append(latency)
        else:
            failed[index] += 1
    return [
        {
            "t": i * BUCKET,
            "goodput": len(ok[i]) / BUCKET,
            "p99": percentile(ok[i], 0.99),
            "failed": failed[i] / BUCKET,
        }
        for i in range(buckets)
    ]


def window(run: Run, start: float, end: float) -> dict[str, Any]:
    """Goodput and latency percentiles of the requests ending in a window."""
    latencies = [
        latency for at, latency, ok in run.ends if ok and start <= at < end
    ]
    span = max(end - start, 1e-9)
    return {
        "from": start,
        "to": end,
        "goodput": len(latencies) / span,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


def recovery(run: Run, after: float, rate: float) -> float | None:
    """
    Seconds after *after* until goodput stays at 90 % of *rate*.

    Goodput is averaged over sliding windows of :data:`SMOOTHING`
    buckets (one-second buckets jitter with the end times); recovery is
    the first window from which every window to the end of the run
    averages >= 90 % of the base rate.  None if the run never gets there,
    or gets there only in its last :data:`SMOOTHING` seconds.
    """
    goodput = [p["goodput"] for p in series(run) if p["t"] >= after]
    windows = [
        sum(goodput[i : i + SMOOTHING]) / SMOOTHING
        for i in range(len(goodput) - SMOOTHING + 1)
    ]
    for i in range(len(windows) - 1):
        if all(w >= RECOVERED * rate for w in windows[i:]):
            return i * BUCKET
    return None


def convergence(run: Run, change: float, until: float) -> float | None:
    """
    Seconds after *change* until the limit first reaches its new level.

    The level: the median limit over the last quarter of [change,
    until]; reached: within 25 % of it (at least 1).  Vegas probes (it
    forgets its lowest RTT now and then, and the limit jumps for a
    while), so "first reaches" is asked, not "stays".
    """
    samples = [(t, limit) for t, limit, _ in run.limits if change <= t < until]
    if not samples:
        return None
    tail = [limit for t, limit in samples if t >= until - (until - change) / 4]
    level = percentile([float(x) for x in tail], 0.5) or 0.0
    band = max(1.0, SETTLED * level)
    for t, limit in samples:
        if abs(limit - level) <= band:
            return t - change
    return None


def summarize(
    scenario: Scenario, run: Run, reference_p99: float | None
) -> dict[str, Any]:
    """The numbers of one run, the ones its scenario's targets name."""
    whole = window(run, 0.0, run.duration)
    steady = window(run, scenario.steady_from * run.duration, run.duration)
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "config": run.config,
        "duration": run.duration,
        "offered": run.offered,
        "offered_rate": scenario.rate,
        "shed": run.shed,
        "unfinished": run.unfinished,
        "failures": run.failures,
        "goodput": whole["goodput"],
        "p99": whole["p99"],
        "steady": steady,
        "steady_goodput_share_of_capacity": steady["goodput"] / CAPACITY_RATE,
        "attempts_per_call": run.attempts / run.calls if run.calls else None,
        "server_executions_per_request": (
            run.server_executions / run.offered if run.offered else None
        ),
        "series": series(run),
        "limits": run.limits,
    }
    if reference_p99 and steady["p99"] is not None:
        result["steady_p99_over_uncontended"] = steady["p99"] / reference_p99
    spike = scenario.spike
    if spike is not None:
        end = spike.start + spike.duration
        result["spike_end"] = end
        result["recovery_after_spike"] = recovery(run, end, scenario.rate)
        result["after_spike"] = window(run, end + 5.0, run.duration)
    if scenario.events:
        times = [event.at for event in scenario.events] + [run.duration]
        result["limit_convergence"] = [
            convergence(run, times[i], times[i + 1])
            for i in range(len(scenario.events))
        ]
        result["event_windows"] = [
            window(run, times[i], times[i + 1]) for i in range(len(times) - 1)
        ]
    return result


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def markdown(
    results: Mapping[str, Sequence[Mapping[str, Any]]], header: str
) -> str:
    """The summary table of every run, as markdown."""
    lines = [
        header,
        "",
        (
            "| scenario | config | goodput/s | steady goodput/s (share of "
            "capacity) | steady p99 (x uncontended) | attempts/call | server "
            "runs/request | recovery after spike | limit settles after "
            "changes | client failures |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        for r in runs:
            steady = r["steady"]
            ratio = r.get("steady_p99_over_uncontended")
            share = r["steady_goodput_share_of_capacity"] * 100
            rec = "-"
            if "recovery_after_spike" in r:
                value = r["recovery_after_spike"]
                rec = "never" if value is None else f"{value:.0f} s"
            conv = "-"
            if "limit_convergence" in r:
                conv = ", ".join(
                    "never" if c is None else f"{c:.1f} s"
                    for c in r["limit_convergence"]
                )
            failures = ", ".join(
                f"{k} {v}" for k, v in sorted(r["failures"].items())
            )
            lines.append(
                f"| {name} | {r['config']} | {_fmt(r['goodput'], '', 1)} | "
                f"{_fmt(steady['goodput'], '', 1)} "
                f"({_fmt(share, ' %', 0)})"
                f" | {_ms(steady['p99'])} ({_fmt(ratio, 'x', 1)}) | "
                f"{_fmt(r['attempts_per_call'])} | "
                f"{_fmt(r['server_executions_per_request'])} | {rec} | "
                f"{conv} | {failures or '-'} |"
            )
    return "\n".join(lines) + "\n"
