"""
Statistics of a histogram's counters, by the Java HdrHistogram's rules.

Reading is rare, so the statistics are computed here from the counters,
in either form (see :mod:`._counts`), with the definitions of the Java
HdrHistogram, which the Python port does not follow everywhere (see
``docs/metrics.md``).  Values are in the histogram's unit (microseconds
for histograms this library records) except in :func:`snapshot_of`,
which reports seconds.
"""

from __future__ import annotations

import bisect
import itertools
import math

from collections.abc import Sequence
from typing import Final

from ._counts import Hist, Sparse, nonzero, used_counts
from ._layout import US_PER_SECOND
from ._values import LatencySnapshot, PercentileRow


DEFAULT_TICKS_PER_HALF_DISTANCE: Final = 5  # rows per halving of 100% - p


def _target_count(percentile: float, total: int) -> int:
    # Java's getValueAtPercentile: one ulp below the percentile, so that
    # 0.99 * 100 = 99.00000000000001 does not round up into the next
    # value, then the smallest count reaching it (nearest rank).
    requested = min(max(math.nextafter(percentile, -math.inf), 0.0), 100.0)
    return max(math.ceil((requested / 100.0) * total), 1)


def values_at(hdr: Hist, percentiles: Sequence[float]) -> list[int]:
    """
    The values at *percentiles*, by the Java HdrHistogram's definition.

    The value at percentile *p* is the smallest recorded value that at
    least *p* percent of all values are less than or equal to, reported as
    the highest value equivalent to it (the top of its bucket), except at
    ``p == 0`` (the bottom of the minimum's bucket).  The Python ``hdrh``
    rounds the target count to nearest instead of up, which can report a
    p90 below 90% of the values.
    """
    total = hdr.total_count
    if not total:
        return [0 for _ in percentiles]
    if isinstance(hdr, Sparse):
        # The same search over the non-zero counters only: the first
        # counter whose running sum reaches the target is never a zero.
        pairs = nonzero(hdr)
        indices: Sequence[int] = [index for index, _ in pairs]
        cumulative = list(itertools.accumulate(c for _, c in pairs))
    else:
        cumulative = list(itertools.accumulate(used_counts(hdr)))
        indices = range(len(cumulative))
    last = len(cumulative) - 1
    values = []
    for percentile in percentiles:
        target = _target_count(percentile, total)
        index = indices[min(bisect.bisect_left(cumulative, target), last)]
        value = hdr.get_value_from_index(index)
        if percentile == 0.0:
            values.append(hdr.get_lowest_equivalent_value(value))
        else:
            values.append(hdr.get_highest_equivalent_value(value))
    return values


def counts_at_or_below(hdr: Hist, bounds: Sequence[int]) -> list[int]:
    """
    How many values are at most each bound (ascending), cumulatively.

    A value counts as at most *bound* when the bottom of its bucket is:
    every value that is at most *bound* is counted, and so may be one up
    to a bucket's width (the histogram's precision) above it.
    """
    out: list[int] = []
    pairs = nonzero(hdr)
    value_of = hdr.get_value_from_index
    running = position = 0
    for bound in bounds:
        while position < len(pairs):
            index, count = pairs[position]
            if value_of(index) > bound:
                break
            running += count
            position += 1
        out.append(running)
    return out


def _median_equivalent(hdr: Hist, value: int) -> int:
    low = hdr.get_lowest_equivalent_value(value)
    return low + ((hdr.get_highest_equivalent_value(value) + 1 - low) >> 1)


def hist_mean(hdr: Hist) -> float:
    """The mean, each value taken at the middle of its bucket; 0 if empty."""
    total = hdr.total_count
    if not total:
        return 0.0
    values = hdr.get_value_from_index
    weighted = sum(
        _median_equivalent(hdr, values(index)) * count
        for index, count in nonzero(hdr)
    )
    return weighted / total


def hist_stddev(hdr: Hist) -> float:
    """The standard deviation, like :func:`hist_mean`; 0 if empty."""
    total = hdr.total_count
    if not total:
        return 0.0
    mean = hist_mean(hdr)
    values = hdr.get_value_from_index
    squares = sum(
        (_median_equivalent(hdr, values(index)) - mean) ** 2 * count
        for index, count in nonzero(hdr)
    )
    return math.sqrt(squares / total)


def hist_min(hdr: Hist) -> int:
    """The smallest value, as the bottom of its bucket; 0 if empty."""
    if not hdr.total_count:
        return 0
    return hdr.get_lowest_equivalent_value(hdr.min_value)


def hist_max(hdr: Hist) -> int:
    """The largest value, as the top of its bucket; 0 if empty."""
    if not hdr.total_count:
        return 0
    return hdr.get_highest_equivalent_value(hdr.max_value)


def _next_level(level: float, ticks: int) -> float:
    # Java's PercentileIterator.incrementIterationLevel, integer casts
    # included (the Python hdrh drops them and prints other rows).
    halvings = int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
    return level + 100.0 / (ticks << halvings)


def distribution(hdr: Hist, ticks: int) -> list[PercentileRow]:
    """
    The rows of Java's ``outputPercentileDistribution``.

    A port of ``PercentileIterator``: levels start at 0% and step
    ``100 / (ticks * 2**halvings)`` at a time, so every halving of the
    distance to 100% gets *ticks* rows; a row is due when the counts so far
    reach its level, and a last row at 100% closes the table.
    """
    total = hdr.total_count
    rows: list[PercentileRow] = []
    if not total:
        return rows
    level = 0.0
    so_far = 0
    for index, count in nonzero(hdr):
        so_far += count
        value = hdr.get_highest_equivalent_value(
            hdr.get_value_from_index(index)
        )
        while 100.0 * so_far / total >= level:
            rows.append(
                PercentileRow(
                    value=value, percentile=level, total_count=so_far
                )
            )
            if so_far >= total:
                rows.append(
                    PercentileRow(
                        value=value, percentile=100.0, total_count=so_far
                    )
                )
                return rows
            level = _next_level(level, ticks)
    return rows  # pragma: no cover - only for counts that disagree


_SNAPSHOT_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)


def snapshot_of(hdr: Hist) -> LatencySnapshot:
    """Summarize *hdr* (recorded in microseconds) in seconds."""
    p50, p90, p95, p99, p999 = (
        value / US_PER_SECOND
        for value in values_at(hdr, _SNAPSHOT_PERCENTILES)
    )
    return LatencySnapshot(
        count=hdr.total_count,
        mean=hist_mean(hdr) / US_PER_SECOND,
        min=hist_min(hdr) / US_PER_SECOND,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
        max=hist_max(hdr) / US_PER_SECOND,
    )
