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
from ._scenarios import ADAPTIVE, CAPACITY_RATE, Scenario, client_config


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
        "p999": percentile(latencies, 0.999),
        "count": len(latencies),
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


def convergence(
    run: Run, change: float, until: float
) -> tuple[float | None, float | None]:
    """:func:`settling` of the run's ``tools`` limit after *change*."""
    return settling([(t, limit) for t, limit, _ in run.limits], change, until)


def settling(
    limits: Sequence[tuple[float, float]], change: float, until: float
) -> tuple[float | None, float | None]:
    """
    Seconds after *change* until a limit reaches its new level, and
    until it stays there.

    *limits* are (time, limit) samples.  The level: the median limit over
    the last quarter of [change, until]; there: within 25 % of it (at
    least 1).  It *settles* at the sample after the last one outside that
    band (``None``: out of band at the end).
    """
    samples = [(t, limit) for t, limit in limits if change <= t < until]
    if not samples:
        return None, None
    tail = [limit for t, limit in samples if t >= until - (until - change) / 4]
    level = percentile([float(x) for x in tail], 0.5) or 0.0
    band = max(1.0, SETTLED * level)
    inside = [abs(limit - level) <= band for _, limit in samples]
    reached = next(
        (t - change for (t, _), ok in zip(samples, inside, strict=True) if ok),
        None,
    )
    if not inside[-1]:
        return reached, None
    last_out = max((i for i, ok in enumerate(inside) if not ok), default=-1)
    return reached, samples[last_out + 1][0] - change


