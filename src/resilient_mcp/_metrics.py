"""
Latency histograms, and a recorder that keeps one per operation.

This module and :mod:`._hlog` are the only ones that import ``hdrh``.

Values are recorded in whole microseconds into HdrHistograms, so that
percentiles are exact to the configured number of significant digits
instead of the "maximum called p95" of the seed's Go example.

A histogram starts *sparse*: a dictionary from counts-array index to
count, holding only the buckets in use.  A default ``hdrh`` histogram is
an array of 23,552 counters (184 KiB) allocated up front, while a tool's
latencies typically fill a few dozen buckets; a recorder that keeps a
histogram per tool for 10,000 tools would hold 1.8 GB of zeros.  Once a
sparse histogram holds about as many buckets as would cost the dense
array's bytes, it is *promoted*: its counts move into the ``hdrh`` array
and it stays dense.  Both forms hold the same counters at the same
indices, so every statistic, merge and encoding is the same whichever
form a histogram is in (``tests/test_metrics_sparse.py`` checks that
with Hypothesis).

Recording is the hot path, so :class:`LatencyRecorder` and
:class:`LatencyHistogram` do not call ``HdrHistogram.record_value``: they
compute the counts-array index inline (the same arithmetic, minus a few
Python calls) and bump the counters directly.  A Hypothesis test
(``tests/test_metrics_fast_path.py``) proves the histograms identical.
Reading is rare, so the statistics are computed here from the counters
with the definitions of the Java HdrHistogram, which the Python port does
not follow everywhere (see ``docs/metrics.md``).
"""

from __future__ import annotations

import base64
import bisect
import ctypes
import functools
import itertools
import math
import struct
import sys
import zlib

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, final

import attrs

from hdrh.codec import HdrPayload
from hdrh.histogram import HdrHistogram, get_bucket_count

from ._config import ConfigurationError


if TYPE_CHECKING:
    from ._hlog import HlogWriter


LOWEST_US: Final = 1  # microseconds
HIGHEST_US: Final = 3_600_000_000  # microseconds: one hour
SIGNIFICANT_FIGURES: Final = 3  # decimal digits of precision
US_PER_SECOND: Final = 1_000_000
DEFAULT_MAX_KEYS: Final = 256  # operation keys with their own histogram
DEFAULT_TICKS_PER_HALF_DISTANCE: Final = 5  # rows per halving of 100% - p
MAX_DECODED_COUNTS: Final = 1 << 22  # counters (32 MiB) a payload may ask
# What one bucket of a sparse histogram costs, about: its dict slot and
# entry with the table's slack, plus the index (and, past 256, the count)
# as int objects.  A sparse histogram is promoted to the dense array once
# it holds the dense array's bytes divided by this.
SPARSE_BYTES_PER_BUCKET: Final = 128  # bytes
LAYOUT_CACHE_SIZE: Final = 32  # layouts whose shared template is kept

_COMPRESSION_COOKIE_BASE: Final = 0x1C849304  # V2 compressed envelope
_ENVELOPE: Final = struct.Struct(">II")  # cookie, compressed length


class _Counts(Protocol):
    """The ctypes array of counters inside an ``hdrh`` histogram."""

    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...


class _Encoder(Protocol):
    """The ``hdrh`` encoder, which owns the counts array."""

    def add(self, other: _Encoder) -> None: ...


class _Hdr(Protocol):
    """The parts of :class:`hdrh.histogram.HdrHistogram` we rely on."""

    lowest_trackable_value: int
    highest_trackable_value: int
    significant_figures: int
    unit_magnitude: int
    sub_bucket_half_count_magnitude: int
    sub_bucket_count: int
    sub_bucket_mask: int
    bucket_count: int
    counts_len: int
    word_size: int
    counts: _Counts
    encoder: _Encoder
    total_count: int
    min_value: int
    max_value: int

    def get_value_from_index(self, index: int) -> int: ...
    def get_lowest_equivalent_value(self, value: int) -> int: ...
    def get_highest_equivalent_value(self, value: int) -> int: ...
    def record_value(self, value: int, count: int = 1) -> bool: ...
    def encode(self) -> bytes: ...


def _new_hdr(lowest: int, highest: int, digits: int) -> _Hdr:
    hdr: _Hdr = HdrHistogram(lowest, highest, digits)
    return hdr


@functools.lru_cache(maxsize=LAYOUT_CACHE_SIZE)
def _template(lowest: int, highest: int, digits: int) -> _Hdr:
    """
    An empty dense histogram of a layout, shared by its sparse ones.

    Sparse histograms borrow its layout arithmetic (index to value, bucket
    bounds) and never write to it.
    """
    return _new_hdr(lowest, highest, digits)


class _Full(Exception):  # noqa: N818 (a signal, not an error)
    """A sparse histogram has no room for another bucket: promote it."""


