"""
The frozen values the histograms and the recorder report.

:class:`LatencySnapshot` (a summary in seconds), :class:`PercentileRow`
(a row of the classic percentile table) and
:class:`LatencyRecorderMetrics` (the recorder's bookkeeping).  Plain
data with no behaviour beyond derived properties, so that every other
module of :mod:`resilient_mcp._metrics` can build them.
"""

from __future__ import annotations

import math

from typing import Final

import attrs


@attrs.frozen(kw_only=True)
class PercentileRow:
    """
    One row of a percentile distribution, as HdrHistogram prints them.

    .. versionadded:: 0.1.0
    """

    value: int
    """The value at this level, in the histogram's unit (microseconds for
    histograms this library records)."""
    percentile: float
    """The percentile level, 0 to 100."""
    total_count: int
    """How many values are less than or equal to :attr:`value`."""

    @property
    def inverse(self) -> float:
        """``1 / (1 - percentile / 100)``: the spectrum plot's x axis."""
        if self.percentile >= 100.0:
            return math.inf
        return 1.0 / (1.0 - self.percentile / 100.0)


@attrs.frozen(kw_only=True)
class LatencySnapshot:
    """
    A summary of a set of latencies, in seconds.

    Each value is reported to the histogram's precision (0.1% at the
    default three significant digits): percentiles and the maximum as the
    top of their bucket, so never below the real value, and the minimum
    as the bottom of its bucket.  An empty set reads 0 everywhere.

    .. versionadded:: 0.1.0
    """

    count: int
    """How many latencies were recorded."""
    mean: float
    """The arithmetic mean."""
    min: float
    """The smallest latency."""
    p50: float
    """The median: half of the calls took at most this long."""
    p90: float
    """90% of the calls took at most this long; one in ten took longer."""
    p95: float
    """95% took at most this long; one in twenty took longer."""
    p99: float
    """99% took at most this long; one in a hundred took longer."""
    p999: float
    """99.9% took at most this long; one in a thousand took longer."""
    max: float
    """The largest latency."""


EMPTY_SNAPSHOT: Final = LatencySnapshot(
    count=0,
    mean=0.0,
    min=0.0,
    p50=0.0,
    p90=0.0,
    p95=0.0,
    p99=0.0,
    p999=0.0,
    max=0.0,
)
"""The snapshot of no latencies at all."""


@attrs.frozen(kw_only=True)
class LatencyRecorderMetrics:
    """
    A snapshot of a :class:`LatencyRecorder`'s bookkeeping.

    .. versionadded:: 0.1.0
    """

    keys: int
    """Operation keys with a histogram now."""
    max_keys: int
    """The most keys kept at once."""
    evicted_keys: int
    """Keys dropped, least recently used first, to stay under
    :attr:`max_keys` (their values stay in the overall histogram)."""
    total_count: int
    """Values recorded, over all keys, since the recorder was created."""
    histograms: int
    """HdrHistograms allocated (per key, and one for the values of evicted
    keys; interval and cumulative)."""
    histogram_bytes: int
    """Bytes in those histograms' counters (the counts array of a dense
    histogram, the dictionary of a sparse one)."""
