"""
The PNG plots: goodput and p99 over time, one line per configuration.

The only module of the scenarios that imports matplotlib (installed by
``nox -s overload`` only, never a dependency of the package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl


mpl.use("Agg")

import matplotlib.pyplot as plt

from ._scenarios import CAPACITY_RATE, Scenario


AMPLIFICATION_WINDOW = 10.0  # seconds: the default retry budget's ttl
MIN_CALLS = 20  # calls that ended in the window before its ratio is shown

COLOURS = {
    "static": "tab:red",
    "budget": "tab:orange",
    "tight-budget": "tab:brown",
    "adaptive": "tab:blue",
    "hedged": "tab:green",
    "hedged-p97": "tab:purple",
}


def plot(
    scenario: Scenario, runs: Sequence[Mapping[str, Any]], path: Path
) -> None:
    """Write *scenario*'s plot of *runs* (summaries) to *path*."""
    with_limit = any(r["limits"] for r in runs)
    rows = 3 if with_limit else 2
    if scenario.retries:
        rows += 1
    fig, axes = _figure(scenario, runs, rows)
    goodput, p99 = axes[0], axes[1]
    if scenario.retries:
        _amplification(axes[-1], runs)
    for r in runs:
        colour = COLOURS.get(r["config"])
        points = r["series"]
        t = [p["t"] + 0.5 for p in points]
        goodput.plot(
            t, [p["goodput"] for p in points], color=colour, label=r["config"]
        )
        p99.plot(
            t,
            [None if p["p99"] is None else p["p99"] * 1000 for p in points],
            color=colour,
            label=r["config"],
        )
        if with_limit and r["limits"]:
            axes[2].plot(
                [s[0] for s in r["limits"]],
                [s[1] for s in r["limits"]],
                color=colour,
                label=f"{r['config']} limit",
            )
            axes[2].plot(
                [s[0] for s in r["limits"]],
                [s[2] for s in r["limits"]],
                color=colour,
                alpha=0.35,
                linestyle=":",
                label=f"{r['config']} running",
            )
    goodput.axhline(CAPACITY_RATE, color="grey", linestyle="--", linewidth=1)
    goodput.axhline(scenario.rate, color="grey", linestyle=":", linewidth=1)
    goodput.set_ylabel("goodput (/s)")
    goodput.legend(loc="upper right", fontsize="small")
    goodput.set_title(scenario.title, fontsize="medium")
    p99.set_ylabel("p99 of successes (ms)")
    if any(p["p99"] for r in runs for p in r["series"]):
        p99.set_yscale("log")  # not without a single success
    if with_limit:
        axes[2].set_ylabel("tools bulkhead")
        axes[2].set_yscale("symlog", linthresh=10)
        axes[2].legend(loc="upper right", fontsize="x-small", ncol=2)
    for ax in axes:
        if scenario.spike is not None:
            s = scenario.spike
            ax.axvspan(
                s.start, s.start + s.duration, color="orange", alpha=0.15
            )
        if len(scenario.events) >= 2:
            ax.axvspan(
                scenario.events[0].at,
                scenario.events[-1].at,
                color="purple",
                alpha=0.1,
            )
        ax.grid(visible=True, alpha=0.3)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _amplification(ax: Any, runs: Sequence[Mapping[str, Any]]) -> None:
    """
    Attempts per call over the trailing window, one line per run.

    The window is :data:`AMPLIFICATION_WINDOW` (the default budget's
    ``ttl``, the span its rule counts), or the run so far before that:
    seconds hold too few calls that end (a call ends when its last
    attempt does) for a ratio of their own, and a window with fewer than
    :data:`MIN_CALLS` is not shown (at the start, attempts are counted
    before their calls end).
    """
    for r in runs:
        samples = r["retries"]["samples"]
        points: list[tuple[float, float]] = []
        for t, calls, attempts in samples:
            if points and t - points[-1][0] < 1.0:
                continue
            base = (0.0, 0, 0)
            for sample in samples:
                if sample[0] > t - AMPLIFICATION_WINDOW:
                    break
                base = sample
            if calls - base[1] >= MIN_CALLS:
                points.append((t, (attempts - base[2]) / (calls - base[1])))
        ax.plot(
            [t for t, _ in points],
            [v for _, v in points],
            color=COLOURS.get(r["config"]),
            label=r["config"],
        )
    ax.axhline(1.2, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0.9, 3.2)  # 1 to the seed's 3 attempts per call
    ax.set_ylabel(f"attempts/call, last {AMPLIFICATION_WINDOW:g} s")
    ax.legend(loc="upper right", fontsize="small")


def _figure(
    scenario: Scenario, runs: Sequence[Mapping[str, Any]], rows: int
) -> tuple[Any, Any]:
    """The figure and its time axes; a tail scenario adds its tail plot."""
    if not scenario.tail:
        return plt.subplots(rows, 1, figsize=(9, 2.6 * rows), sharex=True)
    fig, axes = plt.subplots(rows + 1, 1, figsize=(9, 2.6 * rows + 3))
    for ax in axes[1:-1]:
        ax.sharex(axes[0])
    _tail(axes[-1], runs)
    return fig, axes[:-1]


def _tail(ax: Any, runs: Sequence[Mapping[str, Any]]) -> None:
    """Latency by quantile (whole run), one line per configuration."""
    for r in runs:
        tail = r["tail"]
        points = [(q, v) for q, v in tail["quantiles"] if v is not None]
        hedges = tail["hedges_per_call"] or 0.0
        ax.plot(
            [1 / (1 - q) for q, _ in points],
            [v * 1000 for _, v in points],
            marker="o",
            color=COLOURS.get(r["config"]),
            label=f"{r['config']} ({hedges * 100:.1f} % hedges)",
        )
    ticks = [0.5, 0.9, 0.99, 0.999]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1 / (1 - q) for q in ticks])
    ax.set_xticklabels([f"p{q * 100:g}" for q in ticks])
    ax.set_xlabel("quantile of the whole run's successes")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(visible=True, alpha=0.3, which="both")