class _SparseCounts(dict[int, int]):
    """
    Counters by counts-array index, for the buckets in use only.

    A missing index reads as 0, so that ``counts[index] += n`` works as on
    the dense array, until the dictionary holds *limit* buckets: then a
    new bucket raises :class:`_Full` before anything is stored, and the
    owner moves to the dense array.
    """

    # One of these per operation key: a slot, not a __dict__ (which would
    # cost more than the few buckets most keys hold).
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, index: int) -> int:
        if len(self) >= self.limit:
            raise _Full
        return 0


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class _Sparse:
    """
    A histogram that holds only its non-zero counters, in a dictionary.

    The same counters at the same indices as the ``hdrh`` histogram of the
    layout of *layout*, which it borrows for the layout's arithmetic.
    """

    layout: _Hdr
    counts: _SparseCounts
    total_count: int = 0
    min_value: int = sys.maxsize
    max_value: int = 0

    @property
    def lowest_trackable_value(self) -> int:
        return self.layout.lowest_trackable_value

    @property
    def highest_trackable_value(self) -> int:
        return self.layout.highest_trackable_value

    @property
    def significant_figures(self) -> int:
        return self.layout.significant_figures

    @property
    def unit_magnitude(self) -> int:
        return self.layout.unit_magnitude

    @property
    def sub_bucket_half_count_magnitude(self) -> int:
        return self.layout.sub_bucket_half_count_magnitude

    @property
    def sub_bucket_count(self) -> int:
        return self.layout.sub_bucket_count

    @property
    def sub_bucket_mask(self) -> int:
        return self.layout.sub_bucket_mask

    @property
    def bucket_count(self) -> int:
        return self.layout.bucket_count

    @property
    def counts_len(self) -> int:
        return self.layout.counts_len

    @property
    def word_size(self) -> int:
        return self.layout.word_size

    def get_value_from_index(self, index: int) -> int:
        return self.layout.get_value_from_index(index)

    def get_lowest_equivalent_value(self, value: int) -> int:
        return self.layout.get_lowest_equivalent_value(value)

    def get_highest_equivalent_value(self, value: int) -> int:
        return self.layout.get_highest_equivalent_value(value)


_Hist: TypeAlias = "_Hdr | _Sparse"
"""A histogram in either form."""


