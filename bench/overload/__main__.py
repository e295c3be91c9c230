"""
``python -m bench.overload``: run the overload scenarios, plot, summarize.

Writes ``<scenario>.png`` per scenario, ``summary.md`` and
``summary.json`` into ``--out`` (``bench/results/overload`` by default).
``--quick`` scales every duration by 0.5 (the server and the rates stay);
``--scale`` sets another factor (the test uses a tiny one).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

from ._driver import run_scenario
from ._scenarios import ALGORITHM, SCENARIOS
from ._summary import markdown, summarize


QUICK_SCALE: Final = 0.5  # --quick: every duration halved


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.overload")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument(
        "--only", action="append", default=None, help="scenario name(s)"
    )
    parser.add_argument(
        "--algorithm",
        default=ALGORITHM,
        choices=("gradient2", "vegas", "aimd"),
        help="the adaptive configuration's limit algorithm",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="skip the PNGs (no matplotlib)"
    )
    return parser


async def run_all(
    names: Sequence[str], scale: float, algorithm: str = ALGORITHM
) -> dict[str, list[dict[str, Any]]]:
    """Run the scenarios *names*, every configuration, at *scale*."""
    results: dict[str, list[dict[str, Any]]] = {}
    reference: float | None = None
    for name in names:
        scenario = SCENARIOS[name].scaled(scale)
        runs = []
        for config in scenario.configs:
            began = time.monotonic()
            run = await run_scenario(scenario, config, algorithm=algorithm)
            summary = summarize(scenario, run, reference)
            runs.append(summary)
            tail = ""
            if scenario.tail:
                numbers = summary["tail"]
                tail = (
                    f" p99.9 {(numbers['p999'] or 0) * 1000:6.0f} ms, "
                    f"hedges/call {numbers['hedges_per_call'] or 0:.3f}"
                )
            print(
                f"{name:14} {config:10} goodput {summary['goodput']:6.1f}/s"
                f"{tail} in {time.monotonic() - began:5.1f} s",
                file=sys.stderr,
            )
        if name == "uncontended":
            reference = runs[0]["steady"]["p99"]
        results[name] = runs
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios; return the exit status."""
    args = _parser().parse_args(argv)
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {unknown}", file=sys.stderr)
        return 2
    if "uncontended" in SCENARIOS and "uncontended" not in names:
        names = ["uncontended", *names]  # the reference latency first
    scale = args.scale or (QUICK_SCALE if args.quick else 1.0)
    out = args.out or Path("bench/results/overload")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = trio.run(run_all, names, scale, args.algorithm)
    header = (
        f"Overload scenarios at scale {scale:g}, adaptive limit "
        f"{args.algorithm}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {wall(started):.0f} s of wall time"
    )
    (out / "summary.md").write_text(markdown(results, header))
    (out / "summary.json").write_text(
        json.dumps(
            {"header": header, "scale": scale, "results": results},
            indent=1,
            default=str,
        )
    )
    if not args.no_plot:
        from ._plot import plot  # noqa: PLC0415 (matplotlib only here)

        for name, runs in results.items():
            plot(SCENARIOS[name].scaled(scale), runs, out / f"{name}.png")
    print((out / "summary.md").read_text())
    return 0


def wall(started: float) -> float:
    """Seconds of wall time since *started* (``time.monotonic()``)."""
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
