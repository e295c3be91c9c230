"""
A histogram's counters, sparse or dense, and what is done to them.

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

The functions here take a histogram in either form (:data:`Hist`); those
that may promote it return the histogram to keep from then on.
"""

from __future__ import annotations

import ctypes
import sys

from typing import Any, Final, TypeAlias, final

import attrs

from ._layout import Hdr, new_hdr, template


# What one bucket of a sparse histogram costs, about: its dict slot and
# entry with the table's slack, plus the index (and, past 256, the count)
# as int objects.  A sparse histogram is promoted to the dense array once
# it holds the dense array's bytes divided by this.
SPARSE_BYTES_PER_BUCKET: Final = 128  # bytes


class Full(Exception):  # noqa: N818 (a signal, not an error)
    """A sparse histogram has no room for another bucket: promote it."""


class SparseCounts(dict[int, int]):
    """
    Counters by counts-array index, for the buckets in use only.

    A missing index reads as 0, so that ``counts[index] += n`` works as on
    the dense array, until the dictionary holds *limit* buckets: then a
    new bucket raises :class:`Full` before anything is stored, and the
    owner moves to the dense array.
    """

    # One of these per operation key: a slot, not a __dict__ (which would
    # cost more than the few buckets most keys hold).
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit: int = limit

    def __missing__(self, index: int) -> int:
        if len(self) >= self.limit:
            raise Full
        return 0


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class Sparse:
    """
    A histogram that holds only its non-zero counters, in a dictionary.

    The same counters at the same indices as the ``hdrh`` histogram of the
    layout of *layout*, which it borrows for the layout's arithmetic.
    """

    layout: Hdr
    counts: SparseCounts
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


Hist: TypeAlias = "Hdr | Sparse"
"""A histogram in either form."""


