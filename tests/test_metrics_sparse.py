"""
Sparse histograms read, merge and encode exactly as dense ones do.

A ``LatencyHistogram`` (and each key of a ``LatencyRecorder``) starts with
a dictionary of the buckets in use and moves to ``hdrh``'s counts array
once it holds more buckets than that array would cost.  These properties
show that the two forms are the same histogram: the same counters, count,
minimum and maximum, so the same percentiles, distribution, merges and
encoded bytes, before, during and after the promotion.
"""

from __future__ import annotations

import io

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_mcp._hlog import HlogWriter, parse_hlog
from resilient_mcp._metrics import (
    LatencyHistogram,
    LatencyRecorder,
    merge_histograms,
)
from resilient_mcp._metrics._counts import Sparse as _Sparse
from resilient_mcp._metrics._counts import sparse_limit as _sparse_limit
from resilient_mcp._metrics._layout import template as _template


PERCENTILES = (0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)
# One significant digit and a short range: a sparse limit of a few dozen
# buckets, so that the properties cross it often.
SMALL: tuple[int, int, int] = (1, 2**20, 1)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, int]:
    """A histogram's lowest, highest and significant digits."""
    lowest = draw(st.sampled_from([1, 2, 3, 7, 1000, 1024]))
    highest = draw(st.integers(2 * lowest, 2**36))
    digits = draw(st.integers(1, 3))
    return lowest, highest, digits


def values_for(highest: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    """Values in range, each with a count, many or few distinct."""
    value = st.integers(0, highest) | st.integers(0, min(highest, 64))
    return st.lists(st.tuples(value, st.integers(1, 3)), max_size=120)


def histogram(layout: tuple[int, int, int]) -> LatencyHistogram:
    """An empty (sparse) histogram of *layout*."""
    lowest, highest, digits = layout
    return LatencyHistogram(
        lowest_us=lowest, highest_us=highest, significant_figures=digits
    )


def dense(layout: tuple[int, int, int]) -> LatencyHistogram:
    """An empty histogram of *layout*, made dense before any value."""
    made = histogram(layout)
    assert made.hdr is not None  # reading .hdr promotes it for good
    return made


def state(hdr: HdrHistogram) -> tuple[bytes, int, int, int]:
    """Everything recording changes in an hdrh histogram."""
    return bytes(hdr.counts), hdr.total_count, hdr.min_value, hdr.max_value


def readings(h: LatencyHistogram) -> tuple[object, ...]:
    """Everything a histogram reports, its encoding included."""
    return (
        h.count,
        h.values_at_percentiles(PERCENTILES),
        h.value_at_percentile(99.0),
        h.min_value(),
        h.max_value(),
        h.mean_value(),
        h.stddev_value(),
        h.snapshot(),
        h.percentile_distribution(),
        h.encode(),
    )


def is_sparse(h: LatencyHistogram) -> bool:
    """Whether *h* still holds its counters in a dictionary."""
    return isinstance(h._hist, _Sparse)


@settings(max_examples=80, deadline=None)
@given(layout=layouts(), data=st.data())
def test_sparse_reads_as_dense(layout, data):
    """Every reading of a sparse histogram is the dense one's."""
    values = data.draw(values_for(layout[1]))
    sparse, reference = histogram(layout), dense(layout)

    for value, count in values:
        sparse.record_us(value, count)
        reference.record_us(value, count)

    assert readings(reference) == readings(sparse)
    assert state(reference.hdr) == state(sparse.copy().hdr)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_promotion_preserves_everything(data):
    """Crossing the sparse limit keeps every counter and every reading."""
    limit = _sparse_limit(_template(*SMALL))
    values = data.draw(values_for(SMALL[1]))
    sparse, reference = histogram(SMALL), HdrHistogram(*SMALL)
    buckets: set[int] = set()

    for value, count in values:
        sparse.record_us(value, count)
        reference.record_value(value, count)
        buckets.add(reference._counts_index_for(value))

        assert (len(buckets) <= limit) == is_sparse(sparse)
    promoted = not is_sparse(sparse)

    assert state(reference) == state(sparse.hdr)
    assert promoted == (len(buckets) > limit)


@settings(max_examples=60, deadline=None)
@given(seconds=st.lists(st.floats(0, 2.0), max_size=150))
def test_fast_record_promotes_like_record_us(seconds):
    """record(seconds) promotes at the same bucket as record_us."""
    fast, reference = histogram(SMALL), HdrHistogram(*SMALL)

    for value in seconds:
        fast.record(value)
        reference.record_value(min(int(value * 1_000_000 + 0.5), SMALL[1]))

    assert state(reference) == state(fast.hdr)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), forms=st.tuples(st.booleans(), st.booleans()))
def test_add_in_any_form(data, forms):
    """Adding sparse or dense to sparse or dense gives the same sum."""
    left_values = data.draw(values_for(SMALL[1]))
    right_values = data.draw(values_for(SMALL[1]))
    left = dense(SMALL) if forms[0] else histogram(SMALL)
    right = dense(SMALL) if forms[1] else histogram(SMALL)
    reference = HdrHistogram(*SMALL)
    for value, count in left_values:
        left.record_us(value, count)
        reference.record_value(value, count)
    for value, count in right_values:
        right.record_us(value, count)
        reference.record_value(value, count)
    expected = dense(SMALL)
    expected.hdr.add(reference)

    left.add(right)

    assert state(reference) == state(left.copy().hdr)
    assert readings(expected) == readings(left)


