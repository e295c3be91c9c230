"""
LatencyHistogram: the original API, encoding, merging and Java parity.
"""

from __future__ import annotations

import base64
import struct
import zlib

from pathlib import Path

import pytest

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_mcp._config import ConfigurationError
from resilient_mcp._hlog import read_hlog
from resilient_mcp._metrics import (
    HIGHEST_US,
    LatencyHistogram,
    PercentileRow,
    merge_histograms,
)


DATA = Path(__file__).parent / "data"


def test_original_api_still_works():
    """record, record_us, count, percentile, mean, max and hdr behave."""
    histogram = LatencyHistogram()

    histogram.record(0.001)
    histogram.record(0.002, 2)
    histogram.record_us(4_000)

    assert 4 == histogram.count
    assert 0.001 == histogram.percentile(0)
    assert 0.002 == histogram.percentile(50)
    assert 0.002_250_25 == histogram.mean()  # median equivalents
    assert 0.004_001 == histogram.max()
    assert 0.001 == histogram.min()
    assert 4 == histogram.hdr.get_total_count()
    assert "<LatencyHistogram 4 values>" == repr(histogram)


def test_empty_histogram_reads_zero():
    """An empty histogram's statistics are all 0."""
    histogram = LatencyHistogram()

    assert (0.0, 0.0, 0.0, 0.0, 0.0) == (
        histogram.percentile(99),
        histogram.mean(),
        histogram.stddev(),
        histogram.min(),
        histogram.max(),
    )
    assert [] == histogram.percentile_distribution()


def test_bulkhead_batch_of_zero_waits():
    """record_us(0, n), as the bulkhead batches its zero waits, counts n."""
    histogram = LatencyHistogram()

    histogram.record_us(0, 1_000)
    histogram.record_us(-5)

    assert 1_001 == histogram.count
    assert 0.0 == histogram.percentile(99.9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lowest_us": 0}, "lowest_us"),
        ({"lowest_us": 10, "highest_us": 19}, "highest_us"),
        ({"significant_figures": 0}, "significant_figures"),
    ],
)
def test_bad_settings(kwargs, match):
    """Impossible settings fail at construction."""
    with pytest.raises(ConfigurationError, match=match):
        LatencyHistogram(**kwargs)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.integers(0, HIGHEST_US), max_size=100),
    digits=st.integers(1, 4),
)
def test_encode_decode_round_trip(values, digits):
    """decode(encode()) gives back the same counts, min, max and total."""
    histogram = LatencyHistogram(significant_figures=digits)
    for value in values:
        histogram.record_us(value)

    decoded = LatencyHistogram.decode(histogram.encode())

    assert bytes(histogram.hdr.counts) == bytes(decoded.hdr.counts)
    assert (histogram.count, histogram.min_value(), histogram.max_value()) == (
        decoded.count,
        decoded.min_value(),
        decoded.max_value(),
    )
    assert digits == decoded.significant_figures


def envelope(payload: bytes) -> str:
    """Wrap a zlib payload the way the V2 compressed encoding does."""
    header = struct.pack(">II", 0x1C849314, len(payload))
    return base64.b64encode(header + payload).decode()


def inner(
    lowest: int, highest: int, digits: int, counts: bytes = b""
) -> bytes:
    """A V2 encoding header with the given settings, then *counts*."""
    header = struct.pack(
        ">IIIIqqd", 0x1C849313, len(counts), 0, digits, lowest, highest, 1.0
    )
    return header + counts


@pytest.mark.parametrize(
    ("encoded", "match"),
    [
        ("HISTFAAA!!!", "not valid base64"),
        ("", "too short"),
        (base64.b64encode(b"\0" * 12).decode(), "unknown histogram encoding"),
        (LatencyHistogram().encode()[:-8], "truncated"),
        (envelope(b"not zlib at all"), "compressed payload is corrupt"),
        (envelope(zlib.compress(b"short")), "not a histogram"),
        (envelope(zlib.compress(inner(0, 100, 3))), "impossible settings"),
        (envelope(zlib.compress(inner(1, 100, 9))), "impossible settings"),
        (envelope(zlib.compress(inner(1, 2**62, 5))), "counters"),
        (
            envelope(zlib.compress(inner(1, 1000, 3, b"\xff" * 20))),
            "counts are corrupt",
        ),
    ],
)
def test_decode_rejects_garbage(encoded, match):
    """Each kind of corruption is a ValueError that says what it is."""
    with pytest.raises(ValueError, match=match):
        LatencyHistogram.decode(encoded)


def test_add_and_merge():
    """Adding and merging sum counts; empty inputs keep the minimum."""
    a = LatencyHistogram()
    a.record_us(500)
    b = LatencyHistogram()
    b.record_us(1_500, 3)

    a.add(LatencyHistogram())
    merged = merge_histograms([a, b, LatencyHistogram()])

    assert 500 == a.min_value()
    assert (4, 500, 1_500) == (
        merged.count,
        merged.min_value(),
        merged.max_value(),
    )
    assert 1 == a.count


