"""
The Markdown report and the ``.hlog`` files.

Each comparison gets one interval log, ``<id>.hlog``, with one tagged
interval per arm per round, in nanoseconds (``Interval_Max`` in
milliseconds), written with the library's own :class:`HlogWriter`; read it
with ``resilient-mcp hist summary --input-unit ns bench/results/<id>.hlog``.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from resilient_mcp import LatencyHistogram
from resilient_mcp._hlog import HlogWriter

from ._harness import ComparisonResult, Profile
from ._machine import LoadSample, MachineInfo
from ._peers import ProbeResult
from ._scale import Measurement
from ._targets import MISSED, Verdict


NS_PER_MS: Final = 1_000_000  # Interval_Max is written in milliseconds
HLOG_COMMENT: Final = (
    "[resilient-mcp benchmarks: values in nanoseconds, Interval_Max in "
    "milliseconds; read with `resilient-mcp hist summary --input-unit ns`]"
)


def slug(label: str) -> str:
    """A tag for an arm: lowercase words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "arm"


def hlog_tags(result: ComparisonResult) -> dict[str, str]:
    tags: dict[str, str] = {}
    for arm in result.arms:
        tag = slug(arm.label)
        while tag in tags.values():
            tag += "-x"
        tags[arm.label] = tag
    return tags


def write_hlog(result: ComparisonResult, directory: Path) -> Path | None:
    """Write one comparison's per-round histograms; None if none ran."""
    measured = [arm for arm in result.arms if arm.ok]
    if not measured:
        return None
    tags = hlog_tags(result)
    path = directory / f"{result.comparison.id}.hlog"
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        writer = HlogWriter(stream, max_value_unit_ratio=NS_PER_MS)
        writer.write_header(result.started_at, comment=HLOG_COMMENT)
        intervals = sorted(
            (start, length, arm.label, payload)
            for arm in measured
            for (start, length), payload in zip(
                arm.round_spans, arm.round_payloads, strict=True
            )
        )
        for start, length, label, payload in intervals:
            writer.write_interval(
                LatencyHistogram.decode(payload),
                start=start,
                length=length,
                tag=tags[label],
            )
    return path


def ns(value: float) -> str:
    if math.isnan(value):
        return ""
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.2f} ms"
    if abs(value) >= 1e3:
        return f"{value / 1e3:,.2f} us"
    return f"{value:,.0f} ns"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines.extend(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in rows
    )
    return "\n".join(lines)


def _load(load: LoadSample) -> str:
    others = (
        f"{load.others_cores:.2f} cores"
        if load.others_cores is not None
        else "unknown"
    )
    avg = ""
    if load.loadavg_before and load.loadavg_after:
        avg = (
            f"; load average {load.loadavg_before[0]:.2f} -> "
            f"{load.loadavg_after[0]:.2f}"
        )
    steal = (
        f", steal {load.steal_cores:.2f}"
        if load.steal_cores is not None
        else ""
    )
    return (
        f"other processes used {others} on average; we used "
        f"{load.own_cores:.2f}{steal}{avg}"
    )


def _comparison(result: ComparisonResult) -> str:
    comparison = result.comparison
    rows = []
    failed = []
    for arm in result.arms:
        if not arm.ok:
            failed.append(f"- {arm.label}: `{arm.error}`")
            continue
        baseline = arm.baseline if arm.label != arm.baseline else ""
        low, high = arm.ratio_range
        ratio = (
            "" if not baseline else f"{arm.ratio:.2f}x ({low:.2f}-{high:.2f})"
        )
        rows.append(
            (
                arm.label + (f" ({arm.arm.note})" if arm.arm.note else ""),
                arm.arm.kind,
                ns(arm.median_ns),
                ns(arm.p99_ns),
                ratio,
                f"{arm.p99_ratio:.2f}x" if baseline else "",
                ns(arm.added_ns) if baseline else "",
                baseline,
            )
        )
    parts = [
        f"### {comparison.title} ({comparison.where})",
        "",
        f"`{comparison.id}`: {comparison.calls:,} calls per variant per "
        f"round x {comparison.rounds} rounds, interleaved, after "
        f"{comparison.warmup_rounds} warm-up round; timer overhead "
        f"{result.timer_ns:.0f} ns subtracted; {result.wall_s:.1f} s; "
        f"{_load(result.load)}."
        + (f"  {comparison.note}" if comparison.note else ""),
        "",
        _table(
            (
                "variant",
                "kind",
                "median",
                "p99",
                "ratio (IQR)",
                "p99 ratio",
                "added",
                "vs",
            ),
            rows,
        ),
    ]
    if failed:
        parts += ["", "Did not run:", "", *failed]
    return "\n".join(parts)


def _measurement(found: Measurement) -> str:
    return "\n".join(
        [
            f"### {found.title}",
            "",
            f"{found.note}  Load: {_load(found.load)}.",
            "",
            _table(found.headers, found.rows),
        ]
    )