def sparse_limit(layout: Hdr) -> int:
    """Buckets a sparse histogram of *layout* may hold before promotion."""
    dense_bytes = layout.counts_len * layout.word_size
    return max(1, dense_bytes // SPARSE_BYTES_PER_BUCKET)


def new_sparse(lowest: int, highest: int, digits: int) -> Sparse:
    """A new, empty sparse histogram of the layout of these settings."""
    layout = template(lowest, highest, digits)
    return Sparse(layout, SparseCounts(sparse_limit(layout)))


def new_like(hist: Hist) -> Sparse:
    """An empty (sparse) histogram with the layout of *hist*."""
    return new_sparse(
        hist.lowest_trackable_value,
        hist.highest_trackable_value,
        hist.significant_figures,
    )


def dense(hist: Hist) -> Hdr:
    """
    *hist* as an ``hdrh`` histogram: itself if dense, else a dense copy.

    The copy holds the same counters at the same indices and the same
    count, minimum and maximum, so it encodes to the same bytes.
    """
    if not isinstance(hist, Sparse):
        return hist
    hdr = new_hdr(
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


def index_of(hdr: Hist, value: int) -> int:
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


def record_value(hdr: Hist, value: int, count: int) -> Hist:
    """
    Record *value* (already clamped to the histogram's range).

    Returns:
        The histogram to keep: *hdr*, or its dense promotion.
    """
    index = index_of(hdr, value)
    try:
        hdr.counts[index] += count
    except Full:
        hdr = dense(hdr)
        hdr.counts[index] += count
    hdr.total_count += count
    # Comparisons, not max() and min(): no call on the hot path.
    if value > hdr.max_value:  # noqa: PLR1730
        hdr.max_value = value
    if value < hdr.min_value:  # noqa: PLR1730
        hdr.min_value = value
    return hdr


def same_layout(a: Hist, b: Hist) -> bool:
    """Whether *a* and *b* have the same counters at the same indices."""
    return (
        a.bucket_count == b.bucket_count
        and a.sub_bucket_count == b.sub_bucket_count
        and a.unit_magnitude == b.unit_magnitude
        and a.word_size == b.word_size
    )


def clear(hdr: Hist) -> None:
    """
    Zero *hdr* in place.

    ``HdrHistogram.reset`` zeroes all 23,552 counters of a default
    histogram in a Python loop (about 2 ms); every non-zero counter lies
    between the indices of the minimum and the maximum, so one
    ``memset`` of that range does the same in microseconds.  A dense
    histogram stays dense.
    """
    if isinstance(hdr, Sparse):
        hdr.counts.clear()
    elif hdr.total_count:
        low = index_of(hdr, min(hdr.min_value, hdr.max_value))
        high = index_of(hdr, hdr.max_value)
        counts: Any = hdr.counts
        size = ctypes.sizeof(counts) // hdr.counts_len
        ctypes.memset(
            ctypes.addressof(counts) + low * size, 0, (high - low + 1) * size
        )
    hdr.total_count = 0
    hdr.min_value = sys.maxsize
    hdr.max_value = 0


def top(hist: Hist) -> int:
    """The largest value *hist*'s layout holds (its last counter's)."""
    return hist.get_highest_equivalent_value(
        hist.get_value_from_index(hist.counts_len - 1)
    )


def add_into(dst: Hist, src: Hist) -> Hist:
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
    if same_layout(dst, src):
        if isinstance(dst, Sparse) or isinstance(src, Sparse):
            dst = _add_counts(dst, nonzero(src))
        else:
            # One C loop over the counts arrays (hdrh's add_array).
            dst.encoder.add(src.encoder)
        dst.total_count += src.total_count
        dst.min_value = min(dst.min_value, src.min_value)
        dst.max_value = max(dst.max_value, src.max_value)
        return dst
    counts = nonzero(src)
    largest = src.get_value_from_index(counts[-1][0])
    if largest > top(dst):
        raise ValueError(
            f"a value of {largest} does not fit a histogram whose range "
            f"ends at {top(dst)}"
        )
    for index, count in counts:
        dst = record_value(dst, src.get_value_from_index(index), count)
    return dst


def _add_counts(dst: Hist, items: list[tuple[int, int]]) -> Hist:
    """Add counters of *dst*'s own layout; promote *dst* if it fills."""
    counts = dst.counts
    for index, count in items:
        try:
            counts[index] += count
        except Full:
            dst = dense(dst)
            counts = dst.counts
            counts[index] += count
    return dst


def used_counts(hdr: Hdr) -> list[int]:
    """The counters of a dense histogram up to the maximum's, as ints."""
    if not hdr.total_count:
        return []
    counts: Any = hdr.counts
    end = min(index_of(hdr, hdr.max_value) + 1, hdr.counts_len)
    used: list[int] = counts[:end]
    return used


def nonzero(hdr: Hist) -> list[tuple[int, int]]:
    """The non-zero counters, as (index, count), by index."""
    if isinstance(hdr, Sparse):
        return sorted((i, c) for i, c in hdr.counts.items() if c)
    return [(i, c) for i, c in enumerate(used_counts(hdr)) if c]


def record_value_corrected(
    hist: Hist, value: int, expected: int, count: int
) -> Hist:
    """
    Record *value*, and the values requests every *expected* missed.

    Returns:
        The histogram to keep: *hist*, or its dense promotion.
    """
    # Java's recordValueWithExpectedInterval and C's
    # hdr_record_corrected_values: the missing values go down in steps of
    # the interval while they are at least one interval.  The Python hdrh
    # also records the remainder below the interval, one value too many.
    hist = record_value(hist, value, count)
    if expected <= 0:
        return hist
    missing = value - expected
    while missing >= expected:
        hist = record_value(hist, missing, count)
        missing -= expected
    return hist


def counter_bytes(hist: Hist) -> int:
    """Bytes in the counters of *hist*: its array, or its dictionary."""
    if isinstance(hist, Sparse):
        return sys.getsizeof(hist.counts)
    counts: Any = hist.counts
    return ctypes.sizeof(counts)