@settings(max_examples=40, deadline=None)
@given(
    parts=st.lists(
        st.tuples(layouts(), st.booleans(), st.data()), min_size=1, max_size=4
    )
)
def test_merge_in_any_form(parts):
    """merge_histograms gives the same sum for sparse and dense inputs."""
    sparse_parts, dense_parts = [], []
    for layout, make_dense, data in parts:
        one = dense(layout) if make_dense else histogram(layout)
        other = dense(layout)
        for value, count in data.draw(values_for(layout[1])):
            one.record_us(value, count)
            other.record_us(value, count)
        sparse_parts.append(one)
        dense_parts.append(other)

    assert readings(merge_histograms(dense_parts)) == readings(
        merge_histograms(sparse_parts)
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encoding_round_trip(data):
    """A sparse histogram decodes to the counters it encoded."""
    values = data.draw(values_for(SMALL[1]))
    sparse = histogram(SMALL)
    for value, count in values:
        sparse.record_us(value, count)

    decoded = LatencyHistogram.decode(sparse.encode())

    # The encoding keeps the counters, not the raw extremes: decoding sets
    # them to their buckets' bounds, whichever form was encoded.
    assert readings(sparse) == readings(decoded)
    assert state(sparse.copy().hdr)[:2] == state(decoded.hdr)[:2]


def test_reset_keeps_the_form():
    """reset() empties either form; a promoted histogram stays dense."""
    small = histogram(SMALL)
    promoted = histogram(SMALL)
    for value in range(1, 2**20, 997):
        promoted.record_us(value)
    small.record_us(5)

    small.reset()
    promoted.reset()

    assert is_sparse(small)
    assert not is_sparse(promoted)
    assert readings(histogram(SMALL)) == readings(small)
    assert readings(histogram(SMALL)) == readings(promoted)


@settings(max_examples=40, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from("abcde"),
            st.integers(0, SMALL[1]) | st.integers(0, 40),
            st.booleans(),
        ),
        max_size=200,
    ),
    max_keys=st.integers(1, 6),
)
def test_recorder_matches_record_value(calls, max_keys):
    """Per key, overall and per interval, the recorder is record_value's."""
    recorder = LatencyRecorder(
        lowest_us=SMALL[0],
        highest_us=SMALL[1],
        significant_figures=SMALL[2],
        max_keys=max_keys,
    )
    overall = HdrHistogram(*SMALL)
    interval = HdrHistogram(*SMALL)
    per_key: dict[str, HdrHistogram] = {}
    out = io.StringIO()
    writer = HlogWriter(out)
    writer.write_header(0.0)
    expected_lines = []

    for key, value, new_interval in calls:
        if new_interval:
            recorder.dump_interval(writer, start=0.0, length=1.0)
            expected_lines.append(interval.encode().decode("ascii"))
            interval = HdrHistogram(*SMALL)
        recorder.record(key, value / 1_000_000)
        for hdr in (overall, interval):
            hdr.record_value(value)
        if key not in per_key:
            if len(per_key) == max_keys:
                # The least recently used key goes; its values stay overall.
                stalest = next(iter(per_key))
                del per_key[stalest]
            per_key[key] = HdrHistogram(*SMALL)
        per_key[key] = per_key.pop(key)  # most recently used last
        per_key[key].record_value(value)

    assert sorted(per_key) == recorder.keys()
    for key, reference in per_key.items():
        assert state(reference) == state(recorder.histogram(key).hdr)
    assert state(overall) == state(recorder.histogram().hdr)
    assert overall.total_count == recorder.metrics().total_count
    untagged = [
        line.payload
        for line in parse_hlog(out.getvalue().encode()).intervals
        if line.tag is None
    ]
    assert expected_lines == untagged


def test_promotion_happens_past_the_limit():
    """The bucket after the limit'th moves the counters to the array."""
    limit = _sparse_limit(_template(*SMALL))
    sparse, reference = histogram(SMALL), HdrHistogram(*SMALL)
    value = 0
    while len(sparse._hist.counts) < limit:
        sparse.record_us(value)
        reference.record_value(value)
        value += 1

    assert is_sparse(sparse)
    sparse.record_us(value, 3)
    reference.record_value(value, 3)

    assert not is_sparse(sparse)
    assert state(reference) == state(sparse.hdr)


def test_ten_thousand_keys_with_a_few_values_are_small():
    """10,000 keys of 20 values each hold kilobytes, not 184 KiB, each."""
    recorder = LatencyRecorder(max_keys=10_000)

    for n in range(10_000):
        for i in range(20):
            recorder.record(f"tools/call:tool-{n:05d}", (n % 89 + i) / 1000)

    metrics = recorder.metrics()
    assert 10_000 == metrics.keys
    assert 200_000 == recorder.snapshot().count
    # 20 buckets a key, as a dictionary: about 1 KiB (a dense histogram
    # would be 188,416 bytes).
    assert metrics.histogram_bytes < 188_416 + 10_000 * 1_500


def test_merge_widens_to_the_largest_value_held():
    """A finer sum still holds a value from a coarser layout's last bucket."""
    coarse = LatencyHistogram(
        lowest_us=1000, highest_us=2048, significant_figures=1
    )
    coarse.record_us(2048, 1)
    parts = [
        LatencyHistogram(
            lowest_us=1000, highest_us=2000, significant_figures=1
        ),
        coarse,
        LatencyHistogram(lowest_us=1, highest_us=2, significant_figures=1),
    ]

    merged = merge_histograms(parts)

    assert 1 == merged.count
    assert 1 == merged.lowest_us
    assert coarse.max_value() <= merged.highest_us