def _targets(verdicts: Sequence[Verdict]) -> str:
    return _table(
        ("target", "limit", "measured", "status", "by"),
        ((v.name, v.limit, v.measured, v.status, v.by) for v in verdicts),
    )


def _hot_spots(profiles: dict[str, Profile]) -> str:
    parts = []
    for name, found in profiles.items():
        parts += [
            f"#### {name}",
            "",
            (
                f"Profiled: {found.total_us:,.1f} us per call against "
                f"{found.baseline_us:,.1f} us for *{found.baseline}*.  "
                "The extra time by package: "
                + ", ".join(
                    f"{package} {share:.0%}"
                    for package, share in found.packages
                    if share >= 0.01
                )
                + "."
            ),
            "",
            _table(
                ("function", "calls per call", "extra own time", "share"),
                (
                    (
                        f"`{spot.function}`",
                        f"{spot.calls_per_call:.2f}",
                        f"{spot.extra_us:.2f} us",
                        f"{spot.share:.0%}",
                    )
                    for spot in found.spots
                ),
            ),
            "",
        ]
    return "\n".join(parts).rstrip()


def _compatibility(results: Sequence[ProbeResult]) -> str:
    if not results:
        return ""
    backends = list(results[0].outcomes)
    rows = []
    for result in results:
        cells = []
        for backend in backends:
            outcome = result.outcomes[backend]
            cells.append("ok" if outcome == "ok" else f"`{outcome}`")
        rows.append((result.library, result.feature, *cells))
    return _table(("library", "feature", *backends), rows)


def _header(info: MachineInfo) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
    peers = ", ".join(f"{k} {v}" for k, v in info.peers.items())
    return "\n".join(
        [
            (
                f"- Machine: {info.cores} cores ({info.usable_cores} usable), "
                f"{info.cpu}; {info.platform}"
            ),
            f"- Python: {info.python}; {versions}",
            f"- Peers: {peers}",
            f"- Revision: {info.revision}",
        ]
    )


def render(
    *,
    command: str,
    quick: bool,
    info: MachineInfo,
    load: LoadSample,
    started: float,
    comparisons: Sequence[ComparisonResult],
    measurements: Sequence[Measurement],
    verdicts: Sequence[Verdict],
    hot_spots: dict[str, Profile],
    compatibility: Sequence[ProbeResult],
) -> str:
    when = dt.datetime.fromtimestamp(started, tz=dt.UTC)
    missed = sum(1 for v in verdicts if v.status == MISSED)
    parts = [
        "# resilient-mcp benchmarks",
        "",
        f"Produced by `{command}` on {when:%Y-%m-%d %H:%M} UTC in "
        f"{load.wall_s / 60:.1f} minutes."
        + (
            "  **Quick mode: a smoke run; none of these numbers mean "
            "anything.**"
            if quick
            else ""
        ),
        "See `docs/performance.md` for the method and how to read this.",
        "",
        _header(info),
        (
            f"- Load during the whole run: {_load(load)}.  This machine is "
            "shared: other engineers' test runs were going on, so every "
            "comparison below states its own load too."
        ),
        "",
        (
            "Times are per call, net of the timer's own overhead.  *ratio* "
            "is the median over rounds of (this round's median / the "
            "baseline's median in the same round), with the interquartile "
            "range of those per-round ratios; *added* is the median per-round "
            "difference to the baseline (*vs*).  The absolute medians mix "
            "the machine's fast and slow periods (a shared machine switches "
            "between them every few seconds), so compare ratios and added "
            "times, which are paired within each round, not medians across "
            "rows."
        ),
        "",
        "## Targets",
        "",
        f"{missed} of {len(verdicts)} targets missed."
        if not quick
        else "Not judged in quick mode.",
        "",
        _targets(verdicts),
    ]
    if hot_spots:
        parts += [
            "",
            "## Where the time goes in the missed targets",
            "",
            (
                "Each missed variant and what its target compares it "
                "with (its floor; for the MCP client, the minimal client "
                "by hand; on asyncio, the fastest peer stack), profiled "
                "with cProfile in one event loop; per function, the "
                "variant's own time per call minus the other's, largest "
                "first.  How far off the target is: the *by* column "
                "above.  "
                "cProfile inflates every Python call alike: read the "
                "shares, not the times; and it counts every resumption of "
                "a coroutine as a call."
            ),
            "",
            _hot_spots(hot_spots),
        ]
    parts += ["", "## Comparisons"]
    for result in comparisons:
        parts += ["", _comparison(result)]
    if measurements:
        parts += ["", "## Scale"]
        for found in measurements:
            parts += ["", _measurement(found)]
    if compatibility:
        parts += [
            "",
            "## Which peers run on trio",
            "",
            (
                "Each feature driven through its slow path too (a retry that "
                "waits, a circuit that opens, a timeout that fires, a "
                "contended bulkhead), on a fresh loop of each backend."
            ),
            "",
            _compatibility(compatibility),
        ]
    return "\n".join(parts) + "\n"
