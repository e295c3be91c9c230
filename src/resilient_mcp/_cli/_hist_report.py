"""
The work behind ``resilient-mcp hist``: load, select, summarize, compare.

Functions of parsed ``.hlog`` files that return histograms, rows and the
text the command prints (:func:`load`, :func:`select`, :func:`summarize`,
:func:`format_distribution`, :func:`diff`, :func:`merge_files`), which
the tests call directly; :mod:`._hist` wires them to the command line.
"""

from __future__ import annotations

import math
import os

from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

import attrs

from .._hlog import (
    HlogFile,
    HlogFormatError,
    HlogInterval,
    histograms_by_tag,
    key_from_tag,
    merge_by_tag,
    read_hlog,
)
from .._metrics import (
    DEFAULT_TICKS_PER_HALF_DISTANCE,
    LatencyHistogram,
    merge_histograms,
)
from ._common import CliError


UNITS: Final = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Nanoseconds per unit, for ``--unit`` and ``--input-unit``."""
DEFAULT_UNIT: Final = "ms"  # what people read latencies in
DEFAULT_INPUT_UNIT: Final = "us"  # what LatencyRecorder records
UNTAGGED: Final = "(untagged)"  # how the untagged histograms are shown
SUMMARY_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)
DIFF_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9, 99.99)


def scale(unit: str, input_unit: str = DEFAULT_INPUT_UNIT) -> float:
    """What recorded values are divided by to show them in *unit*."""
    return UNITS[unit] / UNITS[input_unit]


def tag_label(tag: str | None) -> str:
    """How a tag is shown: the untagged histograms read ``(untagged)``."""
    return UNTAGGED if tag is None else tag


def _decimals(ratio: float) -> int:
    # Enough decimals to show one recorded unit: 3 for us shown in ms.
    return max(0, round(math.log10(ratio))) if ratio > 1 else 0


def load(paths: Iterable[str | os.PathLike[str]]) -> list[HlogFile]:
    """
    Read ``.hlog`` files.

    Raises:
        CliError: A file could not be read, or is not a valid log; the
            message names the file (and the line).
    """
    files = []
    for path in paths:
        try:
            files.append(read_hlog(path))
        except HlogFormatError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CliError(f"{os.fspath(path)}: {reason}") from None
    return files


def _matches(interval: HlogInterval, tag: str | None) -> bool:
    if tag is None or interval.tag is None:
        return interval.tag == tag
    return tag in {interval.tag, key_from_tag(interval.tag)}


def _all_tags(files: Sequence[HlogFile]) -> list[str | None]:
    tags = {tag for f in files for tag in f.tags()}
    ordered: list[str | None] = [None] if None in tags else []
    ordered.extend(sorted(t for t in tags if t is not None))
    return ordered


def select(
    files: Sequence[HlogFile], tag: str | None = None
) -> LatencyHistogram:
    """
    Add up the intervals with *tag* over every file.

    Args:
        files: The logs.
        tag: A tag (as written in the files, or the operation key it
            encodes), or ``None`` for the untagged intervals, where the
            recorder puts its overall histogram.

    Returns:
        The sum of the matching intervals' histograms.

    Raises:
        CliError: No interval has *tag*; the message lists the tags.
    """
    found = [
        interval
        for f in files
        for interval in f.intervals
        if _matches(interval, tag)
    ]
    if not found:
        names = ", ".join(f.path for f in files)
        tags = ", ".join(tag_label(t) for t in _all_tags(files)) or "none"
        what = "untagged" if tag is None else f"{tag!r}"
        raise CliError(
            f"no {what} histograms in {names} (tags: {tags}); pick one "
            "with --tag, or use --per-tag"
        )
    return merge_histograms(interval.histogram() for interval in found)


def by_tag(files: Sequence[HlogFile]) -> dict[str | None, LatencyHistogram]:
    """
    Add up the intervals of every file, per tag.

    Returns:
        One histogram per tag, untagged first, then by tag.

    Raises:
        CliError: The files hold no intervals at all.
    """
    merged = histograms_by_tag(i for f in files for i in f.intervals)
    if not merged:
        names = ", ".join(f.path for f in files)
        raise CliError(f"no histograms in {names}")
    return merged


def merge_files(files: Sequence[HlogFile]) -> dict[str | None, HlogInterval]:
    """Add up the intervals of every file per tag (see ``merge_by_tag``)."""
    return merge_by_tag(i for f in files for i in f.intervals)


def java_fixed(value: float, decimals: int) -> str:
    """
    Format like Java's ``%.Nf``: round the shortest decimal form half up.

    Python rounds the exact binary value instead, so a level that prints
    as ...73437 here is ...73438 in Java's tables.
    """
    exact = Decimal(repr(value))
    return f"{exact.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP):f}"


def format_distribution(
    histogram: LatencyHistogram,
    ratio: float,
    ticks_per_half_distance: int = DEFAULT_TICKS_PER_HALF_DISTANCE,
) -> str:
    """
    The percentile distribution, as Java's ``outputPercentileDistribution``.

    Args:
        histogram: The histogram.
        ratio: What values are divided by for display.
        ticks_per_half_distance: Rows per halving of the distance to 100%.

    Returns:
        The table and its ``#[Mean ...]``, ``#[Max ...]`` and
        ``#[Buckets ...]`` footer, newline-terminated, character for
        character as Java prints them.
    """
    digits = histogram.significant_figures

    def fixed(value: float, decimals: int = digits) -> str:
        return java_fixed(value, decimals)

    header = (
        f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} "
        f"{'1/(1-Percentile)':>14}"
    )
    lines = [header, ""]
    for row in histogram.percentile_distribution(ticks_per_half_distance):
        line = (
            f"{fixed(row.value / ratio):>12} "
            f"{fixed(row.percentile / 100.0, 12):>2} {row.total_count:10d}"
        )
        if row.percentile < 100.0:
            line += f" {fixed(row.inverse, 2):>14}"
        lines.append(line)
    mean = fixed(histogram.mean_value() / ratio)
    stddev = fixed(histogram.stddev_value() / ratio)
    top = fixed(histogram.max_value() / ratio)
    lines.append(f"#[Mean    = {mean:>12}, StdDeviation   = {stddev:>12}]")
    lines.append(
        f"#[Max     = {top:>12}, Total count    = {histogram.count:12d}]"
    )
    lines.append(
        f"#[Buckets = {histogram.bucket_count:12d}, SubBuckets     = "
        f"{histogram.sub_bucket_count:12d}]"
    )
    return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class SummaryRow:
    """One line of ``hist summary``: a tag's percentiles, raw units."""

    tag: str | None
    """The tag (``None``: untagged)."""
    count: int
    """How many values."""
    percentiles: tuple[int, ...]
    """The values at :data:`SUMMARY_PERCENTILES`."""
    max: int
    """The largest value."""