def _sparse_limit(layout: _Hdr) -> int:
    """Buckets a sparse histogram of *layout* may hold before promotion."""
    dense_bytes = layout.counts_len * layout.word_size
    return max(1, dense_bytes // SPARSE_BYTES_PER_BUCKET)


def _new_sparse(lowest: int, highest: int, digits: int) -> _Sparse:
    layout = _template(lowest, highest, digits)
    return _Sparse(layout, _SparseCounts(_sparse_limit(layout)))


def _new_like(hist: _Hist) -> _Sparse:
    """An empty (sparse) histogram with the layout of *hist*."""
    return _new_sparse(
        hist.lowest_trackable_value,
        hist.highest_trackable_value,
        hist.significant_figures,
    )


def _dense(hist: _Hist) -> _Hdr:
    """
    *hist* as an ``hdrh`` histogram: itself if dense, else a dense copy.

    The copy holds the same counters at the same indices and the same
    count, minimum and maximum, so it encodes to the same bytes.
    """
    if not isinstance(hist, _Sparse):
        return hist
    hdr = _new_hdr(
        hist.lowest_trackable_value,
        hist.highest_trackable_value,
        hist.significant_figures,
    )
    counts = hdr.counts
    for index, count in hist.counts.items():
        counts[index] = count
    hdr.total_count = hist.total_count
    hdr.min_value = hist.min_value
    hdr.max_value = hist.max_value
    return hdr


def _index_of(hdr: _Hist, value: int) -> int:
    """
    The counts-array index of *value*, as ``hdrh`` computes it.

    ``hdrh`` finds the bucket with ``64 - clz(value | mask)``, which is
    ``(value | mask).bit_length()``; the bucket's first counter is
    ``(bucket + 1) * half_count`` and the sub-bucket adds
    ``(value >> (bucket + unit)) - half_count``, which folds into the two
    terms below.
    """
    half = hdr.sub_bucket_half_count_magnitude
    shift = (value | hdr.sub_bucket_mask).bit_length() - half - 1
    return ((shift - hdr.unit_magnitude) << half) + (value >> shift)


def _record(hdr: _Hist, value: int, count: int) -> _Hist:
    """
    Record *value* (already clamped to the histogram's range).

    Returns:
        The histogram to keep: *hdr*, or its dense promotion.
    """
    index = _index_of(hdr, value)
    try:
        hdr.counts[index] += count
    except _Full:
        hdr = _dense(hdr)
        hdr.counts[index] += count
    hdr.total_count += count
    # Comparisons, not max() and min(): no call on the hot path.
    if value > hdr.max_value:  # noqa: PLR1730
        hdr.max_value = value
    if value < hdr.min_value:  # noqa: PLR1730
        hdr.min_value = value
    return hdr


def _same_layout(a: _Hist, b: _Hist) -> bool:
    return (
        a.bucket_count == b.bucket_count
        and a.sub_bucket_count == b.sub_bucket_count
        and a.unit_magnitude == b.unit_magnitude
        and a.word_size == b.word_size
    )


def _clear(hdr: _Hist) -> None:
    """
    Zero *hdr* in place.

    ``HdrHistogram.reset`` zeroes all 23,552 counters of a default
    histogram in a Python loop (about 2 ms); every non-zero counter lies
    between the indices of the minimum and the maximum, so one
    ``memset`` of that range does the same in microseconds.  A dense
    histogram stays dense.
    """
    if isinstance(hdr, _Sparse):
        hdr.counts.clear()
    elif hdr.total_count:
        low = _index_of(hdr, min(hdr.min_value, hdr.max_value))
        high = _index_of(hdr, hdr.max_value)
        counts: Any = hdr.counts
        size = ctypes.sizeof(counts) // hdr.counts_len
        ctypes.memset(
            ctypes.addressof(counts) + low * size, 0, (high - low + 1) * size
        )
    hdr.total_count = 0
    hdr.min_value = sys.maxsize
    hdr.max_value = 0


def _add(dst: _Hist, src: _Hist) -> _Hist:
    """
    Add the counts of *src* to *dst*.

    ``HdrHistogram.add`` sets the minimum to 0 when *src* is empty (it
    takes ``min()`` with ``get_min_value()``, which is 0 for an empty
    histogram), so this keeps its own books.

    Returns:
        The histogram to keep: *dst*, or its dense promotion.

    Raises:
        ValueError: A value of *src* is beyond the range of *dst*.
    """
    if not src.total_count:
        return dst
    if _same_layout(dst, src):
        if isinstance(dst, _Sparse) or isinstance(src, _Sparse):
            dst = _add_counts(dst, _nonzero(src))
        else:
            # One C loop over the counts arrays (hdrh's add_array).
            dst.encoder.add(src.encoder)
        dst.total_count += src.total_count
        dst.min_value = min(dst.min_value, src.min_value)
        dst.max_value = max(dst.max_value, src.max_value)
        return dst
    top = dst.get_highest_equivalent_value(
        dst.get_value_from_index(dst.counts_len - 1)
    )
    counts = _nonzero(src)
    largest = src.get_value_from_index(counts[-1][0])
    if largest > top:
        raise ValueError(
            f"a value of {largest} does not fit a histogram whose range "
            f"ends at {top}"
        )
    for index, count in counts:
        dst = _record(dst, src.get_value_from_index(index), count)
    return dst


def _add_counts(dst: _Hist, items: list[tuple[int, int]]) -> _Hist:
    """Add counters of *dst*'s own layout; promote *dst* if it fills."""
    counts = dst.counts
    for index, count in items:
        try:
            counts[index] += count
        except _Full:
            dst = _dense(dst)
            counts = dst.counts
            counts[index] += count
    return dst


def _used_counts(hdr: _Hdr) -> list[int]:
    """The counters of a dense histogram up to the maximum's, as ints."""
    if not hdr.total_count:
        return []
    counts: Any = hdr.counts
    end = min(_index_of(hdr, hdr.max_value) + 1, hdr.counts_len)
    used: list[int] = counts[:end]
    return used


def _nonzero(hdr: _Hist) -> list[tuple[int, int]]:
    """The non-zero counters, as (index, count), by index."""
    if isinstance(hdr, _Sparse):
        return sorted((i, c) for i, c in hdr.counts.items() if c)
    return [(i, c) for i, c in enumerate(_used_counts(hdr)) if c]


def _target_count(percentile: float, total: int) -> int:
    # Java's getValueAtPercentile: one ulp below the percentile, so that
    # 0.99 * 100 = 99.00000000000001 does not round up into the next
    # value, then the smallest count reaching it (nearest rank).
    requested = min(max(math.nextafter(percentile, -math.inf), 0.0), 100.0)
    return max(math.ceil((requested / 100.0) * total), 1)


def _values_at(hdr: _Hist, percentiles: Sequence[float]) -> list[int]:
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
    if isinstance(hdr, _Sparse):
        # The same search over the non-zero counters only: the first
        # counter whose running sum reaches the target is never a zero.
        pairs = _nonzero(hdr)
        indices: Sequence[int] = [index for index, _ in pairs]
        cumulative = list(itertools.accumulate(c for _, c in pairs))
    else:
        cumulative = list(itertools.accumulate(_used_counts(hdr)))
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


def _median_equivalent(hdr: _Hist, value: int) -> int:
    low = hdr.get_lowest_equivalent_value(value)
    return low + ((hdr.get_highest_equivalent_value(value) + 1 - low) >> 1)


def _mean(hdr: _Hist) -> float:
    total = hdr.total_count
    if not total:
        return 0.0
    values = hdr.get_value_from_index
    weighted = sum(
        _median_equivalent(hdr, values(index)) * count
        for index, count in _nonzero(hdr)
    )
    return weighted / total


def _stddev(hdr: _Hist) -> float:
    total = hdr.total_count
    if not total:
        return 0.0
    mean = _mean(hdr)
    values = hdr.get_value_from_index
    squares = sum(
        (_median_equivalent(hdr, values(index)) - mean) ** 2 * count
        for index, count in _nonzero(hdr)
    )
    return math.sqrt(squares / total)


def _min_value(hdr: _Hist) -> int:
    if not hdr.total_count:
        return 0
    return hdr.get_lowest_equivalent_value(hdr.min_value)


def _max_value(hdr: _Hist) -> int:
    if not hdr.total_count:
        return 0
    return hdr.get_highest_equivalent_value(hdr.max_value)


def _next_level(level: float, ticks: int) -> float:
    # Java's PercentileIterator.incrementIterationLevel, integer casts
    # included (the Python hdrh drops them and prints other rows).
    halvings = int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
    return level + 100.0 / (ticks << halvings)


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


def _distribution(hdr: _Hist, ticks: int) -> list[PercentileRow]:
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
    for index, count in _nonzero(hdr):
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


_SNAPSHOT_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)


