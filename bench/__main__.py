"""
``python -m bench``: run the benchmarks and write the report.

Writes ``latest.md`` and one ``.hlog`` per comparison into ``--out``
(``bench/results`` by default; ``bench/results/quick`` with ``--quick``,
so that a smoke run never overwrites the committed results).
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import sys
import time
import warnings

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import attrs

from . import _scale as scale
from ._harness import (
    BACKENDS,
    Comparison,
    ComparisonResult,
    Profile,
    profile_arm,
    run_comparison,
)
from ._machine import LoadMeter, machine_info
from ._peers import ProbeResult, compatibility
from ._report import render, write_hlog
from ._suites import SCALE, SUITES, Sizes
from ._targets import MISSED, Verdict, evaluate


RESULTS: Final = Path(__file__).with_name("results")
REPORT: Final = "latest.md"


@attrs.frozen(kw_only=True)
class Options:
    """The parsed command line."""

    quick: bool
    out: Path
    only: tuple[str, ...]
    seed: int
    profile: bool

    def wants(self, *names: str) -> bool:
        if not self.only:
            return True
        return any(
            name == wanted or name.startswith(f"{wanted}-")
            for wanted in self.only
            for name in names
        )


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark resilient-mcp against floors and peers.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny sizes, checks that everything runs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for latest.md and the .hlog files "
        "(default: bench/results, or bench/results/quick with --quick)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=(
            "run only this suite or comparison; repeatable.  Suites: "
            f"{', '.join([*SUITES, *SCALE])}; or an id like breaker-trio"
        ),
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the round order"
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip profiling the variants that miss a target",
    )
    args = parser.parse_args(argv)
    known = _known_names()
    unknown = [name for name in args.only if name not in known]
    if unknown:
        parser.error(
            f"--only {', '.join(unknown)}: no such suite or comparison "
            f"(known: {', '.join(sorted(known))})"
        )
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    return Options(
        quick=args.quick,
        out=out,
        only=tuple(args.only),
        seed=args.seed,
        profile=args.profile and not args.quick,
    )


def _known_names() -> set[str]:
    names = {*SUITES, *SCALE}
    for suite in SUITES.values():
        names.update(c.id for c in suite(Sizes.smoke()))
    names.update(
        f"{name}-{backend}"
        for name in ("queue", "open")
        for backend in BACKENDS
    )
    names.add("million-trio")
    return names


@attrs.define
class Progress:
    """One line per step on stderr, with the time since the start."""

    start: float = attrs.field(factory=time.perf_counter)

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


def _comparisons(options: Options, sizes: Sizes) -> list[Comparison]:
    return [
        comparison
        for name, suite in SUITES.items()
        for comparison in suite(sizes)
        if options.wants(name, comparison.id)
    ]


def _measurements(
    options: Options, sizes: Sizes, progress: Progress
) -> list[scale.Measurement]:
    steps: list[tuple[str, Callable[[], scale.Measurement]]] = [
        (
            f"queue-{backend}",
            functools.partial(
                scale.queued_callers,
                backend,
                sizes.queued_callers,
                sizes.queue_pairs,
            ),
        )
        for backend in BACKENDS
    ]
    steps.append(
        (
            "million-trio",
            functools.partial(
                scale.million_calls,
                "trio",
                sizes.million,
                sizes.million_warmup,
            ),
        )
    )
    steps.extend(
        (
            f"open-{backend}",
            functools.partial(
                scale.open_constancy,
                backend,
                sizes.rejections,
                sizes.rejection_window,
            ),
        )
        for backend in BACKENDS
    )
    # Last: its 1.8 GB stay in the process (RSS) once freed.
    steps.append(("tools", functools.partial(scale.many_tools, sizes.tools)))
    found = []
    for name, step in steps:
        if options.wants(name.split("-")[0], name):
            progress(name)
            found.append(step())
    return found


def _profiles(
    options: Options,
    sizes: Sizes,
    results: list[ComparisonResult],
    verdicts: list[Verdict],
    progress: Progress,
) -> dict[str, Profile]:
    if not options.profile:
        return {}
    by_id = {r.comparison.id: r.comparison for r in results}
    wanted: dict[tuple[str, str, str | None], list[str]] = {}
    for verdict in verdicts:
        if verdict.status == MISSED and verdict.profile is not None:
            comparison_id, label = verdict.profile
            key = (comparison_id, label, verdict.profile_against)
            wanted.setdefault(key, []).append(verdict.name)
    spots = {}
    for (comparison_id, label, against), names in wanted.items():
        comparison = by_id.get(comparison_id)
        if comparison is None:
            continue
        calls = (
            500 if comparison_id.startswith("mcp-") else sizes.profile_calls
        )
        progress(f"profiling {label} ({comparison_id})")
        title = f"{'; '.join(names)}: {label} ({comparison.where})"
        spots[title] = profile_arm(
            comparison, label, calls, top=10, against=against
        )
    return spots


def _quiet() -> None:
    # Breakers opening and stamina scheduling retries log warnings; a
    # handler on the root logger keeps them off the progress output
    # without changing what logging costs on the paths we measure.
    logging.getLogger().addHandler(logging.NullHandler())
    # Peers that cannot run on trio leave unawaited coroutines behind.
    warnings.filterwarnings(
        "ignore",
        message="coroutine .* was never awaited",
        category=RuntimeWarning,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    _quiet()
    sizes = Sizes.smoke() if options.quick else Sizes.full()
    random.seed(options.seed)
    options.out.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    info = machine_info()
    meter = LoadMeter.start()
    started = time.time()

    results = []
    for comparison in _comparisons(options, sizes):
        progress(comparison.id)
        result = run_comparison(comparison, options.seed)
        write_hlog(result, options.out)
        results.append(result)
    measurements = _measurements(options, sizes, progress)
    probes: list[ProbeResult] = []
    if options.wants("compat"):
        progress("compat")
        probes = compatibility(BACKENDS)
    verdicts = evaluate(
        results, measurements, quick=options.quick, tools=sizes.tools
    )
    hot_spots = _profiles(options, sizes, results, verdicts, progress)

    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    report = render(
        command=f"python -m bench {argv_text}".strip(),
        quick=options.quick,
        info=info,
        load=meter.stop(),
        started=started,
        comparisons=results,
        measurements=measurements,
        verdicts=verdicts,
        hot_spots=hot_spots,
        compatibility=probes,
    )
    path = options.out / REPORT
    path.write_text(report, encoding="utf-8")
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
