"""
:class:`LatencyHistogram`: seconds in, microsecond counters, Java stats.

The public face of one histogram: it clamps and rounds what is recorded,
keeps its counters sparse until they fill (see :mod:`._counts`), and
reads them with :mod:`._stats`.

Recording is the hot path, so :meth:`LatencyHistogram.record` does not
call ``HdrHistogram.record_value``: it computes the counts-array index
inline (the same arithmetic as :func:`._counts.index_of`, minus a few
Python calls) and bumps the counter directly.  A Hypothesis test
(``tests/test_metrics_fast_path.py``) proves the histograms identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, final

import attrs

from ._codec import decode_hdr
from ._counts import (
    Full,
    Hist,
    Sparse,
    add_into,
    clear,
    dense,
    new_like,
    new_sparse,
    record_value,
    record_value_corrected,
    same_layout,
)
from ._layout import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    US_PER_SECOND,
    check_range,
    floor,
    to_us,
)
from ._stats import (
    DEFAULT_TICKS_PER_HALF_DISTANCE,
    counts_at_or_below,
    distribution,
    hist_max,
    hist_mean,
    hist_min,
    hist_stddev,
    snapshot_of,
    values_at,
)
from ._values import LatencySnapshot, PercentileRow


def _covers(wide: Hist, narrow: Hist) -> bool:
    return same_layout(wide, narrow) or (
        wide.lowest_trackable_value <= narrow.lowest_trackable_value
        and wide.highest_trackable_value >= narrow.highest_trackable_value
        and wide.significant_figures >= narrow.significant_figures
    )


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class LatencyHistogram:
    """
    An HdrHistogram of durations, fed seconds, stored in microseconds.

    Values above the trackable range are clamped to its top, and negative
    durations (and NaN) are recorded as 0, so that one pathological value
    can never make recording fail.  Seconds are rounded to the nearest
    microsecond.

    The counters are allocated as they are first used (see
    ``docs/metrics.md``), so an empty histogram costs a few hundred
    bytes, and one that fills many buckets no more than ``hdrh``'s array.

    Not thread-safe: record from one thread (the event loop's).

    Args:
        lowest_us: Smallest distinguishable value, microseconds.
        highest_us: Largest trackable value, microseconds; at least twice
            *lowest_us*.
        significant_figures: Decimal digits of precision (1 to 5).

    Raises:
        ConfigurationError: A setting is out of range.

    .. versionadded:: 0.1.0
    """

    lowest_us: int = attrs.field(default=LOWEST_US, kw_only=True)
    highest_us: int = attrs.field(default=HIGHEST_US, kw_only=True)
    significant_figures: int = attrs.field(
        default=SIGNIFICANT_FIGURES, kw_only=True
    )
    _hist: Hist = attrs.field(init=False)
    # The layout, copied out of the histogram for the hot path.
    _mask: int = attrs.field(init=False)
    _half: int = attrs.field(init=False)
    _unit: int = attrs.field(init=False)
    _top_seconds: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        check_range(
            "LatencyHistogram",
            self.lowest_us,
            self.highest_us,
            self.significant_figures,
        )
        self._bind(
            new_sparse(
                self.lowest_us, self.highest_us, self.significant_figures
            )
        )

    def _bind(self, hist: Hist) -> None:
        self._hist = hist
        self._mask = hist.sub_bucket_mask
        self._half = hist.sub_bucket_half_count_magnitude
        self._unit = hist.unit_magnitude
        self._top_seconds = self.highest_us / US_PER_SECOND

    @classmethod
    def from_hdr(cls, hdr: Hist) -> LatencyHistogram:
        """
        A histogram over the counters of *hdr*, shared, not copied.

        The inverse of :attr:`hdr`: the two objects share the counters, so
        what is recorded through either is seen through the other.  The
        settings (:attr:`lowest_us`, :attr:`highest_us` and
        :attr:`significant_figures`) are *hdr*'s.

        Args:
            hdr: An :class:`hdrh.histogram.HdrHistogram` of whole
                microseconds.  The library also passes its own sparse
                histograms, which have the same counters at the same
                indices.

        Returns:
            A histogram that records into, and reads from, *hdr*.
        """
        self = cls.__new__(cls)
        self.lowest_us = hdr.lowest_trackable_value
        self.highest_us = hdr.highest_trackable_value
        self.significant_figures = hdr.significant_figures
        self._bind(hdr)
        return self

    def __repr__(self) -> str:
        return f"<LatencyHistogram {self.count} values>"

    @property
    def hdr(self) -> Any:
        """
        The underlying :class:`hdrh.histogram.HdrHistogram`.

        A histogram that is still sparse becomes dense for good here (it
        allocates ``hdrh``'s whole counts array), so that what is done
        through the returned object is seen by this one, and vice versa.
        """
        hist = self._hist
        if isinstance(hist, Sparse):
            hist = self._hist = dense(hist)
        return hist

    @property
    def bucket_count(self) -> int:
        """Buckets in the histogram's layout (each twice the last)."""
        return self._hist.bucket_count

    @property
    def sub_bucket_count(self) -> int:
        """Linear sub-buckets per bucket."""
        return self._hist.sub_bucket_count

    def record(self, seconds: float, count: int = 1) -> None:
        """Record a duration of *seconds*, *count* times."""
        # to_us and record_value inlined: this is the hot path.
        # The common case first, in one chained comparison; the literal
        # is US_PER_SECOND without the global lookup.  NaN fails both
        # tests and is recorded as 0.  floor, not int(): the same for a
        # positive number, and int() of a float costs three times more.
        if 0.0 < seconds < self._top_seconds:
            value = floor(seconds * 1_000_000.0 + 0.5)
        elif seconds > 0.0:
            value = self.highest_us
        else:
            value = 0
        hist = self._hist
        half = self._half
        shift = (value | self._mask).bit_length() - half - 1
        index = ((shift - self._unit) << half) + (value >> shift)
        try:
            hist.counts[index] += count
        except Full:
            hist = self._hist = dense(hist)
            hist.counts[index] += count
        hist.total_count += count
        if value > hist.max_value:  # noqa: PLR1730
            hist.max_value = value
        if value < hist.min_value:  # noqa: PLR1730
            hist.min_value = value

    def record_us(self, value_us: int, count: int = 1) -> None:
        """Record a duration in whole microseconds, *count* times."""
        value_us = max(value_us, 0)
        value_us = min(value_us, self.highest_us)
        self._hist = record_value(self._hist, value_us, count)

    def record_corrected(
        self, seconds: float, expected_interval: float, count: int = 1
    ) -> None:
        """
        Record *seconds*, correcting for coordinated omission.

        See :meth:`LatencyRecorder.record_corrected`.
        """
        top = self.highest_us
        self._hist = record_value_corrected(
            self._hist,
            to_us(seconds, top),
            to_us(expected_interval, top),
            count,
        )

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return self._hist.total_count

    def percentile(self, percentile: float) -> float:
        """The value at *percentile* (0 to 100), in seconds; 0 if empty."""
        return self.value_at_percentile(percentile) / US_PER_SECOND

    def mean(self) -> float:
        """The mean, in seconds; 0 if empty."""
        return hist_mean(self._hist) / US_PER_SECOND

    def stddev(self) -> float:
        """The standard deviation, in seconds; 0 if empty."""
        return hist_stddev(self._hist) / US_PER_SECOND

    def min(self) -> float:
        """The smallest value (bottom of its bucket), seconds; 0 if empty."""
        return hist_min(self._hist) / US_PER_SECOND

    def max(self) -> float:
        """The largest value (top of its bucket), seconds; 0 if empty."""
        return hist_max(self._hist) / US_PER_SECOND

    def snapshot(self) -> LatencySnapshot:
        """Summarize the histogram: count, mean, percentiles, extremes."""
        return snapshot_of(self._hist)

    def value_at_percentile(self, percentile: float) -> int:
        """
        The value at *percentile*, in the histogram's unit.

        The smallest recorded value that at least *percentile* percent of
        the values are less than or equal to, as the top of its bucket (the
        Java HdrHistogram's definition).

        Args:
            percentile: 0 to 100; 0 gives the bottom of the minimum's
                bucket.

        Returns:
            The value, in microseconds for histograms this library
            records; 0 if the histogram is empty.
        """
        return values_at(self._hist, (percentile,))[0]

    def values_at_percentiles(self, percentiles: Sequence[float]) -> list[int]:
        """Like :meth:`value_at_percentile`, for many, in one pass."""
        return values_at(self._hist, percentiles)

    def cumulative_counts(self, bounds: Sequence[float]) -> list[int]:
        """
        How many values took at most each of *bounds* seconds.

        The counts of a Prometheus histogram's ``le`` buckets, read from
        the recorded values: a value counts in a bound when the bottom of
        its bucket is at most the bound, so every value at or below the
        bound is counted, and one up to the histogram's precision above
        it (0.1% at 3 significant digits) may be too.

        Args:
            bounds: Ascending upper bounds, in seconds.

        Returns:
            One cumulative count per bound.

        .. versionadded:: 0.1.0
        """
        # Values are whole microseconds: v <= bound iff v <= floor(bound).
        # The epsilon absorbs float error in bound * 1e6 (0.3 -> 299999.99).
        return counts_at_or_below(
            self._hist,
            [floor(b * US_PER_SECOND + 1e-6) for b in bounds],
        )

    def min_value(self) -> int:
        """The smallest value (bottom of its bucket), histogram units."""
        return hist_min(self._hist)

    def max_value(self) -> int:
        """The largest value (top of its bucket), histogram units."""
        return hist_max(self._hist)

    def mean_value(self) -> float:
        """The mean, in the histogram's units; 0 if empty."""
        return hist_mean(self._hist)

    def stddev_value(self) -> float:
        """The standard deviation, in the histogram's units; 0 if empty."""
        return hist_stddev(self._hist)

    def percentile_distribution(
        self, ticks_per_half_distance: int = DEFAULT_TICKS_PER_HALF_DISTANCE
    ) -> list[PercentileRow]:
        """
        The rows of HdrHistogram's classic percentile distribution table.

        The same rows, at the same levels, as Java's
        ``outputPercentileDistribution``.

        Args:
            ticks_per_half_distance: Rows per halving of the distance to
                100% (the Java default is 5).

        Returns:
            The rows, ending with one at 100%; empty if the histogram is.
        """
        return distribution(self._hist, ticks_per_half_distance)

    def add(self, other: LatencyHistogram) -> None:
        """
        Add the values of *other* to this histogram.

        Raises:
            ValueError: *other* holds values beyond this histogram's range.
        """
        self._hist = add_into(self._hist, other._hist)

    def covers(self, other: LatencyHistogram) -> bool:
        """
        Whether this histogram's range and precision take in *other*'s.

        True if both have the same layout (the same counters), or if this
        one's range includes *other*'s at no fewer significant figures:
        then :meth:`add` fits every value of *other* at least as precisely
        as *other* holds it.  :func:`merge_histograms` widens the settings
        of its sum whenever this is false.
        """
        return _covers(self._hist, other._hist)

    def copy(self) -> LatencyHistogram:
        """An independent copy, with the same settings and counts."""
        hdr = self._hist
        return LatencyHistogram.from_hdr(add_into(new_like(hdr), hdr))

    def reset(self) -> None:
        """Forget every value."""
        clear(self._hist)

    def encode(self) -> str:
        """
        Encode in HdrHistogram's V2 compressed base64 form.

        This is the payload of an ``.hlog`` interval line, readable by the
        Java, C and Python HdrHistogram libraries.  A sparse histogram is
        encoded through a dense copy, so both forms give the same bytes.
        """
        return dense(self._hist).encode().decode("ascii")

    @classmethod
    def decode(cls, encoded: str | bytes) -> LatencyHistogram:
        """
        Decode what :meth:`encode` (or any HdrHistogram library) made.

        Args:
            encoded: The base64 V2 compressed form.

        Returns:
            A histogram with the encoded settings and counts.

        Raises:
            ValueError: *encoded* is not a valid encoded histogram; the
                message says what is wrong with it.
        """
        return cls.from_hdr(decode_hdr(encoded))


def merge_histograms(
    histograms: Iterable[LatencyHistogram],
) -> LatencyHistogram:
    """
    Add histograms together into a new one.

    Histograms with different settings can be merged: the result covers
    the widest range at the finest precision among them.  The histograms
    are consumed one at a time, so a generator that decodes them lazily
    keeps only two in memory.

    Args:
        histograms: The histograms; none of them is changed.

    Returns:
        Their sum (an empty default histogram if there are none).

    .. versionadded:: 0.1.0
    """
    merged: LatencyHistogram | None = None
    for histogram in histograms:
        if merged is None or not merged.covers(histogram):
            base = histogram if merged is None else merged
            lowest = min(base.lowest_us, histogram.lowest_us)
            wider = LatencyHistogram(
                lowest_us=lowest,
                # The largest value held counts too: a finer layout may
                # end below a value in a coarser one's last bucket.
                highest_us=max(
                    base.highest_us,
                    histogram.highest_us,
                    2 * lowest,
                    base.max_value(),
                    histogram.max_value(),
                ),
                significant_figures=max(
                    base.significant_figures, histogram.significant_figures
                ),
            )
            if merged is not None:
                wider.add(merged)
            merged = wider
        merged.add(histogram)
    if merged is None:
        return LatencyHistogram()
    return merged