def _snapshot(hdr: _Hist) -> LatencySnapshot:
    p50, p90, p95, p99, p999 = (
        value / US_PER_SECOND
        for value in _values_at(hdr, _SNAPSHOT_PERCENTILES)
    )
    return LatencySnapshot(
        count=hdr.total_count,
        mean=_mean(hdr) / US_PER_SECOND,
        min=_min_value(hdr) / US_PER_SECOND,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
        max=_max_value(hdr) / US_PER_SECOND,
    )


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


_floor: Final = math.floor
"""Rounds down to an int: ``int()`` of a float is about 3x slower."""


def _to_us(seconds: float, top: int) -> int:
    """Round *seconds* to microseconds in ``[0, top]`` (NaN reads 0)."""
    if seconds >= top / US_PER_SECOND:
        return top
    if seconds > 0.0:
        return _floor(seconds * US_PER_SECOND + 0.5)
    return 0


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise ConfigurationError(
            f"{name} must be an integer from {low} to {high}, got {value!r}"
        )
    return value


def _check_range(owner: str, lowest: int, highest: int, digits: int) -> None:
    _check_int(f"{owner}.lowest_us", lowest, 1, 2**62)
    _check_int(f"{owner}.highest_us", highest, 2 * lowest, 2**62)
    _check_int(f"{owner}.significant_figures", digits, 1, 5)