def test_merge_different_layouts():
    """Histograms with other settings merge into the widest, finest one."""
    coarse = LatencyHistogram(
        lowest_us=1_000, highest_us=10_000_000, significant_figures=2
    )
    coarse.record_us(5_000_000)
    fine = LatencyHistogram(highest_us=1_000_000, significant_figures=3)
    fine.record_us(123)

    merged = merge_histograms([coarse, fine])

    assert (1, 10_000_000, 3) == (
        merged.lowest_us,
        merged.highest_us,
        merged.significant_figures,
    )
    assert 2 == merged.count
    assert 123 == merged.min_value()
    # 5 s was recorded as the bottom of its coarse bucket, 4,980,736 us.
    assert 4_980_736 == merged.hdr.get_lowest_equivalent_value(
        merged.max_value()
    )


def test_merge_of_nothing_is_empty():
    """Merging no histograms gives an empty default histogram."""
    assert 0 == merge_histograms([]).count


def test_add_beyond_range_raises():
    """A value beyond the range is refused, and nothing is added."""
    small = LatencyHistogram(highest_us=1_000, significant_figures=2)
    big = LatencyHistogram(significant_figures=1)
    big.record_us(1_000_000)

    with pytest.raises(ValueError, match="does not fit"):
        small.add(big)

    assert 0 == small.count


def test_copy_and_reset():
    """A copy is independent; reset empties the histogram for reuse."""
    histogram = LatencyHistogram()
    histogram.record(0.01)
    histogram.record(2.0)

    copy = histogram.copy()
    histogram.reset()
    histogram.record(0.5)

    assert 2 == copy.count
    assert 1 == histogram.count
    assert 0.499_968 == histogram.min()  # the bottom of 0.5 s's bucket
    assert not any(
        histogram.hdr.counts[i]
        for i in range(histogram.hdr.counts_len)
        if i != histogram.hdr.get_counts_array_index(500_000)
    )


def hgrm_rows(path: Path) -> list[PercentileRow]:
    """The rows of a Java .hgrm file, values in microseconds."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0][0].isdigit():
            continue
        rows.append(
            PercentileRow(
                value=round(float(fields[0]) * 1000),
                percentile=float(fields[1]) * 100,
                total_count=int(fields[2]),
            )
        )
    return rows


def test_distribution_rows_are_javas():
    """percentile_distribution has Java's rows for the sample log."""
    log = read_hlog(DATA / "sample.hlog")
    histogram = merge_histograms(
        i.histogram() for i in log.intervals if i.tag is None
    )

    expected = hgrm_rows(DATA / "sample.hgrm")
    actual = histogram.percentile_distribution()

    assert [(r.value, r.total_count) for r in expected] == [
        (r.value, r.total_count) for r in actual
    ]
    assert [round(r.percentile, 10) for r in expected] == [
        round(r.percentile, 10) for r in actual
    ]


def test_java_percentiles_of_the_sample():
    """values_at_percentiles matches HistogramLogProcessor's totals line."""
    log = read_hlog(DATA / "sample.hlog")
    overall = merge_histograms(
        i.histogram() for i in log.intervals if i.tag is None
    )

    actual = overall.values_at_percentiles([50, 90, 99, 99.9, 99.99, 100])

    # T:4205 ( 3.287 21.663 63.583 1240.063 2191.359 2191.359 ), in ms
    assert [3_287, 21_663, 63_583, 1_240_063, 2_191_359, 2_191_359] == actual
    assert 2_191_359 == overall.max_value()


def test_inverse_percentile():
    """PercentileRow.inverse is 1/(1-p), and infinite at 100%."""
    assert 10.0 == pytest.approx(
        PercentileRow(value=1, percentile=90.0, total_count=1).inverse
    )
    assert PercentileRow(value=1, percentile=100.0, total_count=1).inverse == (
        float("inf")
    )


def test_from_hdr_shares_the_counters():
    """from_hdr wraps an hdrh histogram without copying: the inverse of hdr."""
    hdr = HdrHistogram(1, 2**30, 2)
    hdr.record_value(1_000)

    histogram = LatencyHistogram.from_hdr(hdr)
    histogram.record(0.002)

    assert (1, 2**30, 2) == (
        histogram.lowest_us,
        histogram.highest_us,
        histogram.significant_figures,
    )
    assert 2 == hdr.get_total_count()
    assert 2 == histogram.count
    assert hdr is histogram.hdr


def test_covers_compares_range_and_precision():
    """A histogram covers a narrower, coarser one, and not the reverse."""
    wide = LatencyHistogram(lowest_us=1, highest_us=2**40)
    narrow = LatencyHistogram(
        lowest_us=10, highest_us=2**20, significant_figures=2
    )

    assert wide.covers(narrow)
    assert not narrow.covers(wide)
    assert wide.covers(LatencyHistogram(lowest_us=1, highest_us=2**40))


@given(
    values=st.lists(st.integers(0, 3_600_000_000), max_size=200),
    bounds=st.lists(
        st.integers(1, 3_600_000_000), min_size=1, max_size=20, unique=True
    ),
)
@settings(max_examples=200, deadline=None)
def test_cumulative_counts_never_miss_a_value_at_or_below_a_bound(
    values, bounds
):
    """Each bucket counts every value <= its bound, and none 0.1% above."""
    bounds.sort()
    histogram = LatencyHistogram()
    for value in values:
        histogram.record_us(value)

    counts = histogram.cumulative_counts([b / 1_000_000 for b in bounds])

    for bound, count in zip(bounds, counts, strict=True):
        at_or_below = sum(v <= bound for v in values)
        within_precision = sum(v <= bound * 1.001 + 1 for v in values)
        assert at_or_below <= count <= within_precision
    assert counts == sorted(counts)