TAIL_QUANTILES: Final = (0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def tail(run: Run) -> dict[str, Any]:
    """
    The tail of a run: its latencies at high quantiles, and the hedges.

    Every successful request that started in the run counts, wherever it
    ended (the drain included); extra requests are the hedges per call
    (the client's count) and the server's ``tools/call`` requests per
    request offered (hedges, retries and all).
    """
    latencies = [latency for _, latency, ok in run.ends if ok]
    hedging = run.hedging
    calls = hedging.get("calls") or run.calls
    return {
        "successes": len(latencies),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "p999": percentile(latencies, 0.999),
        "max": max(latencies, default=None),
        "quantiles": [[q, percentile(latencies, q)] for q in TAIL_QUANTILES],
        "hedges": hedging.get("hedges", 0),
        "hedge_wins": hedging.get("hedge_wins", 0),
        "hedge_budget_rejections": hedging.get("budget_rejections", 0),
        "hedges_suppressed_by_slowdown": hedging.get(
            "suppressed_by_slowdown", 0
        ),
        "hedges_per_call": (
            hedging.get("hedges", 0) / calls if calls else None
        ),
        "server_requests_per_request": (
            run.server_requests / run.offered if run.offered else None
        ),
        "slow_on_server": run.slow_requests,
    }


def _counts_at(run: Run, at: float) -> tuple[int, int]:
    """The retry policy's (calls, attempts) at the last sample by *at*."""
    calls, attempts = 0, 0
    for t, c, a in run.retries:
        if t > at:
            break
        calls, attempts = c, a
    return calls, attempts


def retries(scenario: Scenario, run: Run) -> dict[str, Any]:
    """
    The retries of a run: amplification, success rate, the budget's bound.

    Amplification is attempts per call as the retry policy counts them:
    calls that reached it (not those a bulkhead or the throttle turned
    away before any attempt), each counted when it ends, and every
    attempt it made.  Over the whole run it includes the start, where
    the budget's reserve (``min_retries_per_second * ttl`` retries) is
    spent at once, and the drain after the load stops, where the retries
    of the start expire and the reserve is spent again: a 20 s run with a
    10 s ``ttl`` gets the reserve about three times.  The steady window
    (``steady_from`` to the end of the load) sees it once per ``ttl``, as
    the budget's bound does: ``1 + percent_can_retry +
    min_retries_per_second / calls per second``, the calls per second
    being those that reached the retry policy in that window.
    """
    start = scenario.steady_from * run.duration
    calls0, attempts0 = _counts_at(run, start)
    calls1, attempts1 = _counts_at(run, run.duration)
    calls = calls1 - calls0
    span = max(run.duration - start, 1e-9)
    budget = client_config(scenario, run.config).retry_budget
    bound = None
    if budget is not None and calls:
        bound = (
            1
            + budget.percent_can_retry
            + budget.min_retries_per_second * span / calls
        )
    successes = sum(ok for _, _, ok in run.ends)
    return {
        "offered": run.offered,
        "successes": successes,
        "success_rate": successes / run.offered if run.offered else None,
        "calls": run.calls,
        "attempts": run.attempts,
        "attempts_per_call": run.attempts / run.calls if run.calls else None,
        "steady_from": start,
        "steady_calls": calls,
        "steady_calls_per_second": calls / span,
        "steady_attempts_per_call": (
            (attempts1 - attempts0) / calls if calls else None
        ),
        "steady_bound": bound,
        "budget": (
            None
            if budget is None
            else [
                budget.percent_can_retry,
                budget.min_retries_per_second,
                budget.ttl,
            ]
        ),
        "server_requests_per_request": (
            run.server_requests / run.offered if run.offered else None
        ),
        "refused_by_budget": run.failures.get("retry_budget_exhausted", 0),
        "samples": run.retries,
    }


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
    if scenario.tail:
        result["tail"] = tail(run)
    if scenario.retries:
        result["retries"] = retries(scenario, run)
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
        if run.config in ADAPTIVE:  # a static limit does not move
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


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


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
            "runs/request | recovery after spike | limit reaches / settles "
            "after changes | client failures |"
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
                    f"{_secs(reached)} / {_secs(settles)}"
                    for reached, settles in r["limit_convergence"]
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
    for name, runs in results.items():
        if runs and "tail" in runs[0]:
            lines += [
                "",
                *tail_markdown(
                    name, [r["tail"] | {"config": r["config"]} for r in runs]
                ),
            ]
    for name, runs in results.items():
        if runs and "retries" in runs[0]:
            lines += [
                "",
                *retries_markdown(
                    name,
                    [r["retries"] | {"config": r["config"]} for r in runs],
                ),
            ]
    return "\n".join(lines) + "\n"


def _budget(budget: Sequence[float] | None) -> str:
    if budget is None:
        return "none"
    percent, floor, ttl = budget
    return f"{percent:g} + {floor:g}/s over {ttl:g} s"


def retries_markdown(
    name: str, runs: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The retry table of a scenario whose retries are summarized."""
    lines = [
        (
            f"| {name} | budget | success rate | attempts/call (whole run) "
            "| attempts/call (steady) | steady bound | steady calls/s | "
            "calls reaching the retry | server requests/request | refused "
            "by budget |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        rate = r["success_rate"]
        offered = r["offered"]
        lines.append(
            f"| {r['config']} | {_budget(r['budget'])} | "
            f"{_fmt(None if rate is None else rate * 100, ' %', 2)} | "
            f"{_fmt(r['attempts_per_call'])} | "
            f"{_fmt(r['steady_attempts_per_call'])} | "
            f"{_fmt(r['steady_bound'])} | "
            f"{_fmt(r['steady_calls_per_second'], '', 1)} | "
            f"{r['calls']} of {offered} | "
            f"{_fmt(r['server_requests_per_request'])} | "
            f"{r['refused_by_budget']} |"
        )
    return lines


def tail_markdown(name: str, runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The tail table of a slow-tail scenario (the first run: no hedges)."""
    base = runs[0]["p999"]
    lines = [
        (
            f"| {name} | requests | p50 | p99 | p99.9 | max | p99.9 "
            "improvement | hedges/call | server requests/request | hedges "
            "won | refused by budget | slow on server |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        gain = base / r["p999"] if base and r["p999"] else None
        hedges = r["hedges_per_call"]
        lines.append(
            f"| {r['config']} | {r['successes']} | {_ms(r['p50'])} | "
            f"{_ms(r['p99'])} | {_ms(r['p999'])} | {_ms(r['max'])} | "
            f"{_fmt(gain, 'x', 1)} | "
            f"{_fmt(None if hedges is None else hedges * 100, ' %', 2)} | "
            f"{_fmt(r['server_requests_per_request'], '', 3)} | "
            f"{r['hedge_wins']} | {r['hedge_budget_rejections']} | "
            f"{r['slow_on_server']} |"
        )
    return lines