def _decode(encoded: str | bytes) -> _Hdr:
    """
    Decode a base64 V2 compressed histogram, validating every layer.

    ``HdrHistogram.decode`` discards characters outside the base64
    alphabet, checks the payload's declared size with an expression that
    is never true, and allocates whatever counts array the payload asks
    for; this checks each of those first.
    """
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError(f"not valid base64 ({exc})") from None
    if len(raw) < _ENVELOPE.size:
        raise ValueError("too short to be an encoded histogram")
    cookie, length = _ENVELOPE.unpack_from(raw)
    if cookie & ~0xF0 != _COMPRESSION_COOKIE_BASE:
        raise ValueError(
            f"unknown histogram encoding (cookie {cookie:#010x}; only the "
            "V2 compressed encoding is supported)"
        )
    if length != len(raw) - _ENVELOPE.size:
        raise ValueError(
            f"the payload should be {length} bytes but is "
            f"{len(raw) - _ENVELOPE.size} (truncated?)"
        )
    try:
        payload = HdrPayload(8, compressed_payload=raw[_ENVELOPE.size :])
    except zlib.error as exc:
        raise ValueError(
            f"the compressed payload is corrupt ({exc})"
        ) from None
    except Exception as exc:
        raise ValueError(f"the payload is not a histogram ({exc})") from None
    header = payload.payload
    lowest = int(header.lowest_trackable_value)
    highest = int(header.highest_trackable_value)
    digits = int(header.significant_figures)
    try:
        _check_range("histogram", lowest, highest, digits)
    except ConfigurationError as exc:
        raise ValueError(f"impossible settings: {exc}") from None
    sub_buckets = 1 << math.ceil(math.log2(2 * 10**digits))
    buckets = get_bucket_count(highest, sub_buckets, lowest.bit_length() - 1)
    if (buckets + 1) * sub_buckets // 2 > MAX_DECODED_COUNTS:
        raise ValueError(
            f"a range of {lowest} to {highest} at {digits} digits needs "
            f"more than {MAX_DECODED_COUNTS} counters"
        )
    try:
        hdr: _Hdr = HdrHistogram(lowest, highest, digits, hdr_payload=payload)
    except Exception as exc:
        raise ValueError(f"the counts are corrupt ({exc})") from None
    return hdr


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class LatencyHistogram:
    """
    An HdrHistogram of durations, fed seconds, stored in microseconds.

    Values above the trackable range are clamped to its top, and negative
    durations (and NaN) are recorded as 0, so that one pathological value
    can never make recording fail.  Seconds are rounded to the nearest
    microsecond.

    The counters are allocated as they are first used (see the module
    docstring), so an empty histogram costs a few hundred bytes, and one
    that fills many buckets no more than ``hdrh``'s array.

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
    _hist: _Hist = attrs.field(init=False)
    # The layout, copied out of the histogram for the hot path.
    _mask: int = attrs.field(init=False)
    _half: int = attrs.field(init=False)
    _unit: int = attrs.field(init=False)
    _top_seconds: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        _check_range(
            "LatencyHistogram",
            self.lowest_us,
            self.highest_us,
            self.significant_figures,
        )
        self._bind(
            _new_sparse(
                self.lowest_us, self.highest_us, self.significant_figures
            )
        )

    def _bind(self, hist: _Hist) -> None:
        self._hist = hist
        self._mask = hist.sub_bucket_mask
        self._half = hist.sub_bucket_half_count_magnitude
        self._unit = hist.unit_magnitude
        self._top_seconds = self.highest_us / US_PER_SECOND

    @classmethod
    def _wrap(cls, hdr: _Hist) -> LatencyHistogram:
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
        if isinstance(hist, _Sparse):
            hist = self._hist = _dense(hist)
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
        # _to_us and _record inlined: this is the hot path.
        # The common case first, in one chained comparison; the literal
        # is US_PER_SECOND without the global lookup.  NaN fails both
        # tests and is recorded as 0.  _floor, not int(): the same for a
        # positive number, and int() of a float costs three times more.
        if 0.0 < seconds < self._top_seconds:
            value = _floor(seconds * 1_000_000.0 + 0.5)
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
        except _Full:
            hist = self._hist = _dense(hist)
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
        self._hist = _record(self._hist, value_us, count)

    def record_corrected(
        self, seconds: float, expected_interval: float, count: int = 1
    ) -> None:
        """
        Record *seconds*, correcting for coordinated omission.

        See :meth:`LatencyRecorder.record_corrected`.
        """
        top = self.highest_us
        self._hist = _record_corrected(
            self._hist,
            _to_us(seconds, top),
            _to_us(expected_interval, top),
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
        return _mean(self._hist) / US_PER_SECOND

    def stddev(self) -> float:
        """The standard deviation, in seconds; 0 if empty."""
        return _stddev(self._hist) / US_PER_SECOND

    def min(self) -> float:
        """The smallest value (bottom of its bucket), seconds; 0 if empty."""
        return _min_value(self._hist) / US_PER_SECOND

    def max(self) -> float:
        """The largest value (top of its bucket), seconds; 0 if empty."""
        return _max_value(self._hist) / US_PER_SECOND

    def snapshot(self) -> LatencySnapshot:
        """Summarize the histogram: count, mean, percentiles, extremes."""
        return _snapshot(self._hist)

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
        return _values_at(self._hist, (percentile,))[0]

    def values_at_percentiles(self, percentiles: Sequence[float]) -> list[int]:
        """Like :meth:`value_at_percentile`, for many, in one pass."""
        return _values_at(self._hist, percentiles)

    def min_value(self) -> int:
        """The smallest value (bottom of its bucket), histogram units."""
        return _min_value(self._hist)

    def max_value(self) -> int:
        """The largest value (top of its bucket), histogram units."""
        return _max_value(self._hist)

    def mean_value(self) -> float:
        """The mean, in the histogram's units; 0 if empty."""
        return _mean(self._hist)

    def stddev_value(self) -> float:
        """The standard deviation, in the histogram's units; 0 if empty."""
        return _stddev(self._hist)

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
        return _distribution(self._hist, ticks_per_half_distance)

    def add(self, other: LatencyHistogram) -> None:
        """
        Add the values of *other* to this histogram.

        Raises:
            ValueError: *other* holds values beyond this histogram's range.
        """
        self._hist = _add(self._hist, other._hist)

    def copy(self) -> LatencyHistogram:
        """An independent copy, with the same settings and counts."""
        hdr = self._hist
        return LatencyHistogram._wrap(_add(_new_like(hdr), hdr))

    def reset(self) -> None:
        """Forget every value."""
        _clear(self._hist)

    def encode(self) -> str:
        """
        Encode in HdrHistogram's V2 compressed base64 form.

        This is the payload of an ``.hlog`` interval line, readable by the
        Java, C and Python HdrHistogram libraries.  A sparse histogram is
        encoded through a dense copy, so both forms give the same bytes.
        """
        return _dense(self._hist).encode().decode("ascii")

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
        return cls._wrap(_decode(encoded))