def summarize(files: Sequence[HlogFile]) -> list[SummaryRow]:
    """
    The count, percentiles and maximum per tag, over every file.

    Raises:
        CliError: The files hold no intervals at all.
    """
    return [
        SummaryRow(
            tag=tag,
            count=histogram.count,
            percentiles=tuple(
                histogram.values_at_percentiles(SUMMARY_PERCENTILES)
            ),
            max=histogram.max_value(),
        )
        for tag, histogram in by_tag(files).items()
    ]


def _percent(percentile: float) -> str:
    return f"p{percentile:g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(line[column]) for line in [header, *rows])
        for column in range(len(header))
    ]
    lines = []
    for line in [header, *rows]:
        cells = [line[0].ljust(widths[0])]
        cells += [
            cell.rjust(width)
            for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_summary(rows: Sequence[SummaryRow], unit: str, ratio: float) -> str:
    """``hist summary``'s table: one line per tag, values in *unit*."""
    decimals = _decimals(ratio)
    header = [
        "tag",
        "count",
        *(f"{_percent(p)}({unit})" for p in SUMMARY_PERCENTILES),
        f"max({unit})",
    ]
    lines = [
        [
            tag_label(row.tag),
            str(row.count),
            *(
                f"{v / ratio:.{decimals}f}"
                for v in (*row.percentiles, row.max)
            ),
        ]
        for row in rows
    ]
    return _table(header, lines)


@attrs.frozen(kw_only=True)
class DiffRow:
    """One line of ``hist diff``: a statistic of both logs, raw units."""

    name: str
    """``count``, ``mean``, ``p50`` ... or ``max``."""
    a: float
    """The first log's value."""
    b: float
    """The second log's value."""

    @property
    def ratio(self) -> float | None:
        """``b / a``, or ``None`` when *a* is 0."""
        return self.b / self.a if self.a else None


def diff(a: LatencyHistogram, b: LatencyHistogram) -> list[DiffRow]:
    """Count, mean, percentiles and maximum of *a* and *b*, side by side."""
    rows = [
        DiffRow(name="count", a=a.count, b=b.count),
        DiffRow(name="mean", a=a.mean_value(), b=b.mean_value()),
    ]
    rows += [
        DiffRow(name=_percent(p), a=va, b=vb)
        for p, va, vb in zip(
            DIFF_PERCENTILES,
            a.values_at_percentiles(DIFF_PERCENTILES),
            b.values_at_percentiles(DIFF_PERCENTILES),
            strict=True,
        )
    ]
    rows.append(DiffRow(name="max", a=a.max_value(), b=b.max_value()))
    return rows


def format_diff(
    rows: Sequence[DiffRow],
    unit: str,
    ratio: float,
    *,
    names: tuple[str, str],
    tag: str | None,
) -> str:
    """``hist diff``'s table: both values in *unit*, and their ratio."""
    decimals = _decimals(ratio)
    lines = []
    for row in rows:
        if row.name == "count":
            name, a, b = row.name, str(int(row.a)), str(int(row.b))
        else:
            name = f"{row.name}({unit})"
            a = f"{row.a / ratio:.{decimals}f}"
            b = f"{row.b / ratio:.{decimals}f}"
        shown = "-" if row.ratio is None else f"{row.ratio:.3f}"
        lines.append([name, a, b, shown])
    return f"A: {names[0]}\nB: {names[1]}\ntag: {tag_label(tag)}\n" + _table(
        ["", "A", "B", "B/A"], lines
    )
