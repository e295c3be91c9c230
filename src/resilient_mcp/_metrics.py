"""
Latency histograms: the only module that imports ``hdrh``.

Values are recorded in whole microseconds into an HdrHistogram, so that
percentiles are exact to the configured number of significant digits
instead of the "maximum called p95" of the seed's Go example.
"""

from __future__ import annotations

from typing import Final, final

import attrs

from hdrh.histogram import HdrHistogram


LOWEST_US: Final = 1  # microseconds
HIGHEST_US: Final = 3_600_000_000  # microseconds: one hour
SIGNIFICANT_FIGURES: Final = 3  # decimal digits of precision
US_PER_SECOND: Final = 1_000_000


@final
@attrs.define(eq=False, repr=False)
class LatencyHistogram:
    """
    An HdrHistogram of durations, fed seconds, stored in microseconds.

    Values above the trackable range are clamped to its top, so that one
    pathological value can never make recording fail.

    Args:
        lowest_us: Smallest distinguishable value, microseconds.
        highest_us: Largest trackable value, microseconds.
        significant_figures: Decimal digits of precision (1 to 5).

    .. versionadded:: 0.1.0
    """

    lowest_us: int = attrs.field(default=LOWEST_US, kw_only=True)
    highest_us: int = attrs.field(default=HIGHEST_US, kw_only=True)
    significant_figures: int = attrs.field(
        default=SIGNIFICANT_FIGURES, kw_only=True
    )
    _hist: HdrHistogram = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._hist = HdrHistogram(
            self.lowest_us, self.highest_us, self.significant_figures
        )

    def __repr__(self) -> str:
        return f"<LatencyHistogram {self.count} values>"

    @property
    def hdr(self) -> HdrHistogram:
        """The underlying :class:`hdrh.histogram.HdrHistogram`."""
        return self._hist

    def record(self, seconds: float, count: int = 1) -> None:
        """Record a duration of *seconds*, *count* times."""
        self.record_us(int(seconds * US_PER_SECOND), count)

    def record_us(self, value_us: int, count: int = 1) -> None:
        """Record a duration in whole microseconds, *count* times."""
        value_us = max(value_us, 0)
        value_us = min(value_us, self.highest_us)
        self._hist.record_value(value_us, count)

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return int(self._hist.get_total_count())

    def percentile(self, percentile: float) -> float:
        """The value at *percentile* (0 to 100), in seconds; 0 if empty."""
        if self._hist.get_total_count() == 0:
            return 0.0
        value = self._hist.get_value_at_percentile(percentile)
        return float(value) / US_PER_SECOND

    def mean(self) -> float:
        """The mean, in seconds; 0 if empty."""
        if self._hist.get_total_count() == 0:
            return 0.0
        return float(self._hist.get_mean_value()) / US_PER_SECOND

    def max(self) -> float:
        """The largest value (to the histogram's precision), seconds."""
        if self._hist.get_total_count() == 0:
            return 0.0
        return float(self._hist.get_max_value()) / US_PER_SECOND