def _covers(wide: _Hist, narrow: _Hist) -> bool:
    return _same_layout(wide, narrow) or (
        wide.lowest_trackable_value <= narrow.lowest_trackable_value
        and wide.highest_trackable_value >= narrow.highest_trackable_value
        and wide.significant_figures >= narrow.significant_figures
    )


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
    merged: _Hist | None = None
    for histogram in histograms:
        hdr = histogram._hist
        if merged is None or not _covers(merged, hdr):
            base = hdr if merged is None else merged
            lowest = min(
                base.lowest_trackable_value, hdr.lowest_trackable_value
            )
            wider: _Hist = _new_sparse(
                lowest,
                max(
                    base.highest_trackable_value,
                    hdr.highest_trackable_value,
                    2 * lowest,
                ),
                max(base.significant_figures, hdr.significant_figures),
            )
            if merged is not None:
                wider = _add(wider, merged)
            merged = wider
        merged = _add(merged, hdr)
    if merged is None:
        return LatencyHistogram()
    return LatencyHistogram._wrap(merged)


def _record_corrected(
    hist: _Hist, value: int, expected: int, count: int
) -> _Hist:
    # Java's recordValueWithExpectedInterval and C's
    # hdr_record_corrected_values: the missing values go down in steps of
    # the interval while they are at least one interval.  The Python hdrh
    # also records the remainder below the interval, one value too many.
    hist = _record(hist, value, count)
    if expected <= 0:
        return hist
    missing = value - expected
    while missing >= expected:
        hist = _record(hist, missing, count)
        missing -= expected
    return hist


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


def _counter_bytes(hist: _Hist) -> int:
    if isinstance(hist, _Sparse):
        return sys.getsizeof(hist.counts)
    counts: Any = hist.counts
    return ctypes.sizeof(counts)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class LatencyRecorder:
    """
    Latency histograms per operation key, plus one over every key.

    Like a tally sheet with one column per operation and a total column:
    every call adds a mark to its operation's column and to the total.
    When the sheet runs out of columns, the column used least recently is
    erased for the newcomer; the total column keeps its marks, so the
    overall percentiles stay exact whatever happens to the keys.

    >>> recorder = LatencyRecorder()
    >>> recorder.record("tools/call:search", 0.120)
    >>> recorder.snapshot("tools/call:search").p50
    0.120063

    Values are stored in microseconds.  A key's histogram allocates its
    counters as buckets are first used, and a few hundred bytes cover a
    key whose latencies fill a few buckets; one that fills many costs at
    most a dense histogram's 184 KiB at the defaults (see
    ``docs/metrics.md``), so *max_keys* bounds the memory.  Recording is
    cheap (a dictionary lookup and a counter increment, no allocation once
    the key and its bucket are known); reading walks the counters.

    The total column is not written on every call: the overall histogram
    is the sum of the keys' histograms and of what evicted keys left
    behind, added up when it is read, bucket for bucket, so it is exactly
    the histogram of every value recorded.

    Histograms are kept twice: the current interval's, which
    :meth:`dump_interval` writes to an ``.hlog`` and clears, and the
    cumulative totals that :meth:`snapshot` reports.  The totals are only
    allocated once an interval has been dumped.

    Not thread-safe: record from one thread (the event loop's).

    Args:
        lowest_us: Smallest distinguishable value, microseconds.
        highest_us: Largest trackable value, microseconds (larger values
            are recorded as this); at least twice *lowest_us*.
        significant_figures: Decimal digits of precision (1 to 5).
        max_keys: The most operation keys to keep a histogram for.

    Raises:
        ConfigurationError: A setting is out of range.

    .. versionadded:: 0.1.0
    """

    lowest_us: int = attrs.field(default=LOWEST_US, kw_only=True)
    highest_us: int = attrs.field(default=HIGHEST_US, kw_only=True)
    significant_figures: int = attrs.field(
        default=SIGNIFICANT_FIGURES, kw_only=True
    )
    max_keys: int = attrs.field(default=DEFAULT_MAX_KEYS, kw_only=True)

    # The values of evicted keys, this interval and before.  Dense from
    # the start: it collects every evicted key's values, so it is the one
    # histogram bound to fill many buckets.
    _gone: _Hist = attrs.field(init=False)
    _gone_totals: _Hist | None = attrs.field(init=False, default=None)
    _pending: OrderedDict[str, _Hist] = attrs.field(
        init=False, factory=OrderedDict
    )
    _totals: dict[str, _Hist] = attrs.field(init=False, factory=dict)
    _evicted: int = attrs.field(init=False, default=0)
    _writing: bool = attrs.field(init=False, default=False)
    # The most recently used key and its histogram: recording it again
    # needs neither the lookup nor the move to the end of the LRU order,
    # where it already is.  Reset whenever that could stop being true.
    _last_key: str | None = attrs.field(init=False, default=None)
    _last_hist: _Hist | None = attrs.field(init=False, default=None)
    # The layout, copied out of the histograms for the hot path.
    _mask: int = attrs.field(init=False)
    _half: int = attrs.field(init=False)
    _unit: int = attrs.field(init=False)
    _top_seconds: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        _check_range(
            "LatencyRecorder",
            self.lowest_us,
            self.highest_us,
            self.significant_figures,
        )
        _check_int("LatencyRecorder.max_keys", self.max_keys, 1, 2**31)
        gone = _new_hdr(
            self.lowest_us, self.highest_us, self.significant_figures
        )
        self._gone = gone
        self._mask = gone.sub_bucket_mask
        self._half = gone.sub_bucket_half_count_magnitude
        self._unit = gone.unit_magnitude
        self._top_seconds = self.highest_us / US_PER_SECOND

    def __repr__(self) -> str:
        return (
            f"<LatencyRecorder {len(self._pending)}/{self.max_keys} keys, "
            f"{self._overall_count()} values, {self._evicted} evicted>"
        )

    def _new(self) -> _Sparse:
        return _new_sparse(
            self.lowest_us, self.highest_us, self.significant_figures
        )

    def _admit(self, key: str) -> _Hist:
        if not key:
            raise ValueError("an operation key must be a non-empty string")
        pending = self._pending
        if len(pending) >= self.max_keys:
            # The stalest key's values stay in the overall histogram.
            old, hist = pending.popitem(last=False)
            self._gone = _add(self._gone, hist)
            totals = self._totals.pop(old, None)
            if totals is not None:
                self._gone_totals = self._fold(totals, self._gone_totals)
            self._evicted += 1
        hist = pending[key] = self._new()
        return hist

    def record(self, key: str, seconds: float, count: int = 1) -> None:
        """
        Record that an operation took *seconds*.

        The value goes to *key*'s histogram, and so into the overall one.
        Seconds are rounded to the nearest microsecond; values above the
        range are recorded as its top, negative ones (and NaN) as 0.

        Args:
            key: The operation, for example ``"tools/call:search"``.
            seconds: How long it took.
            count: How many times to record it.

        Raises:
            ValueError: *key* is empty.
        """
        # _to_us, _record and _index_of inlined: this is the hot path.
        # The common case first, in one chained comparison; the literal
        # is US_PER_SECOND without the global lookup.  NaN fails both
        # tests and is recorded as 0.  _floor, not int(): the same for a
        # positive number, and int() of a float costs three times more.
        if 0.0 < seconds < self._top_seconds:
            value = _floor(seconds * 1_000_000.0 + 0.5)
        elif seconds > 0.0:
            value = self.highest_us
        else:
            value = 0
        hist = self._last_hist
        if key != self._last_key or hist is None:
            pending = self._pending
            hist = pending.get(key)
            if hist is None:
                hist = self._admit(key)
            else:
                pending.move_to_end(key)
            self._last_key = key
            self._last_hist = hist
        half = self._half
        shift = (value | self._mask).bit_length() - half - 1
        index = ((shift - self._unit) << half) + (value >> shift)
        try:
            hist.counts[index] += count
        except _Full:
            hist = self._last_hist = self._pending[key] = _dense(hist)
            hist.counts[index] += count
        hist.total_count += count
        if value > hist.max_value:  # noqa: PLR1730
            hist.max_value = value
        if value < hist.min_value:  # noqa: PLR1730
            hist.min_value = value

    def record_corrected(
        self, key: str, seconds: float, expected_interval: float
    ) -> None:
        """
        Record *seconds*, correcting for coordinated omission.

        A load generator that waits for each answer before sending the next
        request stops measuring exactly when the service stalls: a 10 s
        stall costs one slow sample instead of the hundreds that callers
        arriving every *expected_interval* would have suffered.  This
        records the slow value, and then the values the missing requests
        would have seen: ``seconds - expected_interval``, ``seconds - 2 *
        expected_interval``, and so on while they are at least
        *expected_interval* (the semantics of Java's
        ``recordValueWithExpectedInterval``).

        Only use it when requests are issued at a known, fixed rate.

        Args:
            key: The operation.
            seconds: How long it took.
            expected_interval: Seconds between requests when nothing is
                slow; 0 or less records *seconds* alone.

        Raises:
            ValueError: *key* is empty.
        """
        top = self.highest_us
        value = _to_us(seconds, top)
        expected = _to_us(expected_interval, top)
        pending = self._pending
        hist = pending.get(key)
        if hist is None:
            hist = self._admit(key)
        else:
            pending.move_to_end(key)
        pending[key] = _record_corrected(hist, value, expected, 1)
        self._last_key = None  # it may have been promoted

    def keys(self) -> list[str]:
        """The operation keys that have a histogram now, sorted."""
        return sorted(self._pending)

    def _interval(self) -> _Hist:
        """A new histogram of every value of the current interval."""
        overall = _add(self._new(), self._gone)
        for pending in self._pending.values():
            overall = _add(overall, pending)
        return overall

    def _cumulative(self, key: str | None, *, fresh: bool = False) -> _Hist:
        """The totals plus the current interval; a new histogram if *fresh*."""
        if key is None:
            overall = self._interval()
            if self._gone_totals is not None:
                overall = _add(overall, self._gone_totals)
            for totals in self._totals.values():
                overall = _add(overall, totals)
            return overall
        pending = self._pending.get(key)
        if pending is None:
            raise KeyError(
                f"no latencies for {key!r}: never recorded, or evicted "
                f"(the recorder keeps {self.max_keys} keys)"
            )
        found = self._totals.get(key)
        if found is None and not fresh:
            return pending
        combined: _Hist = self._new()
        if found is not None:
            combined = _add(combined, found)
        return _add(combined, pending)

    def snapshot(self, key: str | None = None) -> LatencySnapshot:
        """
        Summarize every latency recorded for *key*, or overall.

        Cumulative since the recorder was created (for *key*: since it was
        last admitted); dumping intervals does not change it.

        Args:
            key: An operation key, or ``None`` for all operations.

        Returns:
            A frozen :class:`LatencySnapshot`.

        Raises:
            KeyError: The recorder has no histogram for *key*.
        """
        return _snapshot(self._cumulative(key))

    def snapshot_or_empty(self, key: str) -> LatencySnapshot:
        """:meth:`snapshot` of *key*, or an empty one if it has none."""
        try:
            return self.snapshot(key)
        except KeyError:
            return EMPTY_SNAPSHOT

    def histogram(self, key: str | None = None) -> LatencyHistogram:
        """
        A copy of the cumulative histogram of *key*, or the overall one.

        Raises:
            KeyError: The recorder has no histogram for *key*.
        """
        return LatencyHistogram._wrap(self._cumulative(key, fresh=True))

    def _interval_count(self) -> int:
        """How many values the current interval holds, over all keys."""
        return self._gone.total_count + sum(
            pending.total_count for pending in self._pending.values()
        )

    def _overall_count(self) -> int:
        totals = self._gone_totals
        extra = totals.total_count if totals is not None else 0
        extra += sum(totals.total_count for totals in self._totals.values())
        return self._interval_count() + extra

    def metrics(self) -> LatencyRecorderMetrics:
        """
        Take a snapshot of the recorder's bookkeeping.

        Returns:
            A frozen :class:`LatencyRecorderMetrics`.
        """
        hists: list[_Hist] = [self._gone, *self._pending.values()]
        hists.extend(self._totals.values())
        if self._gone_totals is not None:
            hists.append(self._gone_totals)
        return LatencyRecorderMetrics(
            keys=len(self._pending),
            max_keys=self.max_keys,
            evicted_keys=self._evicted,
            total_count=self._overall_count(),
            histograms=len(hists),
            histogram_bytes=sum(_counter_bytes(h) for h in hists),
        )

    def start_interval(self) -> None:
        """
        Start a new interval: move the current one into the totals.

        What was recorded so far stays in :meth:`snapshot` but will not
        appear in the next :meth:`dump_interval`.
        """
        self._gone_totals = self._fold(self._gone, self._gone_totals)
        totals = self._totals
        for key, pending in self._pending.items():
            if pending.total_count:
                totals[key] = self._fold(pending, totals.get(key))

    def _fold(self, pending: _Hist, totals: _Hist | None) -> _Hist:
        """Add *pending* to *totals* (new if ``None``); clear *pending*."""
        totals = _add(self._new() if totals is None else totals, pending)
        _clear(pending)
        return totals

    def dump_interval(
        self, writer: HlogWriter, *, start: float, length: float
    ) -> int:
        """
        Write the current interval to *writer*, then start a new one.

        Writes the overall histogram untagged, then one line per key that
        recorded something in the interval, tagged with :func:`hlog_tag`
        of the key, in key order.  The cumulative totals
        (:meth:`snapshot`) are not affected.

        Args:
            writer: Where to write the interval lines.
            start: The interval's start, seconds since the log's start.
            length: The interval's length, seconds.

        Returns:
            How many lines were written.
        """
        from ._hlog import hlog_tag  # noqa: PLC0415 - circular

        writer.write_interval(
            LatencyHistogram._wrap(self._interval()),
            start=start,
            length=length,
        )
        lines = 1
        for key in sorted(self._pending):
            pending = self._pending[key]
            if pending.total_count:
                writer.write_interval(
                    LatencyHistogram._wrap(pending),
                    start=start,
                    length=length,
                    tag=hlog_tag(key),
                )
                lines += 1
        self.start_interval()
        return lines

    def dump_totals(
        self, writer: HlogWriter, *, start: float, length: float
    ) -> int:
        """
        Write the cumulative histograms to *writer* as one interval.

        Like :meth:`dump_interval`, with what :meth:`snapshot` reports
        instead of the current interval; nothing is reset.

        Returns:
            How many lines were written.
        """
        from ._hlog import hlog_tag  # noqa: PLC0415 - circular

        writer.write_interval(
            LatencyHistogram._wrap(self._cumulative(None)),
            start=start,
            length=length,
        )
        for key in sorted(self._pending):
            writer.write_interval(
                LatencyHistogram._wrap(self._cumulative(key)),
                start=start,
                length=length,
                tag=hlog_tag(key),
            )
        return 1 + len(self._pending)

    def _claim_writer(self) -> None:
        if self._writing:
            raise RuntimeError(
                "this LatencyRecorder already has a periodic hlog writer; "
                "two would split each interval between their files"
            )
        self._writing = True

    def _release_writer(self) -> None:
        self._writing = False
